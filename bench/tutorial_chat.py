"""Our model of the storage design of Chalice's WebSocket chat tutorial (docs/source/tutorials/wschat.rst
in aws/chalice), written here from its description, to measure what the same workload costs on it.

Its design, as the tutorial describes it: one table, partition key PK = connection id, sort key
SK = "<property>_<value>" (``username_<name>``, ``room_<room>``), and a global secondary index
``ReverseLookup`` with the keys swapped (SK, PK; all attributes projected), so a room is one index
partition holding its members. No message is stored. Per frame:
- $connect: put the stub ``username_``;
- the first frame names the user: read the connection's items, delete the stub, put ``username_<name>``;
- ``/join <room>``: read the connection's items, read the room's members, put ``room_<room>``;
- a text: read the connection's items (Query on PK), read the room (Query on the index), post
  ``name: text`` to every member, the sender included, one after another;
- $disconnect: read the connection's items, delete each.

Served by the local gateway like Kefu; endpoints come from TUTORIAL_DYNAMODB_ENDPOINT and
TUTORIAL_WS_ENDPOINT (the bench sets both), the table from TUTORIAL_TABLE.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Dict, List

from chalice import Chalice

app = Chalice(app_name="tutorial-chat-model")
app.experimental_feature_flags.update(["WEBSOCKETS"])

# Every post this app makes, by encoded size (the bench's recorder listens).
post_observers: List[Callable[[int], None]] = []


def table() -> str:
    return os.environ.get("TUTORIAL_TABLE", "tutorial-chat")


@functools.lru_cache(maxsize=1)
def _dynamodb() -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=os.environ.get("TUTORIAL_DYNAMODB_ENDPOINT"),
                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


@functools.lru_cache(maxsize=1)
def _management() -> Any:
    import boto3

    return boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["TUTORIAL_WS_ENDPOINT"],
                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def create_table() -> None:
    key = [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]
    _dynamodb().create_table(
        TableName=table(), BillingMode="PAY_PER_REQUEST", KeySchema=key,
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "ReverseLookup", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "SK", "KeyType": "HASH"},
                                               {"AttributeName": "PK", "KeyType": "RANGE"}]}])


def _put(connection_id: str, sk: str) -> None:
    _dynamodb().put_item(TableName=table(), Item={"PK": {"S": connection_id}, "SK": {"S": sk}})


def _delete(connection_id: str, sk: str) -> None:
    _dynamodb().delete_item(TableName=table(), Key={"PK": {"S": connection_id}, "SK": {"S": sk}})


def _record(connection_id: str) -> Dict[str, str]:
    """The connection's properties: one Query on its partition."""
    found = _dynamodb().query(TableName=table(), KeyConditionExpression="PK = :c",
                              ExpressionAttributeValues={":c": {"S": connection_id}})["Items"]
    return dict(item["SK"]["S"].split("_", 1) for item in found)


def _members(room: str) -> List[str]:
    """Everyone in a room: one Query on the index partition ``room_<room>``."""
    found = _dynamodb().query(TableName=table(), IndexName="ReverseLookup", KeyConditionExpression="SK = :r",
                              ExpressionAttributeValues={":r": {"S": f"room_{room}"}})["Items"]
    return [item["PK"]["S"] for item in found]


def _post(connection_id: str, text: str) -> None:
    data = text.encode()
    for observe in post_observers:
        observe(len(data))
    try:
        _management().post_to_connection(ConnectionId=connection_id, Data=data)
    except _management().exceptions.GoneException:
        _disconnect(connection_id)


def _disconnect(connection_id: str) -> None:
    for sk in [f"{name}_{value}" for name, value in _record(connection_id).items()]:
        _delete(connection_id, sk)


@app.on_ws_connect()
def connect(event: Any) -> None:
    _put(event.connection_id, "username_")


@app.on_ws_disconnect()
def disconnect(event: Any) -> None:
    _disconnect(event.connection_id)


@app.on_ws_message()
def message(event: Any) -> None:
    connection_id, body = event.connection_id, event.body
    record = _record(connection_id)
    if record.get("username", "") == "":
        _delete(connection_id, "username_")
        _put(connection_id, f"username_{body}")
        _post(connection_id, f"Using nickname: {body}")
    elif body.startswith("/join "):
        room = body.split(" ", 1)[1]
        members = _members(room)
        _put(connection_id, f"room_{room}")
        _post(connection_id, f'Joined chat room "{room}"')
        for member in members:
            _post(member, f"{record['username']} joined room.")
    elif "room" in record:
        for member in _members(record["room"]):
            _post(member, f"{record['username']}: {body}")
