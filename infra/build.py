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
- Operations (docs/deploy.md, "Operations"): optional active X-Ray tracing (parameter Tracing),
  CloudWatch alarms (every function's errors and throttles, every table's throttled requests, sweep
  failures, REST 5xx; parameter AlarmTopicArn to notify), a retry policy and an SQS dead-letter
  queue for the scheduled sweep, and access logs for both APIs.
"""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The DynamoDB calls chalicelib makes (docs/dynamodb.md); nothing else is granted.
# BatchGetItem: agents' lists; ConditionCheckItem: the transactions that create and reopen
# conversations (chalicelib/conversations.py).
DYNAMODB_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"]
FUNCTIONS = ["APIHandler", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect", "HeartbeatSweep",
             "IndexMessages", "DeliverMail"]
# The search indexer (app.index_messages, fed by the messages table's stream) runs under a role of its
# own: it alone reads the stream and writes the search table; the chat functions only query it.
INDEXER = "IndexMessages"
INDEXER_ROLE = "IndexerRole"
INDEXER_EVENT = "IndexMessagesDynamodbEventSource"  # what Chalice names the function's stream event
STREAM_READ_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                       "dynamodb:ListStreams"]
PARAMETERS = {
    "OssEndpoint": ("KEFU_OSS_ENDPOINT", "https://oss-cn-hangzhou.aliyuncs.com"),
    "OssBucket": ("KEFU_OSS_BUCKET", "kefu-uploads"),
    "OssRegion": ("KEFU_OSS_REGION", "cn-hangzhou"),
    "StsEndpoint": ("KEFU_STS_ENDPOINT", "https://sts.cn-hangzhou.aliyuncs.com"),
    "StsRoleArn": ("KEFU_STS_ROLE_ARN", "acs:ram::ACCOUNT:role/kefu-uploads"),
    "AliyunAccessKeyId": ("KEFU_ALIYUN_ACCESS_KEY_ID", "LTAI-set-me"),
    "ConsoleOrigins": ("KEFU_CONSOLE_ORIGINS", None),  # required: where the agent console is served
    "MailFrom": ("KEFU_MAIL_FROM", None),  # required: the From address of Kefu's emails (SES)
}
# The SES identity (a verified domain or address) MailFrom sends as: the only one ses:SendEmail is granted on.
MAIL_IDENTITY = "MailIdentity"
MAIL_IDENTITY_PATTERN = r"^[^*\s/:]+$"
# Requests per second (steady, burst) each API's stage accepts before answering 429.
THROTTLE_RATE = 200
THROTTLE_BURST = 400
# The console's origins: https only, listed, never "*".
CONSOLE_ORIGINS_PATTERN = r"^https://[^*,\s/]+(,https://[^*,\s/]+)*$"


# Operations. Alarms look at 5-minute windows; any error, throttle or 5xx is worth a look at this scale.
ALARM_PERIOD = 300
LOG_RETENTION_DAYS = 30
# The sweep runs every minute: an event older than that is superseded by the next run.
SWEEP_RETRY = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}
SWEEP_RULE = "HeartbeatSweepHeartbeatSweepEvent"  # what SAM names the rule of Chalice's schedule event
TRACING = "Tracing"  # parameter: Active turns X-Ray on for every function and the REST API
ALARM_TOPIC = "AlarmTopicArn"
REST_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTimeEpoch",
    "method": "$context.httpMethod", "path": "$context.resourcePath", "status": "$context.status",
    "bytes": "$context.responseLength", "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency", "error": "$context.error.message",
    "xrayTraceId": "$context.xrayTraceId"}, separators=(",", ":"))
WEBSOCKET_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "connectionId": "$context.connectionId", "ip": "$context.identity.sourceIp",
    "time": "$context.requestTimeEpoch", "eventType": "$context.eventType", "routeKey": "$context.routeKey",
    "status": "$context.status", "integrationStatus": "$context.integrationStatus",
    "latency": "$context.integrationLatency", "error": "$context.error.message"}, separators=(",", ":"))


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
    from chalicelib.models import STREAMS, TTL_ATTRIBUTES, Message

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
            properties[key] = [{"IndexName": index["index_name"],
                                "KeySchema": sorted(index["key_schema"], key=lambda k: k["KeyType"]),
                                "Projection": index["projection"]} for index in schema[kind]]
    if model in TTL_ATTRIBUTES:
        properties["TimeToLiveSpecification"] = {"AttributeName": TTL_ATTRIBUTES[model], "Enabled": True}
    if model is Message:
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    if model in STREAMS:
        properties["StreamSpecification"] = {"StreamViewType": STREAMS[model]}
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": properties}


def tables(prefix: str) -> Dict[str, Any]:
    """Every table's CloudFormation resource, named with the stage's prefix."""
    from chalicelib.models import ALL_MODELS

    return {logical_id(model): table_resource(model, prefix + model.Meta.base_name) for model in ALL_MODELS}


def _table_arn(model: Any, prefix: str) -> str:
    return f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{prefix}{model.Meta.base_name}"


def _table_arns(models: List[Any], prefix: str) -> List[Any]:
    arns: List[Any] = []
    for model in models:
        arn = _table_arn(model, prefix)
        arns.append({"Fn::Sub": arn})
        schema = model._get_schema()
        for index in schema.get("global_secondary_indexes", []) + schema.get("local_secondary_indexes", []):
            arns.append({"Fn::Sub": f"{arn}/index/{index['index_name']}"})
    return arns


def policy(models: List[Any], prefix: str, stage: str, websocket_stage: str) -> Dict[str, Any]:
    from chalicelib.models import SearchEntry

    management = ("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/"
                  + websocket_stage + "/METHOD/@connections/*")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Tables", "Effect": "Allow", "Action": DYNAMODB_ACTIONS,
             "Resource": _table_arns([m for m in models if m is not SearchEntry], prefix)},
            # The `search` action reads the index; only the indexer (IndexerRole) writes it.
            {"Sid": "SearchIndexRead", "Effect": "Allow", "Action": ["dynamodb:Query"],
             "Resource": _table_arns([SearchEntry], prefix)},
            {"Sid": "PushToSockets", "Effect": "Allow", "Action": ["execute-api:ManageConnections"],
             "Resource": [{"Fn::Sub": management.replace("METHOD", m)} for m in ("POST", "DELETE")]},
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [{"Fn::GetAtt": [f"{name}LogGroup", "Arn"]} for name in FUNCTIONS if name != INDEXER]},
            # Lambda sends a sweep run that failed twice here (its OnFailure destination).
            {"Sid": "SweepDeadLetters", "Effect": "Allow", "Action": ["sqs:SendMessage"],
             "Resource": [{"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}]},
            # Email (chalicelib/mailer.py): sending as the configured identity, nothing else of SES.
            {"Sid": "SendMail", "Effect": "Allow", "Action": ["ses:SendEmail"],
             "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/${{{MAIL_IDENTITY}}}"}]},
            {"Sid": "Secrets", "Effect": "Allow", "Action": ["ssm:GetParameter"],
             "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter/kefu/{stage}/{name}"}
                          for name in ("token-secret", "aliyun-access-key-secret")]},
        ],
    }


def indexer_role(prefix: str) -> Dict[str, Any]:
    """The stream handler's role: read the messages stream; read the conversations and visitors it
    indexes (BatchGetItem) and its own profiles; write the search table; its own logs."""
    from chalicelib.models import Conversation, Message, SearchEntry, Visitor

    return {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        "Policies": [{"PolicyName": "KefuSearchIndexer", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Sid": "MessagesStream", "Effect": "Allow", "Action": STREAM_READ_ACTIONS,
             "Resource": [{"Fn::GetAtt": [logical_id(Message), "StreamArn"]}]},
            {"Sid": "IndexedItems", "Effect": "Allow", "Action": ["dynamodb:BatchGetItem"],
             "Resource": [{"Fn::Sub": _table_arn(model, prefix)} for model in (Conversation, Visitor, SearchEntry)]},
            {"Sid": "SearchIndexWrite", "Effect": "Allow", "Action": ["dynamodb:BatchWriteItem"],
             "Resource": [{"Fn::Sub": _table_arn(SearchEntry, prefix)}]},
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [{"Fn::GetAtt": [f"{INDEXER}LogGroup", "Arn"]}]},
        ]}}, tracing_policy()],
    }}


def environment(prefix: str, stage: str, websocket_stage: str) -> Dict[str, Any]:
    endpoint = "${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + websocket_stage
    variables: Dict[str, Any] = {
        "KEFU_TABLE_PREFIX": prefix,
        "KEFU_STAGE": stage,  # the Stage dimension of the metrics (chalicelib/observability.py)
        "KEFU_WS_MANAGEMENT_ENDPOINT": {"Fn::Sub": f"https://{endpoint}"},
        "KEFU_PUBLIC_WEBSOCKET_URL": {"Fn::Sub": f"wss://{endpoint}"},
        "KEFU_TOKEN_SECRET_PARAM": f"/kefu/{stage}/token-secret",
        "KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM": f"/kefu/{stage}/aliyun-access-key-secret",
    }
    for parameter, (variable, _) in PARAMETERS.items():
        variables[variable] = {"Ref": parameter}
    return variables


def _metric(namespace: str, metric: str, dimensions: Dict[str, Any], statistic: str = "Sum") -> Dict[str, Any]:
    return {"Namespace": namespace, "MetricName": metric, "Statistic": statistic, "Period": ALARM_PERIOD,
            "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions.items()]}


def _alarm(description: str, watched: Dict[str, Any]) -> Dict[str, Any]:
    """Any occurrence in 5 minutes; notifies AlarmTopicArn when one is given."""
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, **watched,
        "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": {"Fn::If": ["HasAlarmTopic", [{"Ref": ALARM_TOPIC}], {"Ref": "AWS::NoValue"}]},
    }}


def _table_throttles(table: str) -> Dict[str, Any]:
    """Read plus write throttle events of one table (index back-pressure throttles its writes)."""
    def stat(metric_id: str, name: str) -> Dict[str, Any]:
        return {"Id": metric_id, "ReturnData": False, "MetricStat": {"Period": ALARM_PERIOD, "Stat": "Sum", "Metric": {
            "Namespace": "AWS/DynamoDB", "MetricName": name,
            "Dimensions": [{"Name": "TableName", "Value": {"Ref": table}}]}}}
    return {"Metrics": [stat("reads", "ReadThrottleEvents"), stat("writes", "WriteThrottleEvents"),
                        {"Id": "throttled", "Label": "throttled requests", "ReturnData": True,
                         "Expression": "FILL(reads, 0) + FILL(writes, 0)"}]}


def operations(stage: str, api_stage: str, table_ids: List[str]) -> Dict[str, Any]:
    """Alarms, the sweep's dead-letter queue, and the APIs' access log groups."""
    resources: Dict[str, Any] = {}
    for name in FUNCTIONS:
        what = "sweep failures (a run that raised; it goes to the dead-letter queue)" if name == "HeartbeatSweep" \
            else f"{name} errors"
        function = {"FunctionName": {"Ref": name}}
        resources[f"{name}ErrorsAlarm"] = _alarm(what, _metric("AWS/Lambda", "Errors", function))
        resources[f"{name}ThrottlesAlarm"] = _alarm(f"{name} throttled by Lambda",
                                                    _metric("AWS/Lambda", "Throttles", function))
    for table in table_ids:
        resources[f"{table}ThrottlesAlarm"] = _alarm(f"DynamoDB throttled requests on {table}",
                                                     _table_throttles(table))
    resources["MailsFailedAlarm"] = _alarm("emails given up on after their last attempt (chalicelib/outbox.py)",
                                           _metric("Kefu", "MailsFailed", {"Stage": stage}))
    resources["RestAPI5xxAlarm"] = _alarm("REST API answered 5xx", _metric(
        "AWS/ApiGateway", "5XXError", {"ApiName": rest_api_name(stage), "Stage": api_stage}))
    resources["SweepDeadLetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {
        "MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True}}
    # EventBridge puts an event it could not deliver to the sweep function here.
    resources["SweepDeadLetterQueuePolicy"] = {"Type": "AWS::SQS::QueuePolicy", "Properties": {
        "Queues": [{"Ref": "SweepDeadLetterQueue"}],
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Sid": "SweepScheduleDeadLetters", "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]},
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [SWEEP_RULE, "Arn"]}}}}]}}}
    resources["SweepDeadLetterAlarm"] = _alarm(
        "sweep events in the dead-letter queue (undeliverable, or the sweep failed after its retry)",
        _metric("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                {"QueueName": {"Fn::GetAtt": ["SweepDeadLetterQueue", "QueueName"]}}, statistic="Maximum"))
    for api in ("Rest", "Websocket"):
        resources[f"{api}AccessLogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": {"Fn::Sub": f"/aws/apigateway/${{AWS::StackName}}-{api.lower()}-access"},
            "RetentionInDays": LOG_RETENTION_DAYS}}
    return resources


def rest_api_name(stage: str) -> str:
    """Named like Chalice names the WebSocket API; the 5xx alarm's ApiName dimension."""
    return f"kefu-{stage}-rest-api"


