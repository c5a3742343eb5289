"""What a stack boot from a packaged template creates in the local account before any function runs.

- The DynamoDB tables, from the template's ``AWS::DynamoDB::Table`` properties (not from
  chalicelib/models.py): keys, indexes, billing, streams, encryption, TTL, point-in-time recovery,
  translated from CloudFormation's property names to the DynamoDB API's.
- The SSM SecureString parameters the functions read their secrets from: every ``X_PARAM``
  variable of a function's environment names the parameter holding X (chalicelib/config.py).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Mapping

import botocore.exceptions

from local.functions import Deployment
from local.template import TemplateError

log = logging.getLogger("local.provision")

PARAM_SUFFIX = "_PARAM"
# CloudFormation properties that CreateTable takes under the same name.
_CREATE_TABLE_KEYS = ("TableName", "KeySchema", "AttributeDefinitions", "BillingMode", "ProvisionedThroughput",
                      "LocalSecondaryIndexes", "TableClass", "DeletionProtectionEnabled", "Tags")
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def create_table_request(properties: Mapping[str, Any]) -> Dict[str, Any]:
    """CreateTable's arguments for one AWS::DynamoDB::Table's Properties."""
    request = {key: properties[key] for key in _CREATE_TABLE_KEYS if key in properties}
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [{k: index[k] for k in _INDEX_KEYS if k in index}
                                             for index in properties["GlobalSecondaryIndexes"]]
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled")),
                                       **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse}}
    return request


def _unless_unsupported(call: Any, **kwargs: Any) -> None:
    """Table settings a local store may not implement (dynalite has neither TTL nor backups; the app
    checks expiry itself, as DynamoDB's TTL deletes lazily): skipped there, with a note."""
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "UnknownOperationException":
            raise
        log.info("the local store has no %s: skipped for %s", call.__name__, kwargs.get("TableName"))


def create_tables(tables: Iterable[Mapping[str, Any]], client: Any) -> Dict[str, str]:
    """Create each table (a boto3 DynamoDB client); an existing one is kept as it is.
    Returns {table name: "created" or "existing"}."""
    outcome: Dict[str, str] = {}
    for properties in tables:
        name = properties["TableName"]
        try:
            client.create_table(**create_table_request(properties))
        except client.exceptions.ResourceInUseException:
            outcome[name] = "existing"  # an outside store (--dynamodb-endpoint) keeps its tables
            continue
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            _unless_unsupported(client.update_time_to_live, TableName=name, TimeToLiveSpecification=ttl)
        recovery = properties.get("PointInTimeRecoverySpecification")
        if recovery and recovery.get("PointInTimeRecoveryEnabled"):
            _unless_unsupported(client.update_continuous_backups, TableName=name,
                                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        outcome[name] = "created"
    log.info("tables from the template: %s", ", ".join(f"{n} ({o})" for n, o in outcome.items()))
    return outcome


def secret_parameters(deployment: Deployment) -> Dict[str, str]:
    """{variable: SSM parameter name} for every X_PARAM variable any function has, e.g.
    {"KEFU_TOKEN_SECRET": "/kefu/dev/token-secret"}."""
    wanted: Dict[str, str] = {}
    for function in deployment.functions.values():
        for variable, name in function.environment.items():
            if variable.endswith(PARAM_SUFFIX) and name:
                wanted[variable[: -len(PARAM_SUFFIX)]] = name
    return wanted


def put_secrets(deployment: Deployment, values: Mapping[str, str], client: Any) -> Dict[str, str]:
    """Store the local value of each secret the functions read from SSM (a boto3 SSM client), as a
    SecureString under the name the template gives. A secret with no local value is an error:
    the functions would answer 503 `misconfigured`. Returns {variable: parameter name}."""
    wanted = secret_parameters(deployment)
    missing = sorted(set(wanted) - set(values))
    if missing:
        raise TemplateError(f"the template's functions read {missing} from SSM and the local stack has no value for them")
    for variable, name in wanted.items():
        client.put_parameter(Name=name, Value=values[variable], Type="SecureString", Overwrite=True)
    return wanted
