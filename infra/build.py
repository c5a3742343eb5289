"""Render what Chalice's template lacks, from the app's own definitions, for `chalice package --merge-template`.

    python -m infra.build --stage dev --out out/resources.json

- DynamoDB tables from chalicelib/models.py (the same classes the local stack creates its tables
  from): on-demand, TTL where the model has one, the indexes the code queries, point-in-time
  recovery for messages, retained on stack deletion.
- A least-privilege policy replacing Chalice's generated one: exactly the DynamoDB actions the
  functions call, on exactly these tables and indexes; execute-api:ManageConnections for POST and
  DELETE on this stack's WebSocket API; logs on the functions' own log groups; the stage's SSM
  parameters.
- Environment for every function: table prefix, Management API endpoint, public WebSocket URL,
  OSS and STS settings (template parameters), and the SSM names of the secrets (never the values).
"""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The DynamoDB calls chalicelib makes (docs/dynamodb.md); nothing else is granted.
DYNAMODB_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query"]
FUNCTIONS = ["APIHandler", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect", "HeartbeatSweep"]
PARAMETERS = {
    "OssEndpoint": ("KEFU_OSS_ENDPOINT", "https://oss-cn-hangzhou.aliyuncs.com"),
    "OssBucket": ("KEFU_OSS_BUCKET", "kefu-uploads"),
    "OssRegion": ("KEFU_OSS_REGION", "cn-hangzhou"),
    "StsEndpoint": ("KEFU_STS_ENDPOINT", "https://sts.cn-hangzhou.aliyuncs.com"),
    "StsRoleArn": ("KEFU_STS_ROLE_ARN", "acs:ram::ACCOUNT:role/kefu-uploads"),
    "AliyunAccessKeyId": ("KEFU_ALIYUN_ACCESS_KEY_ID", "LTAI-set-me"),
    "ConsoleOrigins": ("KEFU_CONSOLE_ORIGINS", None),  # required: where the agent console is served
}
# Requests per second (steady, burst) each API's stage accepts before answering 429.
THROTTLE_RATE = 200
THROTTLE_BURST = 400
# The console's origins: https only, listed, never "*".
CONSOLE_ORIGINS_PATTERN = r"^https://[^*,\s/]+(,https://[^*,\s/]+)*$"


def _parameter(variable: str, default: Optional[str]) -> Dict[str, Any]:
    parameter: Dict[str, Any] = {"Type": "String", "Description": f"sets {variable}"}
    if default is not None:
        parameter["Default"] = default
    if variable == "KEFU_CONSOLE_ORIGINS":
        parameter["AllowedPattern"] = CONSOLE_ORIGINS_PATTERN
        parameter["ConstraintDescription"] = "comma-separated https:// origins of the agent console; no *"
    return parameter


def stage_config(stage: str) -> Dict[str, Any]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    merged = dict(config.get("environment_variables", {}))
    merged.update(config["stages"][stage].get("environment_variables", {}))
    # Chalice names both APIs' stage after api_gateway_stage (default "api"): the one place it is set.
    return {"env": merged, "websocket_stage": config["stages"][stage].get("api_gateway_stage", "api")}


def logical_id(model: Any) -> str:
    return f"{model.__name__}Table"


def table_resource(model: Any, table_name: str) -> Dict[str, Any]:
    from chalicelib.models import TTL_ATTRIBUTES, Message

    schema = model._get_schema()
    properties: Dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": sorted(schema["key_schema"], key=lambda k: k["KeyType"]),  # HASH before RANGE
        "SSESpecification": {"SSEEnabled": True},
    }
    for kind, key in (("global_secondary_indexes", "GlobalSecondaryIndexes"),
                      ("local_secondary_indexes", "LocalSecondaryIndexes")):
        if schema.get(kind):
            properties[key] = [{"IndexName": index["index_name"], "KeySchema": index["key_schema"],
                                "Projection": index["projection"]} for index in schema[kind]]
    if model in TTL_ATTRIBUTES:
        properties["TimeToLiveSpecification"] = {"AttributeName": TTL_ATTRIBUTES[model], "Enabled": True}
    if model is Message:
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": properties}