def tracing_policy() -> Dict[str, Any]:
    """X-Ray's write actions, only when Tracing is Active (X-Ray has no resource-level permissions)."""
    return {"Fn::If": ["TracingActive", {
        "PolicyName": "KefuTracing",
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Sid": "Tracing", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": "*"}]}}, {"Ref": "AWS::NoValue"}]}


def build(stage: str) -> Dict[str, Any]:
    from chalicelib.models import ALL_MODELS

    cfg = stage_config(stage)
    prefix = cfg["env"]["KEFU_TABLE_PREFIX"]
    resources: Dict[str, Any] = tables(prefix)
    env = environment(prefix, stage, cfg["websocket_stage"])
    table_ids = list(resources)
    for name in FUNCTIONS:
        # Named functions let the role name their log groups without a dependency cycle.
        function_name = {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
        # The indexer reads no secret: without the SSM names it makes no SSM call (and needs no grant).
        variables = {k: v for k, v in env.items() if not k.endswith("_PARAM")} if name == INDEXER else env
        resources[name] = {"Properties": {"FunctionName": function_name, "Environment": {"Variables": variables},
                                          "Tracing": {"Ref": TRACING}}}
        resources[f"{name}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{name}"},
                           "RetentionInDays": LOG_RETENTION_DAYS},
        }
    # The schedule (Chalice's SAM event): EventBridge retries a failed delivery, then dead-letters
    # it; Lambda retries a run that raised once, then sends the event to the same queue.
    sweep_queue = {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}
    resources["HeartbeatSweep"]["Properties"]["Events"] = {"HeartbeatSweepEvent": {"Properties": {
        "RetryPolicy": SWEEP_RETRY, "DeadLetterConfig": {"Arn": sweep_queue}}}}
    resources["HeartbeatSweep"]["Properties"]["EventInvokeConfig"] = {
        "MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60,
        "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": sweep_queue}}}
    # The indexer reads the messages table's own stream (Chalice takes a literal ARN: app.py's is a
    # placeholder), in its own role; a batch that keeps failing is dropped after a day (the stream's
    # retention) rather than blocking the shard, and is split to isolate a bad record.
    from chalicelib.models import Message

    resources[INDEXER]["Properties"]["Role"] = {"Fn::GetAtt": [INDEXER_ROLE, "Arn"]}
    resources[INDEXER]["Properties"]["Events"] = {INDEXER_EVENT: {"Properties": {
        "Stream": {"Fn::GetAtt": [logical_id(Message), "StreamArn"]},
        "BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 10}}}
    resources[INDEXER_ROLE] = indexer_role(prefix)
    resources.update(operations(stage, cfg["websocket_stage"], table_ids))
    # Stage throttling for both APIs: a flood spends API Gateway's budget, not the functions'.
    # Access logs: one JSON line per request (REST) or per connect/message/disconnect (WebSocket).
    resources["RestAPI"] = {"Properties": {
        "Name": rest_api_name(stage),
        "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*",
                            "ThrottlingRateLimit": THROTTLE_RATE, "ThrottlingBurstLimit": THROTTLE_BURST}],
        "AccessLogSetting": {"DestinationArn": {"Fn::GetAtt": ["RestAccessLogGroup", "Arn"]},
                             "Format": REST_ACCESS_LOG_FORMAT},
        "TracingEnabled": {"Fn::If": ["TracingActive", True, False]}}}
    resources["WebsocketAPIStage"] = {"Properties": {
        "DefaultRouteSettings": {"ThrottlingRateLimit": THROTTLE_RATE, "ThrottlingBurstLimit": THROTTLE_BURST},
        "AccessLogSettings": {"DestinationArn": {"Fn::GetAtt": ["WebsocketAccessLogGroup", "Arn"]},
                              "Format": WEBSOCKET_ACCESS_LOG_FORMAT}}}
    resources["DefaultRole"] = {"Properties": {"Policies": [{
        "PolicyName": "KefuLeastPrivilege",
        "PolicyDocument": policy(ALL_MODELS, prefix, stage, cfg["websocket_stage"]),
    }, tracing_policy()]}}
    parameters = {name: _parameter(variable, default) for name, (variable, default) in PARAMETERS.items()}
    parameters[TRACING] = {"Type": "String", "Default": "PassThrough", "AllowedValues": ["PassThrough", "Active"],
                           "Description": "Active: X-Ray traces every function and the REST API"}
    parameters[MAIL_IDENTITY] = {"Type": "String", "AllowedPattern": MAIL_IDENTITY_PATTERN,
                                 "Description": "the SES identity (verified domain or address) MailFrom sends as",
                                 "ConstraintDescription": "a domain or an email address; no wildcard"}
    parameters[ALARM_TOPIC] = {"Type": "String", "Default": "",
                               "Description": "an SNS topic ARN the alarms notify (empty: alarms only)"}
    return {
        "Parameters": parameters,
        "Conditions": {"TracingActive": {"Fn::Equals": [{"Ref": TRACING}, "Active"]},
                       "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_TOPIC}, ""]}]}},
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
