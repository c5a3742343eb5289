"""One deployment at scale, on paper, from what bench.cost measured.

    python -m bench.scale_model [--cost bench/results/cost.json] [--out DIR]
    -> prints the figures, writes bench/results/scale.json and docs/scale.md

Per-action units, posts and billed durations come from bench/results/cost.json (run bench.cost
first); item sizes are measured here from the app's own models (bench/metering.py's sizing rules).
The target and every assumption are in TARGET; quotas in QUOTAS, with where they come from.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
from typing import Any, Dict, List

ROOT = pathlib.Path(__file__).resolve().parents[1]

TARGET = {
    "sites": 10_000,
    "concurrent_connections": 1_000_000,
    "busiest_site_messages_per_second": 500,
    # assumptions, stated in the doc
    "all_sites_messages_per_second": 5_000,  # the busiest site is a tenth of all traffic
    "busiest_site_connection_share": 0.10,  # and holds a tenth of the connections
    "visit_seconds": 300,  # a connection lives 5 minutes (issue 13's small-site visitor)
    "messages_per_conversation": 10,
    "conversation_open_seconds": 600,  # from first message to the agent's close
    "conversations_per_agent": 5,  # concurrent chats one agent handles, one console tab each
}
# AWS defaults for one account in one region (all adjustable through Service Quotas unless noted):
QUOTAS = {
    "partition_wcu_per_second": 1_000,  # DynamoDB, per partition (hard; a single item can never exceed it)
    "partition_rcu_per_second": 3_000,  # DynamoDB, per partition (hard)
    "table_on_demand_units_per_second": 40_000,  # DynamoDB on-demand, per table, reads and writes each
    "item_bytes_max": 400 * 1024,  # DynamoDB item size (hard)
    "apigw_new_connections_per_second": 500,  # API Gateway WebSocket, per account
    "apigw_requests_per_second": 10_000,  # per account, shared by REST, HTTP, WebSocket and callback (posts) APIs
    "lambda_concurrency": 1_000,  # per region
    "lambda_scale_per_10_seconds": 1_000,  # per function: concurrency may grow by 1,000 every 10 s
}


def item_sizes() -> Dict[str, float]:
    """Sizes of the items the hot paths touch, from the models as the app fills them."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from bench.metering import item_size
    from chalicelib import ids
    from chalicelib.models import Connection, Conversation, Site

    conn_id = "AbCdEfGhIjKlMnO="  # API Gateway's ids are 16 characters
    agent_id = ids.random_id("agent", 9)

    def site_with(agents: int) -> int:
        site = Site(ids.random_id("site", 9), name="A busy shop", allowed_origins=["https://shop.example"],
                    secret="0" * 64, created_at=1_800_000_000,
                    agent_conns={f"{conn_id[:-4]}{i:03d}=": agent_id for i in range(agents)})
        return item_size(site.serialize())

    conversation = Conversation(ids.random_id("conv", 12), site_id=ids.random_id("site", 9), visitor_id=ids.random_id("v", 16),
                                status="assigned", agent_id=agent_id, open_site_id=ids.random_id("site", 9),
                                opened_at=1_800_000_000_000, created_at=1_800_000_000_000, updated_at=1_800_000_000_000)
    open_entry = {k: v for k, v in conversation.serialize().items()
                  if k in ("conversation_id", "open_site_id", "opened_at", "status", "agent_id", "visitor_id")}
    connection = Connection(conn_id, role="visitor", site_id=ids.random_id("site", 9), subject=ids.random_id("v", 16),
                            conversation_id=ids.random_id("conv", 12), connected_at=1_800_000_000_000,
                            last_seen=1_800_000_000.123, sweep_shard=3, expires_at=1_800_007_800)
    return {"site_base_bytes": site_with(0), "site_bytes_per_agent_connection": (site_with(100) - site_with(0)) / 100,
            "open_index_entry_bytes": item_size(open_entry), "connection_bytes": item_size(connection.serialize())}


def _ru(size: float) -> float:
    """An eventually consistent read of ``size`` bytes."""
    return max(1, math.ceil(size / 4096)) / 2


