"""Deployment, checked offline: the packaged template lints clean, the role is least-privilege,
the zip imports as on Lambda, and the tables infra/ deploys are the ones the app runs on."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest
from moto import mock_aws

from infra import build
from infra.package import package

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANAGEMENT_PATH = re.compile(
    r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{WebsocketAPI\}/"
    r"[a-z]+/(POST|DELETE)/@connections/\*$")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = package("prod", out)
    return out, report, json.loads((out / "package" / "sam.json").read_text())


@pytest.mark.timeout(300)
def test_packaged_template_passes_cfn_lint(packaged):
    out, report, _ = packaged
    lint = subprocess.run([str(pathlib.Path(sys.executable).with_name("cfn-lint")), str(out / "package" / "sam.json")],
                          capture_output=True, text=True, timeout=240)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _statements(template):
    for name, resource in template["Resources"].items():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            if isinstance(policy, dict) and "PolicyDocument" in policy:
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement


def test_pushes_and_their_permission_name_the_stage_chalice_deploys(packaged):
    """Measured before: the WebSocket stage was deployed as `api` while the Management API endpoint
    and the ManageConnections grant named `dev`: no push would ever have been delivered."""
    resources = packaged[2]["Resources"]
    stage = resources["WebsocketAPIStage"]["Properties"]["StageName"]
    endpoint = resources["WebsocketMessage"]["Properties"]["Environment"]["Variables"]["KEFU_WS_MANAGEMENT_ENDPOINT"]
    assert endpoint["Fn::Sub"].endswith(f"/{stage}")
    grants = [s for s in resources["DefaultRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
              if "execute-api:ManageConnections" in s["Action"]]
    assert grants and all(f"${{WebsocketAPI}}/{stage}/" in r["Fn::Sub"] for g in grants for r in g["Resource"])
    assert packaged[2]["Outputs"]["WebsocketURL"]["Value"]["Fn::Sub"].endswith(f"/{stage}")


def test_both_apis_have_stage_throttling(packaged):
    resources = packaged[2]["Resources"]
    rest = resources["RestAPI"]["Properties"]["MethodSettings"][0]
    websocket = resources["WebsocketAPIStage"]["Properties"]["DefaultRouteSettings"]
    for stage in (rest, websocket):
        assert stage["ThrottlingRateLimit"] > 0 and stage["ThrottlingBurstLimit"] >= stage["ThrottlingRateLimit"]
    assert resources["RestAPI"]["Type"] == "AWS::Serverless::Api"  # merged into what chalice made


def test_role_grants_no_wildcard_beyond_the_management_api(packaged):
    _, _, template = packaged
    statements = list(_statements(template))
    assert statements, "no policy found"
    assert [r for r, res in template["Resources"].items() if res["Type"] == "AWS::IAM::Role"] == ["DefaultRole"]
    actions = set()
    for _, statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action, action
            actions.add(action)
        for resource in statement["Resource"]:
            if "Fn::GetAtt" in resource:  # the functions' own log groups, declared in the template
                target = resource["Fn::GetAtt"][0]
                assert template["Resources"][target]["Type"] == "AWS::Logs::LogGroup"
                continue
            arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            assert "*" not in arn or MANAGEMENT_PATH.match(arn), arn
    assert actions == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                       "dynamodb:Query", "execute-api:ManageConnections", "logs:CreateLogStream",
                       "logs:PutLogEvents", "ssm:GetParameters"}
    tables = {r["Properties"]["TableName"] for r in template["Resources"].values()
              if r["Type"] == "AWS::DynamoDB::Table"}
    granted = {s["Fn::Sub"].split(":table/")[1] for _, st in statements for s in st["Resource"]
               if isinstance(s, dict) and ":table/" in s.get("Fn::Sub", "")}
    assert {g.split("/index/")[0] for g in granted} == tables  # exactly our tables (and their indexes)


def test_tables_are_on_demand_with_ttl_indexes_and_recovery(packaged):
    _, _, template = packaged
    tables = {r["Properties"]["TableName"]: r for r in template["Resources"].values()
              if r["Type"] == "AWS::DynamoDB::Table"}
    assert all(t["Properties"]["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    assert tables["kefu-prod-connections"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}
    assert tables["kefu-prod-messages"]["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True}
    assert [i["IndexName"] for i in tables["kefu-prod-connections"]["Properties"]["GlobalSecondaryIndexes"]] == [
        "last-seen-index"]
    env = template["Resources"]["WebsocketMessage"]["Properties"]["Environment"]["Variables"]
    assert env["KEFU_TABLE_PREFIX"] == "kefu-prod-"
    assert "KEFU_TOKEN_SECRET" not in env and env["KEFU_TOKEN_SECRET_PARAM"] == "/kefu/prod/token-secret"
    schedule = template["Resources"]["HeartbeatSweep"]["Properties"]["Events"]["HeartbeatSweepEvent"]
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"


def test_zip_is_small_and_imports_like_lambda(packaged):
    _, report, _ = packaged
    assert report["files_removed"] > 1000  # botocore and friends are the runtime's, not ours
    assert report["zip_bytes"] < report["zip_bytes_before_strip"] / 2
    assert set(report["import_ms"]) == {"chat functions (import app)", "upload path (attachments, oss2, STS SDK)"}


def _create_from_template(resource):
    props = resource["Properties"]
    args = {k: props[k] for k in ("TableName", "KeySchema", "AttributeDefinitions", "BillingMode",
                                  "GlobalSecondaryIndexes", "LocalSecondaryIndexes") if k in props}
    from chalicelib.models import Site

    client = Site._get_connection().connection.client  # the very client the app's models use
    client.create_table(**args)
    if "TimeToLiveSpecification" in props:
        client.update_time_to_live(TableName=props["TableName"], TimeToLiveSpecification=props["TimeToLiveSpecification"])


def test_core_flow_runs_on_the_tables_infra_deploys(mgmt):
    from local import atomic_moto
    from tests.support import Harness
    from chalicelib import connections
    from chalicelib.config import settings

    atomic_moto.install()
    with mock_aws():
        for resource in build.tables(settings().table_prefix).values():
            _create_from_template(resource)
        connections.forget_cache()
        harness = Harness(mgmt)
        site = harness.site()
        agent = harness.agent(site.site_id)
        agent_conn, _ = harness.connect(agent["token"])
        visitor = harness.visitor(site.site_id)
        conn, status = harness.connect(visitor["token"])
        assert status == 200
        for i in range(3):
            ack = harness.reply(conn, {"action": "send", "conversation_id": visitor["conversation_id"],
                                       "client_msg_id": f"m{i}", "text": f"hello {i}"})
            assert ack["seq"] == i + 1
        page = harness.reply(agent_conn, {"action": "sync", "conversation_id": visitor["conversation_id"],
                                          "after_seq": 0})
        assert [m["text"] for m in page["messages"]] == ["hello 0", "hello 1", "hello 2"]


def test_aliyun_dry_run_limits_the_role_to_the_upload_prefix():
    result = subprocess.run([sys.executable, "-m", "infra.aliyun", "--account-id", "1234", "--ram-user", "kefu-fn",
                             "--bucket", "shop-files", "--origin", "https://shop.example", "--dry-run"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    steps = {step["action"]: step["params"] for step in json.loads(result.stdout)}
    trust = json.loads(steps["CreateRole"]["AssumeRolePolicyDocument"])
    assert trust["Statement"][0]["Principal"] == {"RAM": ["acs:ram::1234:user/kefu-fn"]}
    permissions = json.loads(steps["CreatePolicy"]["PolicyDocument"])["Statement"][0]
    assert permissions["Action"] == ["oss:PutObject", "oss:GetObject"]
    assert permissions["Resource"] == ["acs:oss:*:*:shop-files/uploads/*"]
    assert steps["PutBucketCors"]["rules"][0]["allowed_origins"] == ["https://shop.example"]
