"""The packaged template, read as the local stack boots it (local/template.py): what CloudFormation
would create, resolved against the local account."""
from __future__ import annotations

import json
import pathlib

import pytest

from infra import build
from local.template import LocalEndpoints, TemplateError, deployment_from_template

GATEWAY = "http://127.0.0.1:8123"
REQUIRED = {"ConsoleOrigins": GATEWAY, "MailFrom": "kefu@example.com", "MailIdentity": "example.com"}
LOCAL = LocalEndpoints(gateway=GATEWAY, parameters=REQUIRED,
                       environment={"KEFU_DYNAMODB_ENDPOINT": "http://127.0.0.1:8124"})


@pytest.fixture(scope="module")
def deployment(packaged_template, tmp_path_factory):
    return deployment_from_template(packaged_template, local_endpoints=LOCAL,
                                    code_dir=tmp_path_factory.mktemp("code"))


def test_stage_and_websocket_routes_come_from_the_api_gateway_resources(deployment):
    assert deployment.stage == "api"  # .chalice/config.json api_gateway_stage: both APIs
    assert deployment.websocket_routes == {"$connect": "WebsocketConnect", "$default": "WebsocketMessage",
                                           "$disconnect": "WebsocketDisconnect"}
    assert deployment.websocket_route_selection == "$request.body.action"


