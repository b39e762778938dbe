"""A TLS front for a test broker: makes a CA, a server certificate for
127.0.0.1 and a client certificate (all in --dir), then accepts mutual-TLS
connections on --listen and relays their bytes to the plain-text broker at
--backend. Tansu 0.6 cannot serve TLS itself (its --cert and --key options
exclude each other), and Kafka clients do not care who ends their TLS.

With --client-key-password, client.key is encrypted with it. Writes
--dir/ready once it listens. Also writes other-ca.pem, a CA that
signed nothing here, for clients that must be refused.

    python tls_proxy.py --dir D --listen 127.0.0.1:P --backend 127.0.0.1:B
"""

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_key(path, key, password=None):
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
        )


def write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, cn, usage, san=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_files(d, client_key_password):
    ca_key, ca = make_ca("engine test CA")
    write_cert(os.path.join(d, "ca.pem"), ca)
    _, other = make_ca("a CA that signed nothing here")
    write_cert(os.path.join(d, "other-ca.pem"), other)
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    key, cert = make_leaf(ca_key, ca, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, san)
    write_key(os.path.join(d, "server.key"), key)
    write_cert(os.path.join(d, "server.pem"), cert)
    key, cert = make_leaf(ca_key, ca, "engine", ExtendedKeyUsageOID.CLIENT_AUTH)
    write_key(os.path.join(d, "client.key"), key, client_key_password)
    write_cert(os.path.join(d, "client.pem"), cert)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--client-key-password", help="encrypt client.key with this password")
    args = p.parse_args()
    make_files(args.dir, args.client_key_password)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(
        os.path.join(args.dir, "server.pem"), os.path.join(args.dir, "server.key")
    )
    context.load_verify_locations(os.path.join(args.dir, "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    backend_host, backend_port = args.backend.rsplit(":", 1)

    async def relay(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                backend_host, int(backend_port)
            )
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, broker_writer), pipe(broker_reader, client_writer)
        )

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(relay, host, int(port), ssl=context)
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write("listening\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
