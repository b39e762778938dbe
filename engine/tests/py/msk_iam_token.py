"""AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python) at a fixed
clock with fixed credentials: the independent reference for the engine's
tokens. Reads one JSON object on stdin (region, key_id, secret_key,
session_token or null, at as an RFC 3339 UTC time); prints the token, its
expiry in ms, and the URL it encodes, as JSON.
"""

import base64
import datetime
import json
import sys
from unittest import mock

import botocore.auth
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import CredentialProvider, Credentials

spec = json.load(sys.stdin)
at = datetime.datetime.strptime(spec["at"], "%Y-%m-%dT%H:%M:%SZ")


class Fixed(CredentialProvider):
    METHOD = "fixed"

    def load(self):
        return Credentials(spec["key_id"], spec["secret_key"], spec["session_token"])


# botocore reads its clock through get_current_datetime (a naive UTC time).
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
        spec["region"], Fixed()
    )
url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
json.dump({"token": token, "expiry_ms": expiry_ms, "url": url}, sys.stdout)
