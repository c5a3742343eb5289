"""The local stack's embedded DynamoDB (dynalite, local/embedded_store.py), through a real boto3
client: the TransactWriteItems local/dynalite/transactions.js adds, persistence in its folder,
and clear refusals when it cannot start."""
from __future__ import annotations

import pathlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local import embedded_store
from local.embedded_store import EmbeddedStore, StoreUnavailable, start_dynalite

TABLE = "store-test"


def client(store: EmbeddedStore) -> Any:
    return boto3.client("dynamodb", endpoint_url=store.endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(max_pool_connections=32, retries={"max_attempts": 1}))


def create_table(dynamodb: Any) -> None:
    dynamodb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "owner", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-owner", "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    while dynamodb.describe_table(TableName=TABLE)["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.01)


@pytest.fixture
def dynamodb(tmp_path: pathlib.Path) -> Iterator[Any]:
    store = start_dynalite("127.0.0.1", tmp_path / "dynamodb")
    try:
        dynamodb = client(store)
        create_table(dynamodb)
        yield dynamodb
    finally:
        store.stop()


def item(dynamodb: Any, pk: str) -> Dict[str, Any]:
    return dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item", {})


def put(pk: str, **attributes: Any) -> Dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": {"pk": {"S": pk}, **attributes}}}


def test_a_transaction_applies_every_write_and_indexes_them(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "visitor"}, "status": {"S": "closed"}})
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "gone"}})
    dynamodb.transact_write_items(TransactItems=[
        {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": {"S": "visitor"}},
                            "ConditionExpression": "#s = :closed", "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {":closed": {"S": "closed"}}}},
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "conv-1"}, "owner": {"S": "ann"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "pointer"}}, "UpdateExpression": "SET conv = :c ADD n :one",
                    "ExpressionAttributeValues": {":c": {"S": "conv-1"}, ":one": {"N": "1"}}}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "gone"}}}},
    ])
    assert item(dynamodb, "conv-1")["owner"] == {"S": "ann"}
    assert item(dynamodb, "pointer") == {"pk": {"S": "pointer"}, "conv": {"S": "conv-1"}, "n": {"N": "1"}}
    assert item(dynamodb, "gone") == {}
    assert item(dynamodb, "visitor")["status"] == {"S": "closed"}  # a check writes nothing
    by_owner = dynamodb.query(TableName=TABLE, IndexName="by-owner", KeyConditionExpression="#o = :o",
                              ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": {"S": "ann"}})
    assert by_owner["Items"] == [{"pk": {"S": "conv-1"}, "owner": {"S": "ann"}}]


def test_a_failed_condition_cancels_every_write_and_says_which(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "visitor"}, "conv": {"S": "old"}})
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=[
            put("conv-2", owner={"S": "ann"}),
            {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "visitor"}}, "UpdateExpression": "SET conv = :new",
                        "ConditionExpression": "attribute_not_exists(conv)",
                        "ExpressionAttributeValues": {":new": {"S": "conv-2"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        ])
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert error["CancellationReasons"][1]["Item"] == {"pk": {"S": "visitor"}, "conv": {"S": "old"}}
    assert item(dynamodb, "conv-2") == {}
    assert item(dynamodb, "visitor")["conv"] == {"S": "old"}


def test_a_write_that_cannot_apply_cancels_the_rest(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "counter"}, "n": {"S": "not a number"}})
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=[
            put("first"),
            {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "counter"}}, "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ])
    assert [reason["Code"] for reason in raised.value.response["CancellationReasons"]] == ["None", "ValidationError"]
    assert item(dynamodb, "first") == {}


@pytest.mark.parametrize("items, message", [
    ([put("same"), {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "same"}}}}], "multiple operations on one item"),
    ([put("a", owner={"N": "1"})], "Type mismatch"),  # the index key's declared type is S
    ([put(f"item-{n}") for n in range(101)], "transactItems"),
    ([{"Put": {"TableName": "no-such-table", "Item": {"pk": {"S": "a"}}}}], "not found"),
])
def test_a_malformed_transaction_is_refused_whole(dynamodb, items, message):
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=items)
    assert raised.value.response["Error"]["Code"] in ("ValidationException", "ResourceNotFoundException")
    assert message in raised.value.response["Error"]["Message"]
    assert dynamodb.scan(TableName=TABLE)["Items"] == []