def tables(prefix: str) -> Dict[str, Any]:
    """Every table's CloudFormation resource, named with the stage's prefix."""
    from chalicelib.models import ALL_MODELS

    return {logical_id(model): table_resource(model, prefix + model.Meta.base_name) for model in ALL_MODELS}


def _table_arns(models: List[Any], prefix: str) -> List[Any]:
    arns: List[Any] = []
    for model in models:
        arn = f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{prefix}{model.Meta.base_name}"
        arns.append({"Fn::Sub": arn})
        schema = model._get_schema()
        for index in schema.get("global_secondary_indexes", []) + schema.get("local_secondary_indexes", []):
            arns.append({"Fn::Sub": f"{arn}/index/{index['index_name']}"})
    return arns


def policy(models: List[Any], prefix: str, stage: str, websocket_stage: str) -> Dict[str, Any]:
    management = ("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/"
                  + websocket_stage + "/METHOD/@connections/*")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Tables", "Effect": "Allow", "Action": DYNAMODB_ACTIONS, "Resource": _table_arns(models, prefix)},
            {"Sid": "PushToSockets", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
             "Resource": [{"Fn::Sub": management.replace("METHOD", m)} for m in ("POST", "DELETE")]},
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [{"Fn::GetAtt": [f"{name}LogGroup", "Arn"]} for name in FUNCTIONS]},
            {"Sid": "Secrets", "Effect": "Allow", "Action": ["ssm:GetParameters"],
             "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter/kefu/{stage}/{name}"}
                          for name in ("token-secret", "aliyun-access-key-secret")]},
        ],
    }


def environment(prefix: str, stage: str, websocket_stage: str) -> Dict[str, Any]:
    endpoint = "${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + websocket_stage
    variables: Dict[str, Any] = {
        "KEFU_TABLE_PREFIX": prefix,
        "KEFU_WS_MANAGEMENT_ENDPOINT": {"Fn::Sub": f"https://{endpoint}"},
        "KEFU_PUBLIC_WEBSOCKET_URL": {"Fn::Sub": f"wss://{endpoint}"},
        "KEFU_TOKEN_SECRET_PARAM": f"/kefu/{stage}/token-secret",
        "KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM": f"/kefu/{stage}/aliyun-access-key-secret",
    }
    for parameter, (variable, _) in PARAMETERS.items():
        variables[variable] = {"Ref": parameter}
    return variables


def build(stage: str) -> Dict[str, Any]:
    from chalicelib.models import ALL_MODELS

    cfg = stage_config(stage)
    prefix = cfg["env"]["KEFU_TABLE_PREFIX"]
    resources: Dict[str, Any] = tables(prefix)
    env = environment(prefix, stage, cfg["websocket_stage"])
    for name in FUNCTIONS:
        # Named functions let the role name their log groups without a dependency cycle.
        function_name = {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
        resources[name] = {"Properties": {"FunctionName": function_name, "Environment": {"Variables": env}}}
        resources[f"{name}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{name}"},
                           "RetentionInDays": 30},
        }
    # Stage throttling for both APIs: a flood spends API Gateway's budget, not the functions'.
    resources["RestAPI"] = {"Properties": {"MethodSettings": [{
        "ResourcePath": "/*", "HttpMethod": "*",
        "ThrottlingRateLimit": THROTTLE_RATE, "ThrottlingBurstLimit": THROTTLE_BURST}]}}
    resources["WebsocketAPIStage"] = {"Properties": {"DefaultRouteSettings": {
        "ThrottlingRateLimit": THROTTLE_RATE, "ThrottlingBurstLimit": THROTTLE_BURST}}}
    resources["DefaultRole"] = {"Properties": {"Policies": [{
        "PolicyName": "KefuLeastPrivilege",
        "PolicyDocument": policy(ALL_MODELS, prefix, stage, cfg["websocket_stage"]),
    }]}}
    return {
        "Parameters": {name: _parameter(variable, default) for name, (variable, default) in PARAMETERS.items()},
        "Resources": resources,
        "Outputs": {"WebsocketURL": {"Value": {"Fn::Sub": "wss://${WebsocketAPI}.execute-api.${AWS::Region}."
                                                          "${AWS::URLSuffix}/" + cfg["websocket_stage"]}}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", default="out/resources.json")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build(args.stage), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
