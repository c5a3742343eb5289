"""What Kefu costs, from measurements: per million messages and per month for a small site, side by
side with the same workload on the design of Chalice's WebSocket chat tutorial.

    python -m bench.cost [--conversations 6] [--messages 10] [--stage prod] [--out DIR]
    -> prints the figures, writes bench/results/cost.json and docs/cost.md (under DIR if given)

Everything per invocation is measured by bench/workload.py, which runs the real app in the local
stack with real WebSocket clients: DynamoDB requests and billed units (from real item sizes,
bench/metering.py), the frames posted and their encoded sizes, wall and CPU time per Lambda
function. The tutorial's design is modelled in bench/tutorial_chat.py and counted through
bench/counting_proxy.py. Memory sizes, heartbeat and sweep settings come from .chalice/config.json
for the stage; client ping periods from web/widget.js and web/console/console.js.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import statistics
from collections import defaultdict
from typing import Any, Dict, List, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]

# us-east-1 list prices from the AWS pricing pages of API Gateway, Lambda and DynamoDB (on-demand,
# after the November 2024 reduction). API Gateway meters WebSocket messages in 32 KB units, both
# directions; $connect/$disconnect are not messages. Chalice's REST API is an API Gateway REST API.
PRICES = {
    "apigw_websocket_message_per_million": 1.00,
    "apigw_connection_minute_per_million": 0.25,
    "apigw_rest_request_per_million": 3.50,
    "lambda_request_per_million": 0.20,
    "lambda_gb_second": 0.0000166667,  # x86
    "dynamodb_write_request_unit_per_million": 0.625,
    "dynamodb_read_request_unit_per_million": 0.125,
}
WS_UNIT_BYTES = 32 * 1024
# Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion below that.
FULL_VCPU_MB = 1769
# Chalice's function names for the handlers app.py declares.
FUNCTIONS = {"ws_connect": "websocket_connect", "ws_message": "websocket_message",
             "ws_disconnect": "websocket_disconnect", "api_handler": "api_handler",
             "heartbeat_sweep": "heartbeat_sweep"}
TUTORIAL_FUNCTIONS = {"connect": "websocket_connect", "message": "websocket_message",
                      "disconnect": "websocket_disconnect"}

# The small site of issue 13. Everything else is measured or read from the project's files.
SMALL_SITE = {
    "conversations_per_month": 300,
    "messages_per_conversation": 10,
    "visitor_minutes_online_per_conversation": 5,  # the visitor's tabs are open 5 minutes that day
    "agent_hours_online_per_day": 8,  # one agent, one console tab, every day of the month
    "days_per_month": 30,
}


# --- configuration read from the project --------------------------------------------------------

def stage_config(stage: str) -> Dict[str, Any]:
    from chalice.config import Config

    on_disk = json.loads((ROOT / ".chalice" / "config.json").read_text())
    memory = {}
    for name in set(FUNCTIONS.values()):
        memory[name] = Config(chalice_stage=stage, function_name=name, config_from_disk=on_disk).lambda_memory_size
    env = Config(chalice_stage=stage, function_name="websocket_message", config_from_disk=on_disk).environment_variables
    return {"stage": stage, "memory_mb": memory,
            "heartbeat_interval": int(env.get("KEFU_HEARTBEAT_INTERVAL", 30)),
            "heartbeat_timeout": int(env.get("KEFU_HEARTBEAT_TIMEOUT", 120)),
            "sweep_interval": int(env.get("KEFU_SWEEP_INTERVAL", 60)),
            "widget_ping_seconds": _ping_period(ROOT / "web" / "widget.js"),
            "console_ping_seconds": _ping_period(ROOT / "web" / "console" / "console.js")}


def _ping_period(path: pathlib.Path) -> float:
    """The client's ping period: the setInterval that sends {action: 'ping'}."""
    found = re.search(r"action: 'ping'.*?\}, (\d+)\);", path.read_text(), re.S)
    if not found:
        raise RuntimeError(f"no ping interval found in {path}")
    return int(found.group(1)) / 1000


# --- from records to per-action figures -------------------------------------------------------

def billed_ms(record: Dict[str, Any], memory_mb: int) -> int:
    """Lambda bills whole milliseconds. Waiting (wall - CPU) is taken as measured: the local store
    and gateway answer slower than DynamoDB and API Gateway, so it is an upper bound. CPU time is
    stretched by Lambda's CPU share at this memory size (a 512 MB function has 0.29 of a vCPU)."""
    cpu = record["cpu_ms"]
    waiting = max(0.0, record["wall_ms"] - cpu)
    return math.ceil(waiting + cpu * max(1.0, FULL_VCPU_MB / memory_mb))