def test_transactions_are_isolated_from_each_other_and_from_single_writes(dynamodb):
    """30 transfers of one unit from a balance of 10, each conditional on the source staying
    positive, racing single-item increments of a third item: exactly 10 transfers go through and
    no unit is lost or made."""
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "from"}, "n": {"N": "10"}})
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "to"}, "n": {"N": "0"}})
    outcomes = []
    lock = threading.Lock()

    def transfer(_: int) -> None:
        try:
            dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "from"}}, "UpdateExpression": "SET n = n - :one",
                            "ConditionExpression": "n > :zero",
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}}}},
                {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "to"}}, "UpdateExpression": "SET n = n + :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            ])
            result = "moved"
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TransactionCanceledException"
            result = "refused"
        with lock:
            outcomes.append(result)

    def bump(_: int) -> None:
        dynamodb.update_item(TableName=TABLE, Key={"pk": {"S": "to"}}, UpdateExpression="ADD bumps :one",
                             ExpressionAttributeValues={":one": {"N": "1"}})

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda n: transfer(n) if n % 2 else bump(n), range(60)))
    assert outcomes.count("moved") == 10 and outcomes.count("refused") == 20
    assert item(dynamodb, "from")["n"] == {"N": "0"}
    assert item(dynamodb, "to")["n"] == {"N": "10"}
    assert item(dynamodb, "to")["bumps"] == {"N": "30"}


def test_tables_survive_a_restart_in_the_same_folder(tmp_path):
    store = start_dynalite("127.0.0.1", tmp_path / "dynamodb")
    try:
        create_table(client(store))
        client(store).transact_write_items(TransactItems=[put("kept", owner={"S": "ann"})])
    finally:
        store.stop()
    again = start_dynalite("127.0.0.1", tmp_path / "dynamodb")
    try:
        assert item(client(again), "kept") == {"pk": {"S": "kept"}, "owner": {"S": "ann"}}
    finally:
        again.stop()


def test_a_folder_another_store_holds_is_refused_clearly(tmp_path):
    first = start_dynalite("127.0.0.1", tmp_path / "dynamodb")
    try:
        with pytest.raises(StoreUnavailable, match="lock"):
            start_dynalite("127.0.0.1", tmp_path / "dynamodb")
    finally:
        first.stop()


def test_without_node_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded_store.shutil, "which", lambda name: None)
    with pytest.raises(StoreUnavailable, match=r"make setup.*--store moto"):
        start_dynalite("127.0.0.1", tmp_path)


def test_nested_conditions_are_judged_as_dynamodb_does_and_bad_ones_refused_with_the_parsers_words(dynamodb):
    """local/dynalite/packrat.js memoizes dynalite's expression parsers: a condition nested four
    deep (pynamodb's shape) still passes or fails on the item's values, and a syntax error keeps
    the original parser's full message (the memoized one would list fewer expected tokens)."""
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "c"}, "a": {"S": "x"}, "b": {"S": "open"}, "n": {"N": "3"}})
    nested = "((((attribute_exists (#a) AND #b = :b) AND #a <> :other) AND #n = :n) AND (attribute_not_exists (#z) OR #n < :max))"
    names = {"#a": "a", "#b": "b", "#n": "n", "#z": "z"}

    def update(n: str, max_n: str) -> None:
        dynamodb.update_item(TableName=TABLE, Key={"pk": {"S": "c"}}, UpdateExpression="SET #n = #n + :one",
                             ConditionExpression=nested, ExpressionAttributeNames=names,
                             ExpressionAttributeValues={":b": {"S": "open"}, ":other": {"S": "y"}, ":n": {"N": n},
                                                        ":max": {"N": max_n}, ":one": {"N": "1"}})

    update("3", "10")
    assert item(dynamodb, "c")["n"] == {"N": "4"}
    with pytest.raises(ClientError) as failed:
        update("3", "10")  # n is 4 now
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    dynamodb.update_item(TableName=TABLE, Key={"pk": {"S": "c"}}, UpdateExpression="SET z = :z",
                         ExpressionAttributeValues={":z": {"S": "here"}})
    with pytest.raises(ClientError) as failed:
        update("4", "2")  # z exists now, and n is not below 2: the innermost OR fails
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    update("4", "10")
    assert item(dynamodb, "c")["n"] == {"N": "5"}
    with pytest.raises(ClientError) as bad:
        dynamodb.update_item(TableName=TABLE, Key={"pk": {"S": "c"}}, UpdateExpression="SET #n = :n",
                             ConditionExpression="#n = :n AND", ExpressionAttributeNames={"#n": "n"},
                             ExpressionAttributeValues={":n": {"N": "1"}})
    assert bad.value.response["Error"]["Code"] == "ValidationException"
    assert 'Expected "#", "(", ":", "NOT", "_", or [a-zA-Z] but end of input found.' in bad.value.response["Error"]["Message"]
