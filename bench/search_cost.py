"""What the search index costs per million messages, measured by running the indexer.

    python -m bench.search_cost   -> prints the figures, writes bench/results/search_cost.json

A conversation of ordinary customer-service messages (Chinese, English and mixed, as a shop in
China gets them) is stored through the real send path against moto; its stream records are built
from the stored items and handed to the real stream handler (chalicelib/search.index_records) in
batches; every DynamoDB request is metered by bench/metering.py (units from the real item sizes).
Queries are metered the same way. Prices: bench/cost.py's us-east-1 list prices.
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

CORPUS = [
    "你好，请问这个紫砂茶壶有货吗？", "有的，今天下单明天发货。", "大概多久能到上海？", "一般两到三天。",
    "可以开发票吗？公司抬头是杭州某某科技有限公司", "可以的，下单时备注抬头和税号就行。",
    "Hi, do you ship teapots to Canada?", "Yes, we ship worldwide. Shipping to Canada takes about 7-10 days.",
    "What is the capacity of the Yixing clay teapot?", "It holds 200 ml, enough for two or three small cups.",
    "我上周买的茶杯碎了一个，怎么办？", "很抱歉！请拍张照片发给我们，我们给您补发一个。",
    "订单号是 20261115-8842，收件人王小明", "收到，已经为您登记补发，单号稍后短信通知。",
    "Can I change the delivery address? I moved last week.", "Sure, please send the new address and your order number.",
    "这个壶能直接放在电磁炉上烧水吗？", "不可以哦，紫砂壶只能用来泡茶，烧水请用我们的铁壶。",
    "Is the gift box included?", "Yes, every teapot comes in a gift box with a care card.",
    "优惠券怎么用不了？提示已过期", "这张券上周日到期了，我给您重新发一张满200减20的。",
    "thanks, that was quick!", "不客气，有问题随时找我们～",
]
BATCH = 4  # stream records per invocation: a live chat's 1-second batching window holds a few


def _records(stored):
    from chalicelib.models import Message
    from local.streams import stream_record

    out = []
    for n, message in enumerate(stored):
        image = message.serialize()
        keys = {"conversation_id": image["conversation_id"], "client_msg_id": image["client_msg_id"]}
        out.append(stream_record(Message.Meta.table_name, "MODIFY", keys, image, n + 1))
    return out


def measure(rounds: int = 4) -> dict:
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "KEFU_TABLE_PREFIX": "kefu-searchcost-", "KEFU_RATE_LIMIT": "100000",
                       "KEFU_TOKEN_SECRET": "bench-secret-0123456789abcdef0123456789abcdef",
                       "KEFU_WS_MANAGEMENT_ENDPOINT": "https://cost.execute-api.us-east-1.amazonaws.com/dev"})
    from moto import mock_aws

    from bench.metering import counting, item_size
    from chalicelib import delivery, search
    from chalicelib.models import Message, SearchEntry, create_tables
    from chalicelib.search_terms import terms
    from local import atomic_moto
    from tests.support import FakeManagementApi, Harness

    atomic_moto.install()
    api = FakeManagementApi()
    delivery._client = lambda endpoint: api
    with mock_aws():
        create_tables()
        harness = Harness(api)
        site = harness.site()
        visitor = harness.visitor(site.site_id, name="王小明", attributes={"email": "xiaoming@mail.example", "plan": "VIP"})
        cid = visitor["conversation_id"]
        for n in range(rounds):
            for i, text in enumerate(CORPUS):
                harness.say(visitor, text, client_msg_id=f"m{n}-{i}")
        stored = sorted(Message.query(cid), key=lambda m: m.seq or 0)
        records = _records([m for m in stored if m.seq])
        with counting() as indexing:
            started = time.perf_counter()
            for start in range(0, len(records), BATCH):
                search.index_records(records[start:start + BATCH])
            indexing_seconds = time.perf_counter() - started
        messages = len(records)
        postings = [e for e in SearchEntry.scan() if e.ref != "profile"]  # a bench may Scan; the app never does
        posting_sizes = [item_size(e.serialize()) for e in postings]
        texts = [m.text for m in stored if m.seq]
        searches = {}
        agent = _identity(harness, site.site_id)
        for query in ("茶壶", "紫砂 茶壶", "teapot", "ship canada", "王小明", "xiaoming@mail.example"):
            with counting() as reads:
                found = search.search(agent, query)
            searches[query] = {"results": len(found["results"]), "read_units": reads.read_units,
                               "requests": reads.reads}
        long_terms = len(terms("".join(chr(0x4e00 + (i * 7) % 20000) for i in range(4000))))
    return {
        "messages": messages,
        "batch": BATCH,
        "write_units_per_message": indexing.write_units / messages,
        "read_units_per_message": indexing.read_units / messages,
        "requests_per_message": len(indexing.calls) / messages,
        "postings_per_message": len(postings) / messages,
        "posting_bytes_median": statistics.median(posting_sizes),
        "posting_bytes_max": max(posting_sizes),
        "terms_per_message_with_single_cjk_characters": statistics.mean(len(terms(t, unigrams=True)) for t in texts),
        "terms_per_message": statistics.mean(len(terms(t)) for t in texts),
        "terms_of_a_4000_character_chinese_message": long_terms,
        "indexing_ms_per_message_local": round(indexing_seconds * 1000 / messages, 2),
        "searches": searches,
    }


def _identity(harness, site_id):
    from chalicelib.tokens import verify

    return verify(harness.agent(site_id, email="bench@shop.example")["token"])


def price(measured: dict) -> dict:
    from bench.cost import PRICES

    per_million = 1e6
    invocations = per_million / measured["batch"]
    return {
        "DynamoDB index writes": per_million * measured["write_units_per_message"] / 1e6
        * PRICES["dynamodb_write_request_unit_per_million"],
        "DynamoDB reads by the indexer": per_million * measured["read_units_per_message"] / 1e6
        * PRICES["dynamodb_read_request_unit_per_million"],
        "Lambda requests (indexer)": invocations / 1e6 * PRICES["lambda_request_per_million"],
        "Lambda duration (indexer, 100 ms at 256 MB per batch, assumed)": invocations * 0.1 * 0.25
        * PRICES["lambda_gb_second"],
        # DynamoDB Streams reads by Lambda's event source mapping are free.
    }


def main() -> None:
    measured = measure()
    costs = price(measured)
    total = sum(costs.values())
    storage_gb = 1e6 * measured["postings_per_message"] * (measured["posting_bytes_median"] + 100) / 1e9
    print(f"{measured['messages']} messages indexed in batches of {measured['batch']}:")
    print(f"  {measured['postings_per_message']:.1f} postings per message "
          f"(median {measured['posting_bytes_median']} bytes, max {measured['posting_bytes_max']})")
    print(f"  {measured['write_units_per_message']:.2f} write units, {measured['read_units_per_message']:.2f} read units "
          f"per message (metered)")
    for name, dollars in costs.items():
        print(f"  {name}: ${dollars:.2f} per million messages")
    print(f"  total: ${total:.2f} per million messages; storage ~{storage_gb:.1f} GB (${storage_gb * 0.25:.2f} a month)")
    for query, figures in measured["searches"].items():
        print(f"  search {query!r}: {figures['results']} results, {figures['requests']} requests, "
              f"{figures['read_units']} read units")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "search_cost.json").write_text(json.dumps(
        {"measured": measured, "per_million_messages": costs, "total": total, "storage_gb": storage_gb},
        indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
