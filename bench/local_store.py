"""The local stack's DynamoDB: dynalite (the default, local/embedded_store.py) against moto's
server (the store it replaced), measured in one run on this machine.

    python -m bench.local_store [--rounds 200] [--sends 100]

Per operation, through one boto3 client with pooled connections (as the app's functions have):
put, conditional update, get, a query of 51 items, a two-item TransactWriteItems. Then a full send
over HTTP: the whole local stack on each store, a visitor's POST /v1/conversations/{id}/messages.
Prints the figures and writes bench/results/local_store.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import platform
import statistics
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List

RESULTS = pathlib.Path(__file__).parent / "results"
TABLE = "bench-local-store"
QUERY_ITEMS = 51


def summary(samples_s: List[float]) -> Dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {"n": len(ms), "mean_ms": round(statistics.fmean(ms), 2), "p50_ms": round(ms[len(ms) // 2], 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2)}


def timed(rounds: int, operation: Callable[[int], Any]) -> Dict[str, float]:
    operation(-1)  # warm: connection open, code paths loaded
    samples = []
    for n in range(rounds):
        started = time.perf_counter()
        operation(n)
        samples.append(time.perf_counter() - started)
    return summary(samples)


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(retries={"max_attempts": 1}))


def operations(endpoint: str, rounds: int) -> Dict[str, Dict[str, float]]:
    dynamodb = client(endpoint)
    dynamodb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    while dynamodb.describe_table(TableName=TABLE)["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.01)
    text = {"S": "a chat message of ordinary length, about sixty characters long"}
    for sk in range(QUERY_ITEMS):
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "conversation"}, "sk": {"N": str(sk)}, "text": text})

    def key(n: int) -> Dict[str, Any]:
        return {"pk": {"S": f"item-{n}"}, "sk": {"N": "0"}}

    def put(n: int) -> None:
        dynamodb.put_item(TableName=TABLE, Item={**key(n), "text": text, "seq": {"N": "0"}})

    def conditional_update(n: int) -> None:
        dynamodb.update_item(TableName=TABLE, Key=key(n), UpdateExpression="ADD seq :one SET updated = :now",
                             ConditionExpression="attribute_exists(pk)",
                             ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"N": str(time.time())}})

    def get(n: int) -> None:
        dynamodb.get_item(TableName=TABLE, Key=key(n), ConsistentRead=True)

    def query(n: int) -> None:
        found = dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                               ExpressionAttributeValues={":pk": {"S": "conversation"}})
        assert len(found["Items"]) == QUERY_ITEMS

    def transact_write(n: int) -> None:
        dynamodb.transact_write_items(TransactItems=[
            {"Update": {"TableName": TABLE, "Key": key(n), "UpdateExpression": "SET pointer = :p",
                        "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {":p": {"S": f"t-{n}"}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": f"t-{n}"}, "sk": {"N": "0"}, "text": text},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])

    return {"put": timed(rounds, put), "conditional_update": timed(rounds, conditional_update),
            "get": timed(rounds, get), f"query_{QUERY_ITEMS}_items": timed(rounds, query),
            "transact_write_2_items": timed(rounds, transact_write)}


def full_sends(store: str, sends: int) -> Dict[str, float]:
    from tests.e2e.stack import RunningStack

    stack = RunningStack(extra_args=["--store", store])
    try:
        session = stack.visitor()
        path = f"/v1/conversations/{session['conversation_id']}/messages"

        def send(n: int) -> None:
            response = stack.rest("POST", path, token=session["token"], headers={"Origin": stack.base},
                                  json={"client_msg_id": str(uuid.uuid4()), "text": f"hello {n}"})
            response.raise_for_status()

        return timed(sends, send)
    finally:
        stack.stop()


def measure(store: str, rounds: int, sends: int) -> Dict[str, Any]:
    from local.embedded_store import start_store

    with tempfile.TemporaryDirectory(prefix="kefu-bench-store-") as folder:
        started = time.perf_counter()
        running = start_store(store, "127.0.0.1", pathlib.Path(folder) / "dynamodb")
        startup_s = time.perf_counter() - started
        try:
            figures = operations(running.endpoint, rounds)
        finally:
            running.stop()
    figures["full_send_over_http"] = full_sends(store, sends)
    return {"startup_ms": round(startup_s * 1000, 1), "operations": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_store", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed calls per operation")
    parser.add_argument("--sends", type=int, default=100, help="timed full sends per store")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    load_before = os.getloadavg()[0]  # the machine is shared: figures drift with its load
    stores = {store: measure(store, args.rounds, args.sends) for store in ("dynalite", "moto")}
    ratios = {name: round(stores["dynalite"]["operations"][name]["p50_ms"] / figures["p50_ms"], 2)
              for name, figures in stores["moto"]["operations"].items()}
    report = {
        "what": "per-operation latency of the local stack's DynamoDB: dynalite (default) vs moto server",
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "dynalite_from": "local/dynalite/package-lock.json; moto in-process as the stack ran it (--store moto)",
        "rounds": args.rounds, "sends": args.sends,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                              "cores": os.cpu_count()},
        "stores": stores,
        "dynalite_to_moto_p50_ratio": ratios,
    }
    print(f"{'operation':<26}{'dynalite p50/p99 ms':>22}{'moto p50/p99 ms':>20}{'ratio':>8}")
    for name, ratio in ratios.items():
        dyn, moto = stores["dynalite"]["operations"][name], stores["moto"]["operations"][name]
        print(f"{name:<26}{dyn['p50_ms']:>12.2f} / {dyn['p99_ms']:<7.2f}{moto['p50_ms']:>10.2f} / {moto['p99_ms']:<7.2f}"
              f"{ratio:>8.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_store.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'local_store.json'}")


if __name__ == "__main__":
    main()