def model(cost: Dict[str, Any], sizes: Dict[str, float]) -> Dict[str, Any]:
    t, q, a, cfg = TARGET, QUOTAS, cost["actions"], cost["stage"]
    send, typing, read = a["ws_message send"], a["ws_message typing"], a["ws_message read"]
    ping_w, ping_q = a["ws_message ping:write"], a["ws_message ping:quiet"]
    n = t["concurrent_connections"]
    busiest = t["busiest_site_messages_per_second"]
    ping_period = cfg["widget_ping_seconds"]
    write_every = min(cfg["heartbeat_interval"], cfg["heartbeat_timeout"] / 3)
    pings_per_write = math.ceil(write_every / ping_period)
    heartbeat_writes_per_conn = 1 / (ping_period * pings_per_write)
    new_conns = n / t["visit_seconds"]
    conv_rate = busiest / t["messages_per_conversation"]
    open_conversations = conv_rate * t["conversation_open_seconds"]
    agent_conns = math.ceil(open_conversations / t["conversations_per_agent"])
    site_bytes = sizes["site_base_bytes"] + agent_conns * sizes["site_bytes_per_agent_connection"]
    frame_invocations = 3  # a message as clients send it: typing, send, read (bench.cost)
    limits: List[Dict[str, Any]] = []

    def limit(name: str, load: float, capacity: float, unit: str, breaks_at: str, change: str, done: bool = False):
        limits.append({"limit": name, "load": round(load, 1), "capacity": capacity, "unit": unit,
                       "ratio": round(load / capacity, 3), "breaks_at": breaks_at, "change": change, "done": done})

    # 1. the site item, read on every frame of a busy site (roster) -----------------------------
    site_reads_uncached = busiest * frame_invocations  # send, typing and read each read it without the cache
    instances = busiest * sum(x["billed_ms"] for x in (send, typing, read)) / 1000
    site_reads_cached = instances / 1.0  # one read per warm instance per KEFU_SITE_CACHE_SECONDS (1 s)
    rcu_uncached = site_reads_uncached * _ru(site_bytes)
    rcu_cached = site_reads_cached * _ru(site_bytes)
    limit("site item reads (roster), busiest site, without the warm cache", rcu_uncached, q["partition_rcu_per_second"],
          "RCU/s on one item",
          f"{q['partition_rcu_per_second'] / (frame_invocations * _ru(site_bytes)):,.0f} msg/s at this roster size",
          "sites.cached_site: read once a second per warm function (below)", done=True)
    limit("site item reads (roster), busiest site, with the warm cache", rcu_cached, q["partition_rcu_per_second"],
          "RCU/s on one item",
          f"{q['partition_rcu_per_second'] / _ru(site_bytes):,.0f} warm instances reading it", "-")
    max_agent_conns = (q["item_bytes_max"] - sizes["site_base_bytes"]) / sizes["site_bytes_per_agent_connection"]
    limit("site item size (roster of agent connections)", site_bytes, q["item_bytes_max"], "bytes",
          f"{max_agent_conns:,.0f} agent connections on one site",
          "move the roster to its own items (one per agent connection, a Query per message, or the cache)")
    # 2. fan-out: every message goes to every agent connection of the site ------------------------
    posts_busiest = busiest * (agent_conns + 2)
    limit("posts per second, busiest site (every message to every agent tab)", posts_busiest,
          q["apigw_requests_per_second"], "requests/s (account)",
          f"{q['apigw_requests_per_second'] / (agent_conns + 2):,.1f} msg/s with {agent_conns:,} agent tabs",
          "deliver a message to its assigned agent's tabs and whoever opened it; others get a "
          "throttled per-conversation summary (protocol change)")
    # 3. assignment reads the whole open index of the site ---------------------------------------
    assign_ru = _ru(open_conversations * sizes["open_index_entry_bytes"])
    limit("open-index reads per assignment (agent loads), busiest site", conv_rate * assign_ru,
          q["partition_rcu_per_second"], "RCU/s on one index partition",
          f"{math.sqrt(q['partition_rcu_per_second'] / (t['conversation_open_seconds'] * sizes['open_index_entry_bytes'] / 8192)):,.1f} "
          f"new conversations/s (reads grow with the square of the rate)",
          "count loads per agent from a sparse per-agent index and pick the less loaded of two random "
          "online agents (power of two choices): two small Queries per assignment")
    limit("open-index writes (open, assign, close), busiest site", conv_rate * 3, q["partition_wcu_per_second"],
          "WCU/s on one index partition", f"{q['partition_wcu_per_second'] / 3:,.0f} new conversations/s", "-")
    # a session only reserves a conversation id (on the visitor item): the item, and its
    # created-index entry, come with the first message
    limit("created-index writes (one per conversation, at its first message), busiest site", conv_rate,
          q["partition_wcu_per_second"], "WCU/s on one index partition",
          f"{q['partition_wcu_per_second']:,} new conversations/s",
          "create the conversation on the first message (a session reserves its id only)", done=True)
    # 4. heartbeats on the sharded last-seen index ---------------------------------------------
    gsi_writes = n * heartbeat_writes_per_conn * ping_w["write_units"] + new_conns * 2 * 2  # put on connect, delete on leave
    shards = 4
    needed_shards = math.ceil(gsi_writes / (0.8 * q["partition_wcu_per_second"]))
    per_conn = heartbeat_writes_per_conn * ping_w["write_units"] + 4 / t["visit_seconds"]
    limit(f"last-seen index writes per shard (KEFU_SWEEP_SHARDS={shards})", gsi_writes / shards,
          q["partition_wcu_per_second"], "WCU/s on one index partition",
          f"{shards * q['partition_wcu_per_second'] / per_conn:,.0f} connections",
          f"KEFU_SWEEP_SHARDS={needed_shards} (at 80% of the partition limit); each shard adds one Query per sweep run")
    table_writes = n * heartbeat_writes_per_conn + new_conns * 2
    limit("connections table writes", table_writes, q["table_on_demand_units_per_second"], "WCU/s (table)",
          f"{q['table_on_demand_units_per_second'] / (heartbeat_writes_per_conn + 2 / t['visit_seconds']):,.0f} connections",
          "quota increase")
    # 5. API Gateway ----------------------------------------------------------------------------
    limit("new WebSocket connections per second", new_conns, q["apigw_new_connections_per_second"], "connections/s",
          f"{q['apigw_new_connections_per_second'] * t['visit_seconds']:,} concurrent connections ({t['visit_seconds']} s visits)",
          "quota increase (adjustable)")
    msgs = t["all_sites_messages_per_second"]
    posts_per_message = sum(x["posts"] for x in (send, typing, read))
    requests = n / ping_period * 2 + msgs * (frame_invocations + posts_per_message)
    limit("API Gateway requests per second (frames in + posts out)", requests, q["apigw_requests_per_second"],
          "requests/s (account)", f"{q['apigw_requests_per_second'] / (2 / ping_period):,.0f} connections by pings alone",
          f"pings are {n / ping_period * 2 / requests:.0%}: ping every few minutes instead of {ping_period:g} s "
          "(API Gateway's idle timeout is 10 minutes) with a matching KEFU_HEARTBEAT_TIMEOUT, and a quota increase")
    # 6. Lambda ---------------------------------------------------------------------------------
    concurrency = (n / ping_period * (ping_w["billed_ms"] / pings_per_write + ping_q["billed_ms"] * (1 - 1 / pings_per_write))
                   + msgs * sum(x["billed_ms"] for x in (send, typing, read))
                   + new_conns * (a["ws_connect visitor"]["billed_ms"] + a["ws_disconnect visitor"]["billed_ms"])) / 1000
    limit("Lambda concurrent executions", concurrency, q["lambda_concurrency"], "executions",
          f"{q['lambda_concurrency'] / concurrency:.2f}x this load", "quota increase; shorter pings-per-minute as above")
    limits.sort(key=lambda x: -x["ratio"])
    return {"target": t, "quotas": q, "sizes": sizes, "derived": {
        "heartbeat_writes_per_connection_per_second": heartbeat_writes_per_conn, "new_connections_per_second": new_conns,
        "busiest_site_new_conversations_per_second": conv_rate, "busiest_site_open_conversations": open_conversations,
        "busiest_site_agent_connections": agent_conns, "busiest_site_item_bytes": site_bytes,
        "site_reads_per_second_uncached": site_reads_uncached, "site_reads_per_second_cached": site_reads_cached,
        "busiest_site_message_function_instances": instances, "recommended_sweep_shards": needed_shards,
        "lambda_concurrency": concurrency}, "limits": limits}


