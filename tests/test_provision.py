"""The local account a template boot prepares (local/provision.py), checked with real boto3 clients
against the embedded store's server, and used by the packaged code itself: the REST function,
imported from the unpacked deployment.zip in a clean interpreter with only the template's
environment, finds its tables and its token secret (from SSM) and answers a session request."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local import provision
from local.template import LocalEndpoints, TemplateError, deployment_from_template

GATEWAY = "http://127.0.0.1:8123"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
SECRETS = {"KEFU_TOKEN_SECRET": "local-token-secret-0123456789abcdef0123",
           "KEFU_ALIYUN_ACCESS_KEY_SECRET": "local-aliyun-secret"}


@pytest.fixture(scope="module")
def store():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _keys(schema):
    return sorted((key["KeyType"], key["AttributeName"]) for key in schema)


def _client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")


@pytest.fixture(scope="module")
def deployment(packaged_template, store, tmp_path_factory):
    environment = {**CREDENTIALS, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                   "KEFU_DYNAMODB_ENDPOINT": store, "AWS_ENDPOINT_URL_SSM": store}
    return deployment_from_template(packaged_template, code_dir=tmp_path_factory.mktemp("code"),
                                    local_endpoints=LocalEndpoints(gateway=GATEWAY, environment=environment,
                                                                   parameters={"ConsoleOrigins": GATEWAY,
                                                                               "MailFrom": "kefu@example.com",
                                                                               "MailIdentity": "example.com"}))


@pytest.fixture(scope="module")
def provisioned(deployment, store):
    created = provision.create_tables(deployment.tables, _client("dynamodb", store))
    stored = provision.put_secrets(deployment, SECRETS, _client("ssm", store))
    return created, stored


def test_tables_are_created_from_the_template_definitions(deployment, store, provisioned):
    created, _ = provisioned
    assert created == {t["TableName"]: "created" for t in deployment.tables}
    client = _client("dynamodb", store)
    for table in deployment.tables:
        described = client.describe_table(TableName=table["TableName"])["Table"]
        assert _keys(described["KeySchema"]) == _keys(table["KeySchema"])
        assert described["BillingModeSummary"]["BillingMode"] == table["BillingMode"] == "PAY_PER_REQUEST"
        assert {i["IndexName"]: _keys(i["KeySchema"]) for i in described.get("GlobalSecondaryIndexes", [])} == {
            i["IndexName"]: _keys(i["KeySchema"]) for i in table.get("GlobalSecondaryIndexes", [])}
        ttl = client.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in table:
            assert ttl == {"TimeToLiveStatus": "ENABLED",
                           "AttributeName": table["TimeToLiveSpecification"]["AttributeName"]}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
        recovery = client.describe_continuous_backups(TableName=table["TableName"])["ContinuousBackupsDescription"]
        enabled = recovery["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        assert enabled == ("PointInTimeRecoverySpecification" in table), table["TableName"]
    # A second boot on the same store keeps what is there.
    again = provision.create_tables(deployment.tables, client)
    assert set(again.values()) == {"existing"}


def test_secrets_are_stored_under_the_names_the_template_gives(store, provisioned):
    _, stored = provisioned
    assert stored == {"KEFU_TOKEN_SECRET": "/kefu/dev/token-secret",
                      "KEFU_ALIYUN_ACCESS_KEY_SECRET": "/kefu/dev/aliyun-access-key-secret"}
    found = _client("ssm", store).get_parameters(Names=list(stored.values()), WithDecryption=True)["Parameters"]
    assert {p["Name"]: (p["Type"], p["Value"]) for p in found} == {
        "/kefu/dev/token-secret": ("SecureString", SECRETS["KEFU_TOKEN_SECRET"]),
        "/kefu/dev/aliyun-access-key-secret": ("SecureString", SECRETS["KEFU_ALIYUN_ACCESS_KEY_SECRET"])}


def test_a_secret_without_a_local_value_is_refused(deployment, store):
    with pytest.raises(TemplateError, match="KEFU_ALIYUN_ACCESS_KEY_SECRET"):
        provision.put_secrets(deployment, {"KEFU_TOKEN_SECRET": "x"}, _client("ssm", store))


# Runs in a clean interpreter (-I -S: no site-packages), on sys.path only the packaged code (as
# Lambda's /var/task) and the libraries the Lambda runtime provides (boto3 and its own). Prints where `app` came from, whether the token secret arrived from SSM, and
# the answer of the packaged handler to a session request.
PROBE = r"""
import json, sys
code_dir, runtime, secret, origin = sys.argv[1:5]
sys.path[:0] = [code_dir]
sys.path.append(runtime)
from chalicelib import sites
from chalicelib.config import settings
import app
sites.create_site("Probe Shop", [origin], site_id="probe")
event = {
    "resource": "/v1/visitor/session", "path": "/v1/visitor/session", "httpMethod": "POST",
    "headers": {"Origin": origin, "Content-Type": "application/json"},
    "multiValueHeaders": {"Origin": [origin], "Content-Type": ["application/json"]},
    "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
    "stageVariables": None, "body": json.dumps({"site_id": "probe"}), "isBase64Encoded": False,
    "requestContext": {"resourcePath": "/v1/visitor/session", "httpMethod": "POST", "stage": "api",
                       "requestId": "probe", "identity": {"sourceIp": "127.0.0.1"}},
}
class Context:
    function_name = "APIHandler"
    aws_request_id = "probe"
    def get_remaining_time_in_millis(self):
        return 30000
answer = app.app(event, Context())
print(json.dumps({"app": app.__file__, "secret_from_ssm": settings().token_secret == secret,
                  "status": answer["statusCode"], "body": json.loads(answer["body"])}))
"""


def test_the_packaged_rest_function_runs_on_the_provisioned_account(deployment, provisioned, tmp_path):
    from infra.package import _runtime_dir

    function = deployment.functions["APIHandler"]
    runtime = _runtime_dir(tmp_path / "runtime")
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, deployment.project_dir, str(runtime), SECRETS["KEFU_TOKEN_SECRET"], GATEWAY],
        env={"PATH": os.environ.get("PATH", ""), **function.environment},
        cwd=deployment.project_dir, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert pathlib.Path(result["app"]).parent == pathlib.Path(deployment.project_dir)
    assert result["secret_from_ssm"] is True
    assert result["status"] == 200, result
    assert result["body"]["token"] and result["body"]["websocket_url"] == "ws://127.0.0.1:8123/api"