def test_functions_run_the_handlers_and_sizes_the_template_gives(deployment):
    functions = deployment.functions
    assert set(functions) == set(build.FUNCTIONS)
    assert {name: f.handler for name, f in functions.items()} == {
        "APIHandler": "app.app", "WebsocketConnect": "app.ws_connect", "WebsocketMessage": "app.ws_message",
        "WebsocketDisconnect": "app.ws_disconnect", "HeartbeatSweep": "app.heartbeat_sweep",
        "IndexMessages": "app.index_messages", "DeliverMail": "app.deliver_mail"}
    config = json.loads((build.ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]
    assert all(f.memory_mb == config["lambda_memory_size"] and f.timeout_s == config["lambda_timeout"]
               for f in functions.values())


def test_functions_run_from_the_unpacked_package(deployment):
    code = pathlib.Path(deployment.project_dir)
    assert (code / "app.py").is_file() and (code / "chalicelib" / "config.py").is_file()
    assert code.resolve() != build.ROOT.resolve()
    assert not (code / "botocore").exists()  # the Lambda runtime's, stripped by make package


def test_rest_routes_are_the_apps_routes_served_by_the_api_handler(deployment):
    from app import app

    expected = {(path, method) for path, methods in app.routes.items() for method in methods}
    assert {(r.path, r.method) for r in deployment.rest_routes} == expected
    assert {r.function for r in deployment.rest_routes} == {"APIHandler"}
    assert not any(r.authorizer or r.api_key_required for r in deployment.rest_routes)
    for route in deployment.rest_routes:
        cors = app.routes[route.path][route.method].cors
        if cors:  # API Gateway answers the preflight (a mock integration), the function never sees it
            assert route.cors["Access-Control-Allow-Origin"] == cors.allow_origin
            assert "OPTIONS" in route.cors["Access-Control-Allow-Methods"].split(",")
        else:
            assert route.cors is None


def test_the_sweep_runs_on_the_template_schedule(deployment):
    [schedule] = [s for s in deployment.schedules if s.function == "HeartbeatSweep"]
    assert schedule.expression == "rate(1 minute)"
    assert schedule.name == build.SWEEP_RULE  # named as SAM names the rule
    assert {s.function for s in deployment.schedules} == {"HeartbeatSweep", "DeliverMail"}


def test_the_messages_stream_feeds_the_search_indexer(deployment):
    [stream] = deployment.streams
    assert (stream.function, stream.table) == (build.INDEXER, "kefu-dev-messages")
    assert (stream.batch_size, stream.batching_window_s, stream.starting_position) == (100, 1.0, "TRIM_HORIZON")
    assert build.INDEXER in deployment.functions


def test_environment_is_the_templates_pointed_at_the_local_gateway(deployment):
    for function in deployment.functions.values():
        env = function.environment
        assert env["KEFU_WS_MANAGEMENT_ENDPOINT"] == f"{GATEWAY}/api"
        assert env["KEFU_PUBLIC_WEBSOCKET_URL"] == "ws://127.0.0.1:8123/api"
        assert env["KEFU_TABLE_PREFIX"] == "kefu-dev-" and env["KEFU_STAGE"] == "dev"
        # Secrets stay in SSM under the template's names; the local stack stores values there.
        assert "KEFU_TOKEN_SECRET" not in env
        if function.name == build.INDEXER:  # reads no secret (infra/build.py): no SSM names, no SSM call
            assert not any(name.endswith("_PARAM") for name in env)
            continue
        assert env["KEFU_TOKEN_SECRET_PARAM"] == "/kefu/dev/token-secret"
        assert env["KEFU_CONSOLE_ORIGINS"] == GATEWAY                                  # an override
        assert env["KEFU_OSS_ENDPOINT"] == build.PARAMETERS["OssEndpoint"][1]         # a default
        assert env["KEFU_DYNAMODB_ENDPOINT"] == "http://127.0.0.1:8124"               # the local account's


def test_tables_are_the_ones_infra_deploys(deployment):
    expected = {r["Properties"]["TableName"]: r["Properties"] for r in build.tables("kefu-dev-").values()}
    assert {t["TableName"]: t for t in deployment.tables} == expected


def _doctored(packaged_template, tmp_path, change):
    template = json.loads(packaged_template.read_text())
    change(template)
    path = tmp_path / "sam.json"
    path.write_text(json.dumps(template))
    for package in packaged_template.parent.glob("*.zip"):  # the code and its layers
        (tmp_path / package.name).symlink_to(package)
    return path


def test_a_management_endpoint_on_a_stage_that_is_not_deployed_is_refused(packaged_template, tmp_path):
    """Issue 13's bug: the endpoint named /dev, the WebSocket stage was api; no push could arrive."""
    def endpoint_on_dev(template):
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Serverless::Function":
                env = resource["Properties"]["Environment"]["Variables"]
                env["KEFU_WS_MANAGEMENT_ENDPOINT"]["Fn::Sub"] = env["KEFU_WS_MANAGEMENT_ENDPOINT"]["Fn::Sub"][:-4] + "/dev"

    with pytest.raises(TemplateError) as refused:
        deployment_from_template(_doctored(packaged_template, tmp_path, endpoint_on_dev), local_endpoints=LOCAL,
                                 code_dir=tmp_path / "code")
    message = str(refused.value)
    assert "KEFU_WS_MANAGEMENT_ENDPOINT" in message and "'dev'" in message and "'api'" in message


def test_the_stage_rename_reaches_everything(packaged_template, tmp_path):
    """A stage renamed consistently (here by hand) is served and pointed at under its new name."""
    def rename(template):
        text = json.dumps(template).replace('/api"', '/prod"').replace('/api/"', '/prod/"')
        template.clear()
        template.update(json.loads(text))
        template["Resources"]["WebsocketAPIStage"]["Properties"]["StageName"] = "prod"
        template["Resources"]["RestAPI"]["Properties"]["StageName"] = "prod"

    renamed = deployment_from_template(_doctored(packaged_template, tmp_path, rename), local_endpoints=LOCAL,
                                       code_dir=tmp_path / "code")
    assert renamed.stage == "prod"
    assert renamed.functions["WebsocketMessage"].environment["KEFU_WS_MANAGEMENT_ENDPOINT"] == f"{GATEWAY}/prod"


def test_a_required_parameter_without_a_value_is_refused(packaged_template, tmp_path):
    with pytest.raises(TemplateError, match="ConsoleOrigins has no default"):
        deployment_from_template(packaged_template, local_endpoints=LocalEndpoints(gateway=GATEWAY),
                                 code_dir=tmp_path)
    with pytest.raises(TemplateError, match="do not exist"):
        deployment_from_template(packaged_template, code_dir=tmp_path, local_endpoints=LocalEndpoints(
            gateway=GATEWAY, parameters={**REQUIRED, "Typo": "x"}))
    with pytest.raises(TemplateError, match="Tracing='On' is not one of"):
        deployment_from_template(packaged_template, code_dir=tmp_path, local_endpoints=LocalEndpoints(
            gateway=GATEWAY, parameters={**REQUIRED, "Tracing": "On"}))


# A small template using what Chalice's output does not: Globals, conditions, Fn::If/Join/Select/
# Split, ${!Literal}, AWS::NoValue, a custom authorizer and an API key.
def _uri(function):
    return {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                       "${" + function + ".Arn}/invocations"}


SMALL = {
    "Transform": "AWS::Serverless-2016-10-31",
    "Parameters": {"Env": {"Type": "String", "Default": "test", "AllowedValues": ["test", "live"]},
                   "Hosts": {"Type": "CommaDelimitedList", "Default": "a.example,b.example"}},
    "Conditions": {"IsLive": {"Fn::Equals": [{"Ref": "Env"}, "live"]},
                   "NotLive": {"Fn::Not": [{"Condition": "IsLive"}]}},
    "Globals": {"Function": {"Timeout": 10, "Handler": "app.app",
                             "Environment": {"Variables": {"SHARED": "yes", "WHO": "globals"}}}},
    "Resources": {
        "Api": {"Type": "AWS::Serverless::Function", "Properties": {
            "CodeUri": "./code", "MemorySize": {"Fn::If": ["IsLive", 1024, 512]},
            "Environment": {"Variables": {
                "WHO": "function",
                "MODE": {"Fn::If": ["NotLive", "sandbox", "production"]},
                "TABLE": {"Ref": "Things"},
                "SECOND_HOST": {"Fn::Select": [1, {"Ref": "Hosts"}]},
                "FIRST_PART": {"Fn::Select": [0, {"Fn::Split": ["-", {"Fn::Sub": "${AWS::StackName}"}]}]},
                "JOINED": {"Fn::Join": [":", ["x", {"Ref": "AWS::Region"}, {"Fn::GetAtt": ["Things", "Arn"]}]]},
                "LITERAL": {"Fn::Sub": "${!NotResolved}-${Env}"},
                "GONE": {"Fn::If": ["IsLive", "x", {"Ref": "AWS::NoValue"}]}}}}},
        "Auth": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./code", "Handler": "app.auth"}},
        "Things": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST"}},
        "LiveOnly": {"Type": "AWS::DynamoDB::Table", "Condition": "IsLive", "Properties": {"TableName": "live"}},
        "Rest": {"Type": "AWS::Serverless::Api", "Properties": {"StageName": "v1", "DefinitionBody": {
            "securityDefinitions": {
                "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
                "Tokens": {"type": "apiKey", "name": "X-Token", "in": "header",
                           "x-amazon-apigateway-authtype": "custom",
                           "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": _uri("Auth"),
                                                              "authorizerResultTtlInSeconds": 60}}},
            "paths": {"/things/{id}": {
                "get": {"security": [{"Tokens": []}],
                        "x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": _uri("Api")}},
                "put": {"security": [{"api_key": []}],
                        "x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": _uri("Api")}}}}}}},
    },
}