def render(s: Dict[str, Any], cost: Dict[str, Any]) -> str:
    t, d, z = s["target"], s["derived"], s["sizes"]
    send = cost["actions"]["ws_message send"]
    rows = "\n".join(
        f"| {i + 1} | {x['limit']} | {x['load']:,} {x['unit']} | {x['capacity']:,} | {x['ratio']:.2f}x | {x['breaks_at']} | "
        f"{'**made:** ' if x['done'] else ''}{x['change']} |" for i, x in enumerate(s["limits"]))
    first = next(x for x in s["limits"] if not x["done"])
    return f"""# Scale on paper: one deployment, 10,000 sites, 1,000,000 connections

Generated by `python -m bench.scale_model` (`make bench`) from `bench/results/cost.json` (what
`bench.cost` measured running the app) and item sizes measured from the app's models; do not edit by
hand. Figures in `bench/results/scale.json`.

## The load
{t['sites']:,} sites, {t['concurrent_connections']:,} concurrent connections, the busiest site at
{t['busiest_site_messages_per_second']} messages/s. Assumed: {t['all_sites_messages_per_second']:,} messages/s over all sites; the busiest site holds
{t['busiest_site_connection_share']:.0%} of the connections; a connection lives {t['visit_seconds']} s; {t['messages_per_conversation']} messages per
conversation, open {t['conversation_open_seconds']} s; an agent handles {t['conversations_per_agent']} conversations at once with one console tab.
So the busiest site opens {d['busiest_site_new_conversations_per_second']:,.0f} conversations/s, holds {d['busiest_site_open_conversations']:,.0f} open, and has
{d['busiest_site_agent_connections']:,} agent connections; its site item (with the roster) is {d['busiest_site_item_bytes'] / 1024:,.0f} KB
({z['site_base_bytes']} bytes + {z['site_bytes_per_agent_connection']:.0f} per agent connection). Heartbeats: a client pings every
{cost['stage']['widget_ping_seconds']:g} s and one ping in {round(1 / (d['heartbeat_writes_per_connection_per_second'] * cost['stage']['widget_ping_seconds']))} writes last-seen ({d['heartbeat_writes_per_connection_per_second']:.3f} writes per connection per second);
{d['new_connections_per_second']:,.0f} connections open and close per second.

Measured per message (bench.cost): send {send['reads']:g} reads / {send['write_units']:g} WU / {send['posts']:g} posts /
{send['billed_ms']:.0f} ms billed, plus a typing frame and a read mark per message (three invocations).

## Limits, worst first
Load / capacity above 1.00x breaks at the target load. "Breaks at" is the load where it would.

| # | limit | load | capacity | load/capacity | breaks at | design change |
|---|---|---|---|---|---|---|
{rows}

**What breaks first** (largest ratio among limits not yet dealt with): {first['limit']}, at
{first['breaks_at']}; {first['ratio']:.1f}x over at the target.

## What was changed, and what was not
- **Made: a warm cache of the site item** (`chalicelib/sites.py: cached_site`,
  `KEFU_SITE_CACHE_SECONDS`, default 1 s). Send, typing, read and page views read the agents'
  roster from the site item; at the busiest site that was {d['site_reads_per_second_uncached']:,.0f} reads/s of one
  {d['busiest_site_item_bytes'] / 1024:,.0f} KB item. Now each warm function instance reads it at most once a second:
  about {d['site_reads_per_second_cached']:,.0f} reads/s ({d['busiest_site_message_function_instances']:,.0f} instances busy with that site's frames). An agent's
  `$connect` answers only once every older copy has expired (a 1 s hold; API Gateway delivers
  nothing to a connection inside `$connect`, and the console reads its state once open), so no
  push misses a new agent; a departed agent's posts answer 410 and are forgotten as before. It also
  lowers a small site's cost: a message right after its typing frame reads nothing
  (`tests/test_site_cache.py`).
- **Configuration, not code: `KEFU_SWEEP_SHARDS`.** The last-seen index is written on every
  heartbeat write, connect and disconnect, spread over `KEFU_SWEEP_SHARDS` partitions. The default
  (4) suits a small deployment (each shard costs one Query per sweep run); at the target it needs
  **{d['recommended_sweep_shards']}**.
- **Quotas, not code:** API Gateway's new connections per second and requests per second, Lambda
  concurrency and DynamoDB's table throughput are adjustable; the table shows the factor needed.
- **Not made (design changes, each larger than a small change):** delivering a message only to its
  assigned agent's tabs instead of every agent of the site (a protocol change: consoles list every
  conversation live today); picking an agent without reading the whole open index (a per-agent
  index and two-choice assignment); longer client pings (trades dead-link detection time for
  requests; needs the widget, the console and `KEFU_HEARTBEAT_TIMEOUT` changed together); moving
  the roster out of the site item before a site passes the item size limit.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Kefu at scale, from bench.cost's measurements")
    parser.add_argument("--cost", default=str(ROOT / "bench" / "results" / "cost.json"))
    parser.add_argument("--out", default=None, help="write results/ and docs/ under this folder instead")
    args = parser.parse_args()
    cost = json.loads(pathlib.Path(args.cost).read_text())
    figures = model(cost, item_sizes())
    results = pathlib.Path(args.out) / "results" if args.out else ROOT / "bench" / "results"
    docs = pathlib.Path(args.out) / "docs" if args.out else ROOT / "docs"
    results.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    (results / "scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = render(figures, cost)
    (docs / "scale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
