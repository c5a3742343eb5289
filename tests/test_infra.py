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
from infra.package import LAYER_ZIP, package, unpack

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


@pytest.fixture(scope="module")
def transformed(packaged, tmp_path_factory):
    """The template as CloudFormation runs it, after the SAM transform: the schedule's rule, the
    REST stage and the functions' invoke configs exist only from here on."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # the template names no managed policy
        def load(self):
            return {}

    template = json.loads(json.dumps(packaged[2]))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/deployment.zip"  # what `cloudformation package` does
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/upload-layer.zip"
    result = transform(template, {}, NoManagedPolicies())
    path = tmp_path_factory.mktemp("transformed") / "template.json"
    path.write_text(json.dumps(result))
    return path, result


@pytest.mark.timeout(300)
def test_transformed_template_passes_cfn_lint(transformed):
    """cfn-lint checks SAM templates against SAM's schema; this lints what SAM expands them into,
    where a reference to a SAM-generated resource (the sweep's rule) either resolves or fails."""
    lint = subprocess.run([str(pathlib.Path(sys.executable).with_name("cfn-lint")), str(transformed[0])],
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
    assert [r for r, res in template["Resources"].items() if res["Type"] == "AWS::IAM::Role"] == [
        "DefaultRole", build.INDEXER_ROLE]
    actions = set()
    for name, statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action, action
            actions.add(action)
        for resource in statement["Resource"]:
            if resource.get("Fn::GetAtt", [None, None])[1] == "StreamArn":  # the indexer's stream
                assert name == build.INDEXER_ROLE and resource["Fn::GetAtt"][0] == "MessageTable"
                continue
            if "Fn::GetAtt" in resource:  # the functions' own log groups, the sweep's dead-letter queue
                target = resource["Fn::GetAtt"][0]
                assert template["Resources"][target]["Type"] in ("AWS::Logs::LogGroup", "AWS::SQS::Queue")
                assert target.endswith("LogGroup") or statement["Action"] == ["sqs:SendMessage"]
                continue
            arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            assert "*" not in arn or MANAGEMENT_PATH.match(arn), arn
    assert actions == {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                       "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
                       "dynamodb:Query", "dynamodb:BatchWriteItem", *build.STREAM_READ_ACTIONS,
                       "execute-api:ManageConnections", "logs:CreateLogStream",
                       "logs:PutLogEvents", "ssm:GetParameter", "sqs:SendMessage", "ses:SendEmail"}
    # X-Ray has no resource-level permissions: its two write actions on "*", only when Tracing=Active.
    for role in ("DefaultRole", build.INDEXER_ROLE):
        conditional = [p for p in template["Resources"][role]["Properties"]["Policies"] if "Fn::If" in p]
        assert len(conditional) == 1
        condition, when_on, when_off = conditional[0]["Fn::If"]
        assert condition == "TracingActive" and when_off == {"Ref": "AWS::NoValue"}
        assert [(s["Action"], s["Resource"]) for s in when_on["PolicyDocument"]["Statement"]] == [
            (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*")]
    tables = {r["Properties"]["TableName"] for r in template["Resources"].values()
              if r["Type"] == "AWS::DynamoDB::Table"}
    granted = {s["Fn::Sub"].split(":table/")[1] for _, st in statements for s in st["Resource"]
               if isinstance(s, dict) and ":table/" in s.get("Fn::Sub", "")}
    assert {g.split("/index/")[0] for g in granted} == tables  # exactly our tables (and their indexes)


def test_email_is_sent_only_as_the_configured_ses_identity(packaged):
    template = packaged[2]
    ses = [statement for _, statement in _statements(template) if any(a.startswith("ses:") for a in statement["Action"])]
    assert [s["Action"] for s in ses] == [["ses:SendEmail"]]
    assert ses[0]["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"
                                             "identity/${MailIdentity}"}]
    identity = template["Parameters"]["MailIdentity"]
    assert "Default" not in identity and not re.match(identity["AllowedPattern"], "*")
    assert re.match(identity["AllowedPattern"], "shop.example") and re.match(identity["AllowedPattern"], "a@shop.example")
    assert "Default" not in template["Parameters"]["MailFrom"]
    mail = template["Resources"]["DeliverMail"]["Properties"]
    assert mail["Environment"]["Variables"]["KEFU_MAIL_FROM"] == {"Ref": "MailFrom"}
    assert list(mail["Events"].values())[0]["Properties"]["Schedule"] == "rate(1 minute)"
    alarm = template["Resources"]["MailsFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Kefu", "MailsFailed")


def test_tracing_is_a_parameter_off_by_default(packaged, transformed):
    template = packaged[2]
    parameter = template["Parameters"]["Tracing"]
    assert parameter["Default"] == "PassThrough" and set(parameter["AllowedValues"]) == {"PassThrough", "Active"}
    assert template["Conditions"]["TracingActive"] == {"Fn::Equals": [{"Ref": "Tracing"}, "Active"]}
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == len(build.FUNCTIONS)
    assert all(f["Properties"]["Tracing"] == {"Ref": "Tracing"} for f in functions)
    assert template["Resources"]["RestAPI"]["Properties"]["TracingEnabled"] == {"Fn::If": ["TracingActive", True, False]}
    resources = transformed[1]["Resources"]
    lambdas = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(lambdas) == len(build.FUNCTIONS)
    assert all(f["Properties"]["TracingConfig"] == {"Mode": {"Ref": "Tracing"}} for f in lambdas)
    [rest_stage] = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert rest_stage["Properties"]["TracingEnabled"] == {"Fn::If": ["TracingActive", True, False]}


def _alarms(template):
    """(namespace, metric, {dimension: value}) of every alarm, metric-math alarms included."""
    found = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert props["TreatMissingData"] == "notBreaching"
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m] or [props]
        found[name] = [(m["Namespace"], m["MetricName"], {d["Name"]: d["Value"] for d in m["Dimensions"]})
                       for m in stats]
    return found


def test_alarms_watch_every_function_table_the_sweep_and_rest_5xx(packaged):
    template = packaged[2]
    resources = template["Resources"]
    watched = [metric for metrics in _alarms(template).values() for metric in metrics]
    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, {"FunctionName": {"Ref": function}}) in watched, (function, metric)
    # Sweep failures: the sweep function's errors, and anything that reached its dead-letter queue.
    assert "sweep failures" in resources["HeartbeatSweepErrorsAlarm"]["Properties"]["AlarmDescription"]
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": ["SweepDeadLetterQueue", "QueueName"]}}) in watched
    tables = [n for n, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"]
    from chalicelib.models import ALL_MODELS

    assert len(tables) == len(ALL_MODELS) == 11  # search, mail, canned responses, report aggregates
    for table in tables:
        for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
            assert ("AWS/DynamoDB", metric, {"TableName": {"Ref": table}}) in watched, (table, metric)
    rest = resources["RestAPI"]["Properties"]
    assert ("AWS/ApiGateway", "5XXError", {"ApiName": rest["Name"], "Stage": rest["StageName"]}) in watched
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""


def test_the_sweep_schedule_retries_then_dead_letters(packaged, transformed):
    resources = transformed[1]["Resources"]
    queue = {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}
    assert resources["SweepDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    rules = {name: r for name, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {build.SWEEP_RULE, "DeliverMailDeliverMailEvent"} and rules[build.SWEEP_RULE]["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    [target] = rules[build.SWEEP_RULE]["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["HeartbeatSweep", "Arn"]}
    assert target["RetryPolicy"] == build.SWEEP_RETRY and target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["DeadLetterConfig"] == {"Arn": queue}
    # EventBridge may write to the queue for this rule only.
    [statement] = resources["SweepDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert resources["SweepDeadLetterQueuePolicy"]["Properties"]["Queues"] == [{"Ref": "SweepDeadLetterQueue"}]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [build.SWEEP_RULE, "Arn"]}}}
    # A run that raised: Lambda retries it once, then sends the event to the same queue.
    [invoke_config] = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert invoke_config["Properties"]["FunctionName"] == {"Ref": "HeartbeatSweep"}
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 1
    assert invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == queue


def test_both_apis_write_json_access_logs_to_their_own_log_groups(packaged, transformed):
    resources = packaged[2]["Resources"]
    settings = {"Rest": resources["RestAPI"]["Properties"]["AccessLogSetting"],
                "Websocket": resources["WebsocketAPIStage"]["Properties"]["AccessLogSettings"]}
    for api, setting in settings.items():
        group = setting["DestinationArn"]["Fn::GetAtt"]
        assert group == [f"{api}AccessLogGroup", "Arn"]
        assert resources[group[0]]["Type"] == "AWS::Logs::LogGroup"
        assert resources[group[0]]["Properties"]["RetentionInDays"] == 30
        fields = json.loads(setting["Format"])  # one JSON object per request
        assert fields["requestId"] == "$context.requestId" and "status" in fields
    assert json.loads(settings["Websocket"]["Format"])["connectionId"] == "$context.connectionId"
    [rest_stage] = [r for r in transformed[1]["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert rest_stage["Properties"]["AccessLogSetting"] == settings["Rest"]  # SAM carries it to the stage
    assert resources["WebsocketAPIStage"]["Properties"]["StageName"] == rest_stage["Properties"]["StageName"]


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
        "last-seen-index", "site-visitors-index"]
    env = template["Resources"]["WebsocketMessage"]["Properties"]["Environment"]["Variables"]
    assert env["KEFU_TABLE_PREFIX"] == "kefu-prod-" and env["KEFU_STAGE"] == "prod"  # the metrics' Stage
    assert "KEFU_TOKEN_SECRET" not in env and env["KEFU_TOKEN_SECRET_PARAM"] == "/kefu/prod/token-secret"
    schedule = template["Resources"]["HeartbeatSweep"]["Properties"]["Events"]["HeartbeatSweepEvent"]
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"


def _role_statements(template, role):
    return {s["Sid"]: s for s in template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}


def test_the_search_indexer_reads_the_messages_stream_in_a_role_of_its_own(packaged, transformed):
    """Messages stream (NEW_IMAGE) -> IndexMessages; only the indexer writes the search table (with
    TTL); the chat functions may only query it."""
    template = packaged[2]
    resources = template["Resources"]
    messages = resources["MessageTable"]["Properties"]
    assert messages["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    search = resources["SearchEntryTable"]["Properties"]
    assert search["TableName"] == "kefu-prod-search"
    assert search["TimeToLiveSpecification"] == {"AttributeName": "x", "Enabled": True}
    indexer = resources[build.INDEXER]["Properties"]
    assert indexer["Handler"] == "app.index_messages"
    assert indexer["Role"] == {"Fn::GetAtt": [build.INDEXER_ROLE, "Arn"]}
    event = indexer["Events"][build.INDEXER_EVENT]
    assert event["Type"] == "DynamoDB" and event["Properties"]["Stream"] == {"Fn::GetAtt": ["MessageTable", "StreamArn"]}
    assert event["Properties"]["StartingPosition"] == "TRIM_HORIZON"
    assert not any(k.endswith("_PARAM") for k in indexer["Environment"]["Variables"])  # no secrets, no SSM
    granted = _role_statements(template, build.INDEXER_ROLE)
    assert set(granted) == {"MessagesStream", "IndexedItems", "SearchIndexWrite", "OwnLogs"}
    assert granted["SearchIndexWrite"]["Action"] == ["dynamodb:BatchWriteItem"]
    assert [r["Fn::Sub"].rsplit("/", 1)[1] for r in granted["SearchIndexWrite"]["Resource"]] == ["kefu-prod-search"]
    assert granted["OwnLogs"]["Resource"] == [{"Fn::GetAtt": [f"{build.INDEXER}LogGroup", "Arn"]}]
    default = _role_statements(template, "DefaultRole")
    assert default["SearchIndexRead"]["Action"] == ["dynamodb:Query"]
    assert not any(":table/kefu-prod-search" in r["Fn::Sub"] for r in default["Tables"]["Resource"])
    assert not any(a in build.STREAM_READ_ACTIONS for s in default.values() for a in s["Action"])
    # after the SAM transform: one event source mapping, from the stream to the indexer
    mappings = [r for r in transformed[1]["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    assert mappings[0]["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["MessageTable", "StreamArn"]}
    assert mappings[0]["Properties"]["FunctionName"] == {"Ref": build.INDEXER}


def test_zip_is_small_and_imports_like_lambda(packaged):
    _, report, _ = packaged
    assert report["files_removed"] > 1000  # botocore and friends are the runtime's, not ours
    assert report["zip_bytes"] < report["zip_bytes_before_strip"] / 2
    assert set(report["import_ms"]) == {"chat functions (import app)", "upload path (attachments, oss2, STS SDK)"}


UPLOAD_ONLY = ("cryptography", "oss2", "aliyunsdkcore", "aliyunsdksts", "aliyunsdkkms", "Crypto", "requests",
               "charset_normalizer", "cffi")


def _tops(zip_path, prefix=""):
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        return {name[len(prefix):].split("/", 1)[0] for name in archive.namelist() if name.startswith(prefix)}


def test_chat_zip_is_under_1_mb_without_the_upload_libraries(packaged):
    out, report, _ = packaged
    chat, layer = _tops(out / "package" / "deployment.zip"), _tops(out / "package" / LAYER_ZIP, "python/")
    assert not [top for top in chat if top.split("-")[0].split(".")[0] in UPLOAD_ONLY], sorted(chat)
    assert {"app.py", "chalicelib", "pynamodb", "jwt", "chalice"} <= chat
    assert set(UPLOAD_ONLY) <= layer
    assert report["zip_bytes"] <= 1_000_000 and (out / "package" / "deployment.zip").stat().st_size <= 1_000_000


def test_the_upload_layer_is_attached_to_the_rest_function_alone(packaged, transformed):
    resources = packaged[2]["Resources"]
    layer = resources["UploadLibraries"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == f"./{LAYER_ZIP}"
    runtimes = {r["Properties"]["Runtime"] for r in resources.values() if r["Type"] == "AWS::Serverless::Function"}
    assert layer["Properties"]["CompatibleRuntimes"] == sorted(runtimes)
    with_layers = {name: r["Properties"].get("Layers") for name, r in transformed[1]["Resources"].items()
                   if r["Type"] == "AWS::Lambda::Function"}
    assert {name for name, layers in with_layers.items() if layers} == {"APIHandler"}
    assert len(with_layers["APIHandler"]) == 1
    assert set(with_layers) == set(build.FUNCTIONS)  # every function; only REST has a layer


def test_modules_ship_precompiled_for_the_runtimes_python(packaged):
    import zipfile

    out, report, template = packaged
    runtime = {r["Properties"]["Runtime"] for r in template["Resources"].values()
               if r["Type"] == "AWS::Serverless::Function"}.pop()
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    assert report["pyc_tag"] == tag
    with zipfile.ZipFile(out / "package" / "deployment.zip") as archive:
        names = set(archive.namelist())
        # Unchecked-hash .pyc only (PEP 552 flags 0b01): a timestamp one, such as chalice package copies
        # from the checkout's __pycache__, goes stale as the zip rounds mtimes, and Python compiles again.
        flags = {name: int.from_bytes(archive.read(name)[4:8], "little") for name in names if name.endswith(".pyc")}
    assert flags and {name for name, flag in flags.items() if flag != 0b01} == set()
    for module in ("app", "chalicelib/protocol", "pynamodb/models", "jwt/api_jwt", "chalice/app"):
        folder, _, stem = module.rpartition("/")
        assert f"{folder + '/' if folder else ''}__pycache__/{stem}.{tag}.pyc" in names, module


# Runs in an interpreter that sees only the chat functions' code and the runtime's libraries: PyJWT
# signs and checks HS256 without cryptography, and a message with an attachment is shown without oss2.
CHAT_PATH_PROBE = """
import sys, jwt, app
from chalicelib import messages, protocol
from chalicelib.models import Message
token = jwt.encode({"sub": "v1"}, "k" * 32, algorithm="HS256")
assert jwt.decode(token, "k" * 32, algorithms=["HS256"])["sub"] == "v1"
view = messages.message_view(Message("c1", "m1", message_id="x", sender_role="visitor", sender_id="v1",
    attachment={"key": "uploads/s/c/0123456789abcdef/a.png", "name": "a.png", "size": 3,
                "content_type": "image/png"}, created_at=1))
assert "url" not in view["attachment"], view
try:
    import oss2
except ImportError:
    pass
else:
    raise SystemExit("oss2 is importable by the chat functions")
print(sorted(m for m in ("cryptography", "oss2", "aliyunsdkcore", "requests") if m in sys.modules))
"""


def test_the_websocket_path_runs_without_cryptography_or_oss2(packaged, tmp_path):
    out, _, _ = packaged
    dirs = unpack(out / "package", tmp_path)
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c",
                             f"import sys; sys.path[:0] = {[str(dirs['code']), str(dirs['runtime'])]!r}\n"
                             + CHAT_PATH_PROBE],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


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


def test_every_key_schema_names_its_hash_key_first():
    """DynamoDB refuses a KeySchema whose first element is not HASH ("Invalid KeySchema: The first
    KeySchemaElement is not a HASH key type"): pynamodb lists some index keys range-first, which the
    template-booted local stack (on dynalite, which validates as DynamoDB does) caught."""
    for table in build.tables("kefu-dev-").values():
        properties = table["Properties"]
        schemas = [properties["KeySchema"]] + [index["KeySchema"] for index in properties.get("GlobalSecondaryIndexes", [])]
        for schema in schemas:
            assert schema[0]["KeyType"] == "HASH", (properties["TableName"], schema)