def test_intrinsics_globals_conditions_authorizers_and_api_keys(tmp_path):
    (tmp_path / "code").mkdir()
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    deployment = deployment_from_template(path, local_endpoints=LocalEndpoints(
        gateway=GATEWAY, stack_name="shop-test", region="eu-west-1"))
    api = deployment.functions["Api"]
    assert (api.handler, api.timeout_s, api.memory_mb) == ("app.app", 10.0, 512)
    assert api.environment == {
        "SHARED": "yes", "WHO": "function", "MODE": "sandbox", "TABLE": "shop-test-Things",
        "SECOND_HOST": "b.example", "FIRST_PART": "shop",
        "JOINED": "x:eu-west-1:arn:aws:dynamodb:eu-west-1:000000000000:table/shop-test-Things",
        "LITERAL": "${NotResolved}-test"}
    assert deployment.functions["Auth"].environment == {"SHARED": "yes", "WHO": "globals"}
    assert deployment.project_dir == str(tmp_path / "code")
    assert [t["TableName"] for t in deployment.tables] == ["shop-test-Things"]  # LiveOnly: condition false
    assert deployment.stage == "v1"
    routes = {r.method: r for r in deployment.rest_routes}
    assert routes["GET"].authorizer == "Tokens" and not routes["GET"].api_key_required
    assert routes["PUT"].api_key_required and routes["PUT"].authorizer is None
    authorizer = deployment.authorizers["Tokens"]
    assert (authorizer.function, authorizer.kind, authorizer.identity_sources, authorizer.ttl_seconds) == (
        "Auth", "TOKEN", ("method.request.header.X-Token",), 60)

    live = deployment_from_template(path, local_endpoints=LocalEndpoints(gateway=GATEWAY, parameters={"Env": "live"}))
    assert live.functions["Api"].memory_mb == 1024 and live.functions["Api"].environment["GONE"] == "x"
    assert "live" in [t["TableName"] for t in live.tables]


def test_what_cannot_run_locally_is_named(tmp_path):
    (tmp_path / "code").mkdir()
    template = json.loads(json.dumps(SMALL))
    template["Resources"]["Api"]["Properties"]["Events"] = {"Queue": {"Type": "SQS", "Properties": {}}}
    path = tmp_path / "small.json"
    path.write_text(json.dumps(template))
    with pytest.raises(TemplateError, match="Api: event Queue of type SQS is not run locally"):
        deployment_from_template(path, local_endpoints=LocalEndpoints(gateway=GATEWAY))
    template["Resources"]["Api"]["Properties"]["Events"] = {}
    template["Resources"]["Api"]["Properties"]["CodeUri"] = {"Bucket": "b", "Key": "k"}
    path.write_text(json.dumps(template))
    with pytest.raises(TemplateError, match="is not a local file"):
        deployment_from_template(path, local_endpoints=LocalEndpoints(gateway=GATEWAY))


def test_the_upload_layer_is_unpacked_for_the_rest_function_alone(packaged_template, tmp_path):
    """The REST function loads oss2 from its layer; the chat functions carry no layer (issue 13)."""
    deployment = deployment_from_template(packaged_template, local_endpoints=LOCAL, code_dir=tmp_path / "code")
    with_layers = {name: spec.layers for name, spec in deployment.functions.items() if spec.layers}
    assert list(with_layers) == ["APIHandler"]
    (layer,) = with_layers["APIHandler"]
    assert (pathlib.Path(layer) / "python" / "oss2" / "__init__.py").is_file()
    assert not (tmp_path / "code" / "oss2").exists()
