"""Chaos bench: visitors and agents on real sockets, killed and reconnected, checked against the store.

    python -m bench.chaos [--visitors 50] [--messages 40] [--agents 3] [--seed 1] [--duration-limit 540]

Starts the local stack (tests/e2e/stack.py), creates the agents, then runs seeded clients
(bench/chaos_clients.py) that follow docs/protocol.md as a careful client would: one unacked
message at a time per outbox, re-sent with the same client_msg_id after every reconnect; the
catch-up rule (``synced_seq``, ``gaps``, ``next_after_seq``) after every (re)connect; a new
session when an ack lands elsewhere. Meanwhile: RST and FIN kills, kills right after a ``send``
frame, two tabs of one visitor, page reloads (new sessions), agents closing and transferring
conversations, Chinese texts up to the 4000-character limit (some visitors mostly long ones).
At the end every client catches up once more, a console opened afresh reads every conversation
from seq 0, and the bench reads the tables (bench/chaos_store.py): lost, duplicated, refused
against the protocol, seq gaps nobody was told about, and for every client the messages of its
conversations it never saw. Writes bench/results/chaos.json; the event log and the stack's log
go to test-output/.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Set, Tuple

import aiohttp

from bench.chaos_clients import (
    AgentClient,
    ChaosConfig,
    Client,
    Run,
    Visitor,
    VisitorTab,
    percentile,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVER_LOG = ROOT / "test-output" / "chaos-server.log"
EVENTS_LOG = ROOT / "test-output" / "chaos-events.jsonl"
TABLE_PREFIX = "kefu-chaos-"
AGENT_PASSWORD = "chaos-agent-password"


# ---- the run ---------------------------------------------------------------------------------


def forced_chaos(tab_number: int, quota: int) -> Dict[int, str]:
    """One scripted event per tab, cycling through the kinds, so even a small run has each."""
    kinds = ["mid_send_kill", "idle_kill", "mid_send_kill", "reload", "idle_kill"]
    if quota < 2:
        return {}
    return {1 + tab_number % (quota - 1): kinds[tab_number % len(kinds)]}


async def drive(config: ChaosConfig, info: Dict[str, Any], base: str,
                agent_logins: List[Tuple[str, str]]) -> Tuple[Run, List[Client]]:
    """Run every client against a started stack; returns the ledger and the clients (with what they saw)."""
    run = Run(config, info, base)
    master = random.Random(config.seed)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
        run.http = http
        agents = [AgentClient(run, i, email, password, random.Random(master.random()))
                  for i, (email, password) in enumerate(agent_logins)]
        agent_tasks = [asyncio.create_task(agent.run_agent()) for agent in agents]
        await asyncio.wait_for(asyncio.gather(*(agent.ready.wait() for agent in agents)), 120)

        visitors: List[Visitor] = []
        tabs: List[VisitorTab] = []
        for index in range(config.visitors):
            visitor = Visitor(index)
            visitors.append(visitor)
            two = master.random() < config.two_tab_share or (index == 0 and config.two_tab_share > 0)
            visitor.wordy = master.random() < config.wordy_share or (index == 1 and config.wordy_share > 0)
            quotas = [config.messages - config.messages // 2, config.messages // 2] if two else [config.messages]
            for tab, quota in enumerate(quotas):
                tab_rng = random.Random(master.random())
                visitor.tabs.append(VisitorTab(run, visitor, tab, quota, forced_chaos(len(tabs), quota), tab_rng))
                tabs.append(visitor.tabs[-1])
        run.tabs = tabs
        run.counts["two_tab_visitors"] = sum(1 for v in visitors if len(v.tabs) > 1)
        run.counts["wordy_visitors"] = sum(1 for v in visitors if v.wordy)
        arrival_window = min(10.0, 0.2 * config.visitors)

        async def arrive(tab: VisitorTab, delay: float) -> None:
            await asyncio.sleep(delay)
            await tab.run_tab()

        tab_tasks = [asyncio.create_task(arrive(tab, master.uniform(0, arrival_window) + 0.5 * tab.tab))
                     for tab in tabs]
        sending = asyncio.gather(*(tab.done.wait() for tab in tabs))
        try:
            await asyncio.wait_for(sending, max(1.0, run.flush_until - time.monotonic() + 5))
        except asyncio.TimeoutError:
            run.counts["tabs_not_done"] = sum(1 for tab in tabs if not tab.done.is_set())
        run.stop_generating.set()
        await asyncio.wait(agent_tasks, timeout=max(1.0, run.flush_until - time.monotonic() + 5))
        run.traffic_seconds = run.now()
        # Whoever is still sending past the limits stops now, so nothing is stored after the final
        # catch-up; a send already in flight gets two seconds to land.
        stragglers = [task for task, tab in zip(tab_tasks, tabs) if not tab.done.is_set()]
        stragglers += [task for task in agent_tasks if not task.done()]
        for task in stragglers:
            task.cancel()
        await asyncio.sleep(2.0 if stragglers else 1.0)

        final_started = time.monotonic()
        clients: List[Client] = [*tabs, *agents]
        sem = asyncio.Semaphore(8)

        async def final(client: Client) -> None:
            async with sem:
                await asyncio.wait_for(client.final_catch_up(), max(5.0, run.hard_until - time.monotonic()))

        results = await asyncio.gather(*(final(c) for c in clients), return_exceptions=True)
        for client, result in zip(clients, results):
            if isinstance(result, BaseException):
                run.counts["final_catch_up_failed"] += 1
                run.event(client.name, "final_catch_up_failed", error=repr(result)[:120])
        run.final_seconds = time.monotonic() - final_started

        # A console opened now reads every conversation from seq 0: whole histories, long texts and
        # all, in pages that must fit a frame.
        fresh = AgentClient(run, 0, *agent_logins[0], random.Random(master.random()), name="fresh")
        fresh_started = time.monotonic()
        try:
            await fresh.login()
            await asyncio.wait_for(fresh.final_catch_up(), max(5.0, run.hard_until - time.monotonic()))
        except Exception as exc:
            run.counts["final_catch_up_failed"] += 1
            run.event(fresh.name, "final_catch_up_failed", error=repr(exc)[:120])
        run.fresh_console_seconds = time.monotonic() - fresh_started
        clients.append(fresh)
        run.final.set()
        for task in [*tab_tasks, *agent_tasks]:
            task.cancel()
        await asyncio.gather(*tab_tasks, *agent_tasks, return_exceptions=True)
        await asyncio.gather(*(c.sock.close() for c in clients if c.sock is not None), return_exceptions=True)
    return run, clients


# ---- checking against the store --------------------------------------------------------------


def verify(run: Run, clients: List[Client], store: Dict[str, Any]) -> Dict[str, Any]:
    """The figures and every failure, from what the clients sent and saw against what was stored."""
    conversations = {c["conversation_id"]: c for c in store["conversations"]}
    by_cmid: Dict[str, List[Tuple[str, int]]] = collections.defaultdict(list)
    by_text: Dict[str, List[Tuple[str, int]]] = collections.defaultdict(list)
    holders: Dict[str, Dict[int, List[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    tombstones: Dict[str, Set[int]] = collections.defaultdict(set)
    stored_text: Dict[Tuple[str, int], str] = {}
    unsequenced, unknown = [], []
    for conversation_id, conversation in conversations.items():
        for item in conversation["messages"]:
            if item["gap"]:
                tombstones[conversation_id].add(item["seq"])
                continue
            if item["seq"] is None:
                unsequenced.append({"cid": conversation_id, "cmid": item["client_msg_id"]})
                continue
            if item["client_msg_id"] not in run.outgoing:
                unknown.append({"cid": conversation_id, "cmid": item["client_msg_id"], "seq": item["seq"]})
            by_cmid[item["client_msg_id"]].append((conversation_id, item["seq"]))
            by_text[item["text"]].append((conversation_id, item["seq"]))
            holders[conversation_id][item["seq"]].append(item["client_msg_id"])
            stored_text[(conversation_id, item["seq"])] = item["text"]

    failures: List[Dict[str, Any]] = []
    sent = acked = refused = stored = lost = unacked = mismatched = corrupted = unexpected = 0
    for message in run.outgoing.values():
        places = by_cmid.get(message.client_msg_id, [])
        if message.attempts:
            sent += 1
        if message.ack:
            acked += 1
        if message.refused:
            refused += 1
            # docs/protocol.md: a visitor's valid message is never refused; an agent's only on a
            # closed conversation.
            if message.role == "visitor" or message.refused != "conversation_closed":
                unexpected += 1
                failures.append({"kind": "refused", "cmid": message.client_msg_id, "client": message.client,
                                 "code": message.refused, "targets": message.targets,
                                 "stored": bool(by_cmid.get(message.client_msg_id))})
        if places:
            stored += 1
            if any(stored_text[place] != message.text for place in places):
                corrupted += 1
                failures.append({"kind": "corrupted", "cmid": message.client_msg_id, "places": places})
        if message.attempts and not message.ack and not message.refused:
            unacked += 1
        if message.attempts and (message.ack or not message.refused) and not places:
            lost += 1
            failures.append({"kind": "lost", "cmid": message.client_msg_id, "client": message.client,
                             "acked": message.ack, "attempts": message.attempts, "targets": message.targets,
                             "refused": message.refused})
        if message.ack and places and tuple(message.ack) not in places:
            mismatched += 1
            failures.append({"kind": "ack_mismatch", "cmid": message.client_msg_id, "ack": message.ack,
                             "stored": places})
    duplicated: Set[str] = set()
    for cmid, places in by_cmid.items():
        if len(places) > 1:
            duplicated.add(cmid)
            failures.append({"kind": "duplicate_client_msg_id", "cmid": cmid, "places": places})
    for text, places in by_text.items():
        if len(places) > 1:
            cmids = sorted({cmid for cid, seq in places for cmid in holders[cid][seq]})
            duplicated.update(cmids)
            failures.append({"kind": "duplicate_text", "cmids": cmids, "places": places})
    for conversation_id, seqs in holders.items():
        for seq, cmids in seqs.items():
            if len(cmids) > 1:
                failures.append({"kind": "seq_shared", "cid": conversation_id, "seq": seq, "cmids": cmids})

    holes = unexplained = 0
    for conversation_id, conversation in conversations.items():
        top = max([conversation["last_seq"], *holders[conversation_id].keys()], default=0)
        for seq in range(1, top + 1):
            if seq in holders[conversation_id]:
                continue
            holes += 1
            if seq not in run.gaps_reported.get(conversation_id, set()):
                unexplained += 1
                failures.append({"kind": "unexplained_gap", "cid": conversation_id, "seq": seq,
                                 "tombstone": seq in tombstones[conversation_id],
                                 "last_seq": conversation["last_seq"]})

    unseen_by_client: Dict[str, int] = {}
    all_conversations = list(conversations)
    for client in clients:
        scope = all_conversations if isinstance(client, AgentClient) else list(client.conversations())
        missing = 0
        for conversation_id in scope:
            for seq, cmids in holders.get(conversation_id, {}).items():
                if client.seen[conversation_id].get(seq) not in cmids:
                    missing += 1
                    failures.append({"kind": "unseen", "client": client.name, "cid": conversation_id, "seq": seq,
                                     "cmid": cmids[0], "client_synced_seq": client.synced[conversation_id],
                                     "client_saw_at_seq": client.seen[conversation_id].get(seq)})
        if missing:
            unseen_by_client[client.name] = missing
    for conflict in run.seq_conflicts:
        failures.append({"kind": "seq_conflict", **conflict})
    # Not a loss, but not one conversation per visitor either: noted, not failed.
    open_by_visitor: Dict[str, List[str]] = collections.defaultdict(list)
    for conversation_id, conversation in conversations.items():
        if conversation["status"] != "closed":
            open_by_visitor[conversation["visitor_id"]].append(conversation_id)
    split = {visitor: sorted(ids) for visitor, ids in open_by_visitor.items() if len(ids) > 1}

    every_catch_up = run.catch_up_ms["visitor"] + run.catch_up_ms["agent"]

    def ms(value: Optional[float]) -> Optional[float]:
        return round(value, 1) if value is not None else None

    figures = {
        "messages": {
            "generated": len(run.outgoing), "sent": sent, "acked": acked, "refused": refused,
            "refused_unexpectedly": unexpected,
            "stored": stored, "lost": lost, "duplicated": len(duplicated), "unacked_at_end": unacked,
            "ack_mismatch": mismatched, "corrupted": corrupted, "stored_without_seq": len(unsequenced),
            "stored_unknown": len(unknown),
        },
        "seq": {
            "conversations": len(conversations),
            "numbers": sum(c["last_seq"] for c in conversations.values()),
            "holes": holes, "reported_as_gaps": sum(len(s) for s in run.gaps_reported.values()),
            "tombstones": sum(len(s) for s in tombstones.values()), "unexplained_gaps": unexplained,
            "seq_conflicts": len(run.seq_conflicts),
        },
        "visitors_with_several_open_conversations": len(split),
        "unseen": {"total": sum(unseen_by_client.values()), "by_client": unseen_by_client},
        "latency_ms": {
            "ack_p50": ms(percentile(run.ack_ms, 50)), "ack_p99": ms(percentile(run.ack_ms, 99)),
            "acks": len(run.ack_ms),
            "reconnect_to_caught_up_p50": ms(percentile(every_catch_up, 50)),
            "reconnect_to_caught_up_p99": ms(percentile(every_catch_up, 99)),
            "reconnects": len(every_catch_up),
            "visitor_reconnect_to_caught_up_p50": ms(percentile(run.catch_up_ms["visitor"], 50)),
            "visitor_reconnect_to_caught_up_p99": ms(percentile(run.catch_up_ms["visitor"], 99)),
            "agent_reconnect_to_caught_up_p50": ms(percentile(run.catch_up_ms["agent"], 50)),
            "agent_reconnect_to_caught_up_p99": ms(percentile(run.catch_up_ms["agent"], 99)),
            "agent_reconnects": len(run.catch_up_ms["agent"]),
            "first_connect_to_caught_up_p50": ms(percentile(run.first_catch_up_ms, 50)),
        },
    }
    figures["ok"] = (lost == 0 and unexpected == 0 and not duplicated and unexplained == 0
                     and figures["unseen"]["total"] == 0
                     and mismatched == 0 and corrupted == 0 and not run.seq_conflicts)
    notes = [{"kind": "several_open_conversations", "visitor_id": visitor, "conversations": ids}
             for visitor, ids in split.items()]
    return {"figures": figures, "failures": failures, "notes": notes}


def story(run: Run, failure: Dict[str, Any], before: int = 30, after: int = 10) -> List[str]:
    """The events that mention a failure's message or conversations (and its client's reconnects),
    around the last one that names the message itself: what the report shows of how it happened."""
    keys = {str(v) for k, v in failure.items() if k in ("cmid", "cid")}
    keys.update(failure.get("cmids") or [])
    keys.update(failure.get("targets") or [])
    keys.update(failure.get("conversations") or [])
    keys.update(str(p[0]) for p in failure.get("places") or [])
    lines, anchor = [], None
    for at, client, kind, detail in run.events:
        values = {str(v) for v in detail.values()}
        if keys & values or (failure.get("client") == client and kind in ("caught_up", "kill_rst", "kill_fin",
                                                                           "kill_close", "session")):
            if failure.get("cmid") in values:
                anchor = len(lines)
            lines.append(f"{at:8.3f} {client:7} {kind} {json.dumps(detail, ensure_ascii=False, default=str)}")
    anchor = len(lines) - after if anchor is None else anchor
    return lines[max(0, anchor - before):anchor + after]


# ---- the stack -------------------------------------------------------------------------------


def store_env(info: Dict[str, Any]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env.update({"KEFU_DYNAMODB_ENDPOINT": info["dynamodb_endpoint"],
                "KEFU_TABLE_PREFIX": info.get("table_prefix", TABLE_PREFIX),
                "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"})
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_SECURITY_TOKEN", None)
    return env


def create_agents(info: Dict[str, Any], count: int, root: pathlib.Path) -> List[Tuple[str, str]]:
    """The seeded demo agent plus ``count - 1`` more, made with the admin CLI."""
    logins = [(info["agent_email"], info["agent_password"])]
    for i in range(1, count):
        email = f"chaos{i}@demo.kefu"
        subprocess.run([sys.executable, "-m", "admin", "create-agent", "--site", info["site_id"], "--email", email,
                        "--name", f"客服{i}", "--password", AGENT_PASSWORD],
                       cwd=root, env=store_env(info), check=True, capture_output=True, timeout=60)
        logins.append((email, AGENT_PASSWORD))
    return logins


def read_store(info: Dict[str, Any], root: pathlib.Path) -> Dict[str, Any]:
    # By path, with the stack's checkout on the path: its chalicelib, whatever this checkout holds.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "chaos_store.py"), "--site", info["site_id"]],
                          cwd=root, env={**store_env(info), "PYTHONPATH": str(root)}, check=True,
                          capture_output=True, timeout=300)
    return json.loads(done.stdout)


def server_revision(root: pathlib.Path) -> Dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    changed = git("status", "--porcelain", "--", "chalicelib", "app.py", "local")
    return {"root": str(root), "commit": git("rev-parse", "--short", "HEAD") or None,
            "uncommitted_server_changes": bool(changed)}


def run_chaos(config: ChaosConfig, root: Optional[pathlib.Path] = None,
              server_log: Optional[pathlib.Path] = SERVER_LOG,
              events_log: Optional[pathlib.Path] = EVENTS_LOG) -> Dict[str, Any]:
    """Start a stack, run the clients, check the store; returns the report (figures, failures...)."""
    from tests.e2e.stack import RunningStack

    root = root or ROOT
    revision = server_revision(root)  # before the stack starts: the code it runs
    began = time.monotonic()
    # Every visitor comes from 127.0.0.1, so the per-address session and login limits would meter
    # the bench, not a visitor: lifted. The send limit is the product's (an empty value means the
    # default), so clients meet rate_limited as they would in production.
    stack = RunningStack(env={"KEFU_TABLE_PREFIX": TABLE_PREFIX, "KEFU_SESSION_LIMIT": "1000000",
                              "KEFU_LOGIN_IP_LIMIT": "1000000", "KEFU_RATE_LIMIT": ""}, root=root)
    try:
        stack_seconds = time.monotonic() - began
        logins = create_agents(stack.info, config.agents, root)
        run, clients = asyncio.run(drive(config, stack.info, stack.base, logins))
        checked = time.monotonic()
        store = read_store(stack.info, root)
        report = verify(run, clients, store)
        verify_seconds = time.monotonic() - checked
    finally:
        stack.stop()
        if server_log is not None:
            server_log.parent.mkdir(parents=True, exist_ok=True)
            server_log.write_text(stack.log_text() + "\n")
    if events_log is not None:
        events_log.parent.mkdir(parents=True, exist_ok=True)
        with events_log.open("w") as out:
            for at, client, kind, detail in run.events:
                out.write(json.dumps({"t": at, "client": client, "kind": kind, **detail}, ensure_ascii=False,
                                     default=str) + "\n")
    failures = report["failures"]
    for failure in failures[:60] + report["notes"][:20]:
        failure["story"] = story(run, failure)
    counts = dict(sorted(run.counts.items()))
    figures = report["figures"]
    visitor_messages = sum(1 for m in run.outgoing.values() if m.role == "visitor")
    figures["messages"]["generated_by_visitors"] = visitor_messages
    figures["completed"] = (not any(counts.get(k) for k in ("tabs_not_done", "tabs_gave_up", "tabs_crashed",
                                                            "agents_gave_up", "agents_crashed"))
                            and visitor_messages == config.visitors * config.messages)
    return {
        "config": asdict(config),
        "server": revision,
        "seconds": {"stack_start": round(stack_seconds, 1), "traffic": round(run.traffic_seconds, 1),
                    "final_catch_up": round(run.final_seconds, 1),
                    "fresh_console_catch_up": round(run.fresh_console_seconds, 1), "verify": round(verify_seconds, 1),
                    "total": round(time.monotonic() - began, 1)},
        "clients": {"visitors": config.visitors, "visitor_tabs": sum(1 for c in clients if isinstance(c, VisitorTab)),
                    "wordy_visitors": counts.get("wordy_visitors", 0), "agents": config.agents,
                    "fresh_console": 1, "connects": sum(c.connects for c in clients)},
        "figures": figures,
        "chaos": counts,
        "failures": failures[:200],
        "failures_total": len(failures),
        "notes": report["notes"],
        "server_log": str(server_log) if server_log else None,
        "events_log": str(events_log) if events_log else None,
    }


def summary(report: Dict[str, Any]) -> str:
    f = report["figures"]
    m, s, lat, c = f["messages"], f["seq"], f["latency_ms"], report["chaos"]
    lines = [
        f"chaos: {report['clients']['visitors']} visitors ({report['clients']['visitor_tabs']} tabs), "
        f"{report['clients']['agents']} agents, seed {report['config']['seed']}; server {report['server']['commit']}"
        f"{' + uncommitted changes' if report['server']['uncommitted_server_changes'] else ''}",
        f"  messages: sent {m['sent']}, acked {m['acked']}, refused {m['refused']}, stored {m['stored']}, "
        f"lost {m['lost']}, duplicated {m['duplicated']}, refused unexpectedly {m['refused_unexpectedly']}, "
        f"unacked at end {m['unacked_at_end']}",
        f"  seq: {s['conversations']} conversations, {s['numbers']} numbers, holes {s['holes']} "
        f"(reported as gaps {s['reported_as_gaps']}), unexplained gaps {s['unexplained_gaps']}",
        f"  unseen after the final catch-up: {f['unseen']['total']} {f['unseen']['by_client'] or ''}",
        f"  visitors left with several open conversations: {f['visitors_with_several_open_conversations']}",
        f"  ack latency p50 {lat['ack_p50']} ms, p99 {lat['ack_p99']} ms ({lat['acks']} acks); "
        f"reconnect to caught up p50 {lat['reconnect_to_caught_up_p50']} ms, "
        f"p99 {lat['reconnect_to_caught_up_p99']} ms ({lat['reconnects']} reconnects; visitors p50 "
        f"{lat['visitor_reconnect_to_caught_up_p50']} p99 {lat['visitor_reconnect_to_caught_up_p99']} ms, agents p50 "
        f"{lat['agent_reconnect_to_caught_up_p50']} p99 {lat['agent_reconnect_to_caught_up_p99']} ms)",
        f"  chaos: RST kills {c.get('kill_rst', 0)}, FIN kills {c.get('kill_fin', 0)}, clean closes "
        f"{c.get('kill_close', 0)}, mid-send kills {c.get('mid_send_kills', 0)}, resends {c.get('resends', 0)}, "
        f"reloads {c.get('reloads', 0)}, moved by ack {c.get('moved_by_ack', 0)}, closes {c.get('agent_closes', 0)}, "
        f"transfers {c.get('agent_transfers', 0)}, texts at 4000 chars {c.get('texts_at_limit', 0)}",
        f"  time: traffic {report['seconds']['traffic']} s, final catch-up {report['seconds']['final_catch_up']} s, "
        f"fresh console from seq 0 {report['seconds']['fresh_console_catch_up']} s, "
        f"total {report['seconds']['total']} s; completed {f['completed']}; ok {f['ok']}",
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> Tuple[ChaosConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--visitors", type=int, default=defaults.visitors)
    parser.add_argument("--messages", type=int, default=defaults.messages, help="per visitor")
    parser.add_argument("--agents", type=int, default=defaults.agents)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--duration-limit", type=float, default=defaults.duration_limit,
                        help="seconds for traffic, final catch-up and checks (the stack's start is extra)")
    parser.add_argument("--stack-root", type=pathlib.Path, default=None,
                        help="run the server code of another checkout (default: this one)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS / "chaos.json")
    args = parser.parse_args(argv)
    config = ChaosConfig(visitors=args.visitors, messages=args.messages, agents=args.agents, seed=args.seed,
                         duration_limit=args.duration_limit)
    return config, args


def main(argv: Optional[List[str]] = None) -> int:
    config, args = parse_args(argv)
    report = run_chaos(config, root=args.stack_root)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(summary(report))
    for failure in report["failures"][:10]:
        print("  FAIL", json.dumps({k: v for k, v in failure.items() if k != "story"}, ensure_ascii=False))
    print(f"wrote {args.output}")
    return 0 if report["figures"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
