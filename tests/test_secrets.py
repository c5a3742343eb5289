"""Secrets named by *_PARAM variables come from SSM over real HTTP (a moto server), each only when
first needed: nothing at import, and a function pays only for the secrets it uses."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib import tokens
from chalicelib.config import settings
from chalicelib.errors import KefuError
from local.stack import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def ssm(monkeypatch):
    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (("AWS_ENDPOINT_URL_SSM", endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_SESSION_TOKEN", "testing")):
        monkeypatch.setenv(name, value)
    for name in ("KEFU_TOKEN_SECRET", "KEFU_ALIYUN_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings.cache_clear()
    yield boto3.client("ssm", endpoint_url=endpoint, region_name=settings().region)
    server.stop()


def test_secrets_come_from_ssm_when_named_each_when_first_needed(ssm, monkeypatch):
    ssm.put_parameter(Name="/kefu/test/token-secret", Value="from-ssm-0123456789", Type="SecureString")
    ssm.put_parameter(Name="/kefu/test/aliyun", Value="aliyun-from-ssm", Type="SecureString")
    monkeypatch.setenv("KEFU_TOKEN_SECRET_PARAM", "/kefu/test/token-secret")
    monkeypatch.setenv("KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM", "/kefu/test/aliyun")
    settings.cache_clear()
    assert settings().token_secret == "from-ssm-0123456789"
    assert list(settings()._secrets) == ["KEFU_TOKEN_SECRET"]  # the Aliyun secret is not fetched yet
    ssm.put_parameter(Name="/kefu/test/token-secret", Value="rotated", Type="SecureString", Overwrite=True)
    assert settings().token_secret == "from-ssm-0123456789"  # kept for the warm function
    assert settings().aliyun_access_key_secret == "aliyun-from-ssm"
    monkeypatch.setenv("KEFU_TOKEN_SECRET", "from-the-environment")
    settings.cache_clear()
    assert settings().token_secret == "from-the-environment"  # the variable itself wins


def test_a_missing_parameter_refuses_tokens_with_misconfigured(ssm, monkeypatch):
    monkeypatch.setenv("KEFU_TOKEN_SECRET_PARAM", "/kefu/test/nothing-here")
    settings.cache_clear()
    with pytest.raises(KefuError) as refused:
        tokens.signing_key()
    assert (refused.value.code, refused.value.status) == ("misconfigured", 503)
    assert "/kefu/test/nothing-here" in settings().missing_secret_reason("KEFU_TOKEN_SECRET")


def _token_secret_from(monkeypatch, ssm_endpoint: str) -> None:
    """The token secret is the SSM parameter /kefu/test/token-secret, read from ``ssm_endpoint``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("KEFU_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("KEFU_TOKEN_SECRET_PARAM", "/kefu/test/token-secret")
    settings.cache_clear()


def test_ssm_refusing_is_an_error_not_a_missing_secret(monkeypatch):
    """AccessDenied (a role without ssm:GetParameter) fails the request and is asked again on the
    next one; it is never taken for "no secret"."""
    import http.server
    import threading

    from chalicelib.ssm import ParameterError

    class Denying(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"__type": "AccessDeniedException", "message": "not authorized to perform ssm:GetParameter"}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Denying)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _token_secret_from(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with pytest.raises(ParameterError, match="AccessDeniedException"):
            settings().token_secret
        assert "KEFU_TOKEN_SECRET" not in settings()._secrets
    finally:
        server.shutdown()
        settings.cache_clear()


def test_importing_the_app_fetches_no_secret():
    """With the parameter's endpoint unreachable, any fetch at import would fail the import."""
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:9",
           "KEFU_TOKEN_SECRET_PARAM": "/kefu/test/token-secret",
           "KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM": "/kefu/test/aliyun"}
    code = "import app; from chalicelib.config import settings; print(sorted(settings()._secrets))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _self_signed(folder: pathlib.Path) -> tuple:
    """A certificate for "localhost" and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_ssm_over_https_verifies_the_certificate_and_signs_the_host(tmp_path, monkeypatch):
    """Deployed functions reach SSM over HTTPS: an untrusted certificate is refused, a trusted one
    answers, and the request is SigV4-signed for ssm with the host it was sent to."""
    import http.server
    import ssl
    import threading

    from chalicelib.ssm import ParameterError

    seen = []

    class Answering(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((dict(self.headers), request))
            body = json.dumps({"Parameter": {"Name": request["Name"], "Value": "over-https"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    cert_file, key_file = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    _token_secret_from(monkeypatch, f"https://localhost:{port}")
    try:
        with pytest.raises(ParameterError, match="CERTIFICATE_VERIFY_FAILED"):
            settings().token_secret
        assert seen == []
        # Trusted from here on, as if it were in the CA store (http.client's HTTPS context factory).
        monkeypatch.setattr(ssl, "_create_default_https_context", lambda: ssl.create_default_context(cafile=cert_file))
        settings.cache_clear()
        assert settings().token_secret == "over-https"
        headers, request = seen[0]
        assert request == {"Name": "/kefu/test/token-secret", "WithDecryption": True}
        assert headers["Host"] == f"localhost:{port}"
        assert headers["X-Amz-Target"] == "AmazonSSM.GetParameter"
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert f"/{settings().region}/ssm/aws4_request" in headers["Authorization"]
        assert "host" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    finally:
        server.shutdown()
        settings.cache_clear()