def per_action(metered: List[Dict], timed: List[Dict], memory: Dict[str, int],
               names: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """Mean figures per (function, action): units and frames from the metered pass, billed
    duration from the timed one."""
    groups: Dict[Tuple[str, str], Dict[str, List]] = defaultdict(lambda: {"metered": [], "timed": []})
    for record in metered:
        groups[(record["function"], record["action"])]["metered"].append(record)
    for record in timed:
        groups[(record["function"], record["action"])]["timed"].append(record)
    out = {}
    for (function, action), both in groups.items():
        m, t = both["metered"] or both["timed"], both["timed"] or both["metered"]
        mem = memory[names[function]]
        out[f"{function} {action}"] = {
            "function": names[function],
            "count": len(t),
            "reads": statistics.mean(r["reads"] for r in m),
            "writes": statistics.mean(r["writes"] for r in m),
            "read_units": statistics.mean(r["read_units"] for r in m),
            "write_units": statistics.mean(r["write_units"] for r in m),
            "posts": statistics.mean(len(r["posts"]) for r in m),
            "post_units": statistics.mean(sum(ws_units(s) for s in r["posts"]) for r in m),
            "largest_post": max((max(r["posts"], default=0) for r in m), default=0),
            "wall_ms_median": round(statistics.median(r["wall_ms"] for r in t), 1),
            "cpu_ms_median": round(statistics.median(r["cpu_ms"] for r in t), 1),
            "billed_ms": statistics.mean(billed_ms(r, mem) for r in t),
            "memory_mb": mem,
        }
    return out


def ws_units(size: int) -> int:
    return max(1, math.ceil(size / WS_UNIT_BYTES))


# --- the bill -----------------------------------------------------------------------------------

class Bill:
    """Counts of billed things; priced at the end."""

    def __init__(self) -> None:
        self.ws_messages = 0.0
        self.connection_minutes = 0.0
        self.rest_requests = 0.0
        self.invocations = 0.0
        self.gb_seconds = 0.0
        self.read_units = 0.0
        self.write_units = 0.0

    def add(self, figures: Dict[str, float], times: float, inbound_bytes: int = 0, rest: bool = False) -> None:
        """``times`` invocations of an action; ``inbound_bytes``: the frame that set it off (0: none)."""
        self.invocations += times
        self.gb_seconds += times * figures["billed_ms"] / 1000 * figures["memory_mb"] / 1024
        self.read_units += times * figures["read_units"]
        self.write_units += times * figures["write_units"]
        self.ws_messages += times * figures["post_units"]
        if inbound_bytes:
            self.ws_messages += times * ws_units(inbound_bytes)
        if rest:
            self.rest_requests += times

    def lines(self) -> Dict[str, float]:
        p = PRICES
        return {
            "API Gateway WebSocket messages": self.ws_messages / 1e6 * p["apigw_websocket_message_per_million"],
            "API Gateway connection minutes": self.connection_minutes / 1e6 * p["apigw_connection_minute_per_million"],
            "API Gateway REST requests": self.rest_requests / 1e6 * p["apigw_rest_request_per_million"],
            "Lambda requests": self.invocations / 1e6 * p["lambda_request_per_million"],
            "Lambda duration": self.gb_seconds * p["lambda_gb_second"],
            "DynamoDB writes": self.write_units / 1e6 * p["dynamodb_write_request_unit_per_million"],
            "DynamoDB reads": self.read_units / 1e6 * p["dynamodb_read_request_unit_per_million"],
        }

    def counts(self) -> Dict[str, float]:
        return {k: round(v, 3) for k, v in vars(self).items()}


def _inbound(sizes: Dict[str, List[int]], action: str) -> int:
    return max(sizes.get(action, [0]))


def kefu_message(actions: Dict[str, Dict], sizes: Dict[str, List[int]]) -> List[Tuple[Dict, float, int]]:
    """One chat message as clients really send it: the sender's typing frame, the send, the
    other side's read mark (each an invocation)."""
    return [(actions["ws_message typing"], 1, _inbound(sizes, "typing")),
            (actions["ws_message send"], 1, _inbound(sizes, "send")),
            (actions["ws_message read"], 1, _inbound(sizes, "read"))]


def per_million_messages(actions: Dict[str, Dict], sizes: Dict[str, List[int]], with_extras: bool) -> Bill:
    bill = Bill()
    bundle = kefu_message(actions, sizes) if with_extras else [(actions["ws_message send"], 1, _inbound(sizes, "send"))]
    for figures, times, inbound in bundle:
        bill.add(figures, 1_000_000 * times, inbound)
    return bill


def tutorial_per_million(actions: Dict[str, Dict], text_bytes: int) -> Bill:
    bill = Bill()
    bill.add(actions["message text"], 1_000_000, text_bytes)
    return bill


def small_site_month(actions: Dict[str, Dict], sizes: Dict[str, List[int]], cfg: Dict[str, Any],
                     measured: Dict[str, Any]) -> Tuple[Bill, Dict[str, float]]:
    site = SMALL_SITE
    conversations = site["conversations_per_month"]
    per_conv = measured["conversations"]  # conversations the scenario ran: per-conversation actions divide by it
    tabs = measured["visitor_tabs"]
    bill = Bill()
    # the conversation's own actions, as the scenario ran them (session, tabs, page views, syncs,
    # the first message, the whole-conversation sync, disconnects, the agent's close)
    for key, figures in actions.items():
        function, action = key.split(" ", 1)
        if key in ("ws_message typing", "ws_message read", "ws_message send") or action.startswith("ping") \
                or action == "nothing stale" or action in ("agent", "agent_session", "state"):
            continue
        inbound = _inbound(sizes, action.split(":")[0]) if function == "ws_message" else 0
        bill.add(figures, conversations * figures["count"] / per_conv, inbound, rest=function == "api_handler")
    # the messages after the first: a typing frame, the send, a read mark each
    later = site["messages_per_conversation"] - 1
    for figures, times, inbound in kefu_message(actions, sizes):
        bill.add(figures, conversations * later * times, inbound)
    bill.add(actions["ws_message typing"], conversations, _inbound(sizes, "typing"))  # and the first's
    bill.add(actions["ws_message read"], conversations, _inbound(sizes, "read"))
    # heartbeats: every ping is a frame in and a pong out; one in ceil(write interval / period) writes
    write_every = min(cfg["heartbeat_interval"], cfg["heartbeat_timeout"] / 3)
    visitor_minutes = conversations * tabs * site["visitor_minutes_online_per_conversation"]
    agent_minutes = site["agent_hours_online_per_day"] * 60 * site["days_per_month"]
    pings = visitor_minutes * 60 / cfg["widget_ping_seconds"] + agent_minutes * 60 / cfg["console_ping_seconds"]
    writing_share = 1 / math.ceil(write_every / cfg["widget_ping_seconds"])
    bill.add(actions["ws_message ping:write"], pings * writing_share, _inbound(sizes, "ping"))
    bill.add(actions["ws_message ping:quiet"], pings * (1 - writing_share), _inbound(sizes, "ping"))
    bill.connection_minutes += visitor_minutes + agent_minutes
    # the agent's day: a login, a console connection, its state, its close
    days = site["days_per_month"]
    bill.add(actions["api_handler agent_session"], days, rest=True)
    bill.add(actions["ws_connect agent"], days)
    bill.add(actions["ws_message state"], days, _inbound(sizes, "state"))
    bill.add(actions["ws_disconnect agent"], days)
    # the sweep, on its schedule all month, usually finding nothing stale
    sweeps = days * 24 * 3600 / max(60, cfg["sweep_interval"])
    bill.add(actions["heartbeat_sweep nothing stale"], sweeps)
    return bill, {"pings": pings, "writing_ping_share": writing_share, "sweeps": sweeps,
                  "visitor_connection_minutes": visitor_minutes, "agent_connection_minutes": agent_minutes}


def tutorial_month(actions: Dict[str, Dict], room: int, text_bytes: int, name_bytes: int, join_bytes: int,
                   minutes: float) -> Bill:
    site = SMALL_SITE
    conversations = site["conversations_per_month"]
    bill = Bill()
    bill.add(actions["connect connect"], conversations * room)
    bill.add(actions["message name"], conversations * room, name_bytes)
    bill.add(actions["message join"], conversations * room, join_bytes)
    bill.add(actions["message text"], conversations * site["messages_per_conversation"], text_bytes)
    bill.add(actions["disconnect disconnect"], conversations * room)
    bill.connection_minutes += minutes  # the same people online as long; no pings, no sweep
    return bill


# --- the report -----------------------------------------------------------------------------

def compute(raw: Dict[str, Any], cfg: Dict[str, Any], conversations: int, messages: int) -> Dict[str, Any]:
    memory = cfg["memory_mb"]
    actions = per_action(raw["metered"], raw["timed"], memory, FUNCTIONS)
    sizes = raw["frame_sizes"]["inbound"]
    measured = {"conversations": conversations, "messages_per_conversation": messages, "visitor_tabs": 2,
                "agent_tabs": 2}
    tut = raw["tutorial"]
    tut_memory = {name: memory[name] for name in TUTORIAL_FUNCTIONS.values()}
    tut_actions = per_action(tut["timed"]["records"], tut["timed"]["records"], tut_memory, TUTORIAL_FUNCTIONS)
    proxy = tut["counted"]["proxy"]
    texts = tut["counted"]["text_messages"]
    room = tut["counted"]["room_size"]
    tutorial_per_message = {"queries": proxy["calls"].get("Query", 0) / texts,
                            "items_read": sum(proxy["items"].values()) / texts,
                            "read_units": proxy["read_units"] / texts,
                            "other_calls": sum(v for k, v in proxy["calls"].items() if k != "Query") / texts,
                            "room_size": room}
    tut_actions["message text"]["read_units"] = tutorial_per_message["read_units"]
    # Its items are a few dozen bytes and all in ReverseLookup: a put or delete is 1 WU + 1 for the index.
    for action, calls in proxy["requests_by_action"].items():
        key = {"connect": "connect connect", "disconnect": "disconnect disconnect"}.get(action, f"message {action}")
        n = tut_actions[key]["count"]
        tut_actions[key]["write_units"] = 2 * (calls.get("PutItem", 0) + calls.get("DeleteItem", 0)) / n
        if action != "text":  # tiny items: a Query is 0.5 RU (eventually consistent)
            tut_actions[key]["read_units"] = 0.5 * calls.get("Query", 0) / n
    text_bytes = len(_text().encode())
    kefu_million = per_million_messages(actions, sizes, with_extras=False)
    kefu_million_full = per_million_messages(actions, sizes, with_extras=True)
    tut_million = tutorial_per_million(tut_actions, text_bytes)
    month, month_counts = small_site_month(actions, sizes, cfg, measured)
    tut_month = tutorial_month(tut_actions, room, text_bytes, len(b"member0"), len(b"/join conversation"),
                               month_counts["visitor_connection_minutes"] + month_counts["agent_connection_minutes"])
    outbound = raw["frame_sizes"]["outbound"]
    return {
        "stage": cfg,
        "workload": {**measured, "text": _text(), "small_site": SMALL_SITE},
        "actions": actions,
        "frame_sizes": {"inbound_max": {k: max(v) for k, v in sizes.items()},
                        "outbound_max": {k: max(v) for k, v in outbound.items()}},
        "per_message": {k: actions["ws_message send"][k] for k in ("reads", "writes", "read_units", "write_units",
                                                                  "posts", "billed_ms", "memory_mb")},
        "tutorial": {"per_message": tutorial_per_message, "actions": tut_actions},
        "cost_per_million_messages": {"kefu_send_only": _priced(kefu_million), "kefu_with_typing_and_read": _priced(kefu_million_full),
                                      "tutorial": _priced(tut_million)},
        "small_site_month": {"kefu": _priced(month), "tutorial": _priced(tut_month), "kefu_counts": month.counts(),
                             "tutorial_counts": tut_month.counts(), **month_counts},
        "prices": PRICES,
    }


def _priced(bill: Bill) -> Dict[str, float]:
    lines = bill.lines()
    lines["total"] = sum(lines.values())
    return {k: round(v, 4) for k, v in lines.items()}


def _text() -> str:
    from bench.workload import TEXT

    return TEXT


def main() -> None:
    parser = argparse.ArgumentParser(description="Kefu's cost from measurements")
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--out", default=None, help="write results/ and docs/ under this folder instead")
    args = parser.parse_args()
    from bench import workload
    from bench.cost_doc import render

    cfg = stage_config(args.stage)
    raw = workload.run(args.conversations, args.messages)
    figures = compute(raw, cfg, args.conversations, args.messages)
    results = pathlib.Path(args.out) / "results" if args.out else ROOT / "bench" / "results"
    docs = pathlib.Path(args.out) / "docs" if args.out else ROOT / "docs"
    results.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    (results / "cost.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    text = render(figures)
    (docs / "cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
