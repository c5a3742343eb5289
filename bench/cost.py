"""What one million chat messages cost, from call counts measured by running the app.

    python -m bench.cost   -> prints a table, writes bench/results/cost.json and docs/cost.md

A visitor and an agent (two connections each side: a second tab, a second agent) exchange
messages through the real Lambda handlers against moto; every DynamoDB request, every
Management API post and every function invocation is counted. Prices are us-east-1 list prices
(stated below with their source); durations are an assumption, stated too, since nothing here
measures Lambda's own runtime.
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MESSAGES = 200

# us-east-1 list prices, as published on the AWS pricing pages for API Gateway, Lambda and
# DynamoDB (on-demand, after the November 2024 reduction), read 2026-11.
PRICES = {
    "apigw_websocket_message_per_million": 1.00,   # per 32 KB frame, sent or received
    "apigw_connection_minute_per_million": 0.25,
    "lambda_request_per_million": 0.20,
    "lambda_gb_second": 0.0000166667,               # x86
    "dynamodb_write_request_unit_per_million": 0.625,
    "dynamodb_read_request_unit_per_million": 0.125,
}
LAMBDA_MEMORY_GB = 256 / 1024          # .chalice/config.json, dev stage
ASSUMED_BILLED_MS_PER_INVOCATION = 60  # a warm $default with 4 DynamoDB calls and parallel posts


def measure() -> dict:
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "KEFU_TABLE_PREFIX": "kefu-cost-", "KEFU_RATE_LIMIT": "100000",
                       "KEFU_TOKEN_SECRET": "bench-secret-0123456789abcdef0123456789abcdef",
                       "KEFU_WS_MANAGEMENT_ENDPOINT": "https://cost.execute-api.us-east-1.amazonaws.com/dev"})
    from moto import mock_aws

    from bench.metering import counting
    from chalicelib import delivery
    from chalicelib.models import create_tables
    from local import atomic_moto
    from tests.support import FakeManagementApi, Harness, message_event

    atomic_moto.install()
    api = FakeManagementApi()
    delivery._client = lambda endpoint: api
    with mock_aws():
        create_tables()
        harness = Harness(api)
        site = harness.site()
        agent = harness.agent(site.site_id)
        agent_conns = [harness.connect(agent["token"])[0] for _ in range(2)]
        visitor = harness.visitor(site.site_id)
        harness.say(visitor)  # the conversation opens with its first message
        visitor_conns = [harness.connect(visitor["token"])[0] for _ in range(2)]
        cid = visitor["conversation_id"]
        posts_before = sum(len(f) for f in api.frames.values())
        timings = []
        with counting() as calls:
            for i in range(MESSAGES):
                sender = (visitor_conns if i % 2 else agent_conns)[0]
                started = time.perf_counter()
                harness.client.lambda_.invoke("ws_message", message_event(
                    sender, {"action": "send", "conversation_id": cid, "client_msg_id": f"m{i}", "text": "hi"}))
                timings.append((time.perf_counter() - started) * 1000)
        posts = sum(len(f) for f in api.frames.values()) - posts_before
    return {
        "messages": MESSAGES,
        "dynamodb_reads_per_message": calls.reads / MESSAGES,
        "dynamodb_writes_per_message": calls.writes / MESSAGES,
        # billed units, from item sizes and index writes (bench/metering.py): what the price is per
        "dynamodb_read_units_per_message": calls.read_units / MESSAGES,
        "dynamodb_write_units_per_message": calls.write_units / MESSAGES,
        "scans": calls.scans,
        "posts_per_message": posts / MESSAGES,  # the ack to the sender + one per other live connection
        "invocations_per_message": 1,
        "local_handler_ms_median": round(statistics.median(timings), 1),
    }


def cost(measured: dict) -> dict:
    per_million = 1_000_000
    ws_messages = per_million * (1 + measured["posts_per_message"])  # the inbound frame + every post
    lines = {
        "API Gateway WebSocket messages": ws_messages / 1e6 * PRICES["apigw_websocket_message_per_million"],
        "Lambda requests": per_million * measured["invocations_per_message"] / 1e6 * PRICES["lambda_request_per_million"],
        "Lambda duration": per_million * ASSUMED_BILLED_MS_PER_INVOCATION / 1000 * LAMBDA_MEMORY_GB * PRICES["lambda_gb_second"],
        "DynamoDB writes": per_million * measured["dynamodb_write_units_per_message"] / 1e6
        * PRICES["dynamodb_write_request_unit_per_million"],
        "DynamoDB reads": per_million * measured["dynamodb_read_units_per_message"] / 1e6
        * PRICES["dynamodb_read_request_unit_per_million"],
    }
    return {name: round(value, 2) for name, value in lines.items()}


def render(measured: dict, lines: dict) -> str:
    total = round(sum(lines.values()), 2)
    rows = "\n".join(f"| {name} | ${value:.2f} |" for name, value in lines.items())
    return f"""# What one million chat messages cost

Generated by `python -m bench.cost` from counts measured by running the app's Lambda handlers
against moto ({measured['messages']} messages between a visitor and an agent, each with two live
connections). Do not edit by hand.

Measured per message: **{measured['dynamodb_reads_per_message']:g} DynamoDB read(s)**
({measured['dynamodb_read_units_per_message']:g} read units), **{measured['dynamodb_writes_per_message']:g} writes**
({measured['dynamodb_write_units_per_message']:g} write units, index writes included), {measured['scans']} scans,
**{measured['posts_per_message']:g} Management API posts** (the ack to the sender and the message to
each other live connection), 1 function invocation.

| item (us-east-1 list prices) | per 1,000,000 messages |
|---|---|
{rows}
| **total** | **${total:.2f}** |

Assumptions: each message is under 32 KB (one metered WebSocket message per frame); DynamoDB is
priced by the units measured from the real item sizes (messages of a few words here; a 4,000-character
Chinese message costs about ten times the write units: docs/dynamodb.md); {ASSUMED_BILLED_MS_PER_INVOCATION} ms billed per invocation at {int(LAMBDA_MEMORY_GB * 1024)} MB
(the local handler took {measured['local_handler_ms_median']} ms median against moto, which says
little about Lambda). Connection minutes ($0.25 per million) depend on how long people stay, not on
messages, and are left out; so are the free tiers.
"""


def main() -> None:
    measured = measure()
    lines = cost(measured)
    text = render(measured, lines)
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "cost.json").write_text(json.dumps({"measured": measured, "prices": PRICES,
                                                   "cost_per_million_messages": lines}, indent=2) + "\n")
    (ROOT / "docs" / "cost.md").write_text(text)


if __name__ == "__main__":
    main()
