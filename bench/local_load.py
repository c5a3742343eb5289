"""How much chat the local stack carries on this machine: python -m bench.local_load.

Starts the real local stack (`python -m local`), opens ``--sockets`` live WebSockets (agents plus
visitors, every one pinging every 25 s as the widget does), then offers messages
at each rate in ``--rates`` for ``--seconds`` each, from the chatting visitors in turn. For every
message it records the visitor's ack and the first agent's push, and reports per rate: the rate
achieved, p50/p99 visitor-to-agent delivery, p99 ack, anything not delivered, and the CPU each
component spent per message (read from /proc for every process of the stack and for this load
generator, which shares the machine). Writes bench/results/local_load.json.

Goals (issue 14): 1,000 sockets sustain >= 100 messages/s with p99 delivery under 250 ms, and
p99 under 100 ms at 50 messages/s.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pathlib
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import requests
import websockets

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "local_load.json"
AGENT_PASSWORD = "load-agent-password"
GOALS = {"messages_per_second": 100, "p99_ms_at_100": 250, "p99_ms_at_50": 100}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The ping period of web/widget.js and web/console/console.js. The server writes last-seen at most
# once per KEFU_HEARTBEAT_INTERVAL (30 s), so every other ping writes.
WIDGET_PING_SECONDS = 25


def percentile(values: List[float], p: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


# ---- CPU by component ----------------------------------------------------------------------


def _descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _component(pid: int, stack_pid: int) -> str:
    """What a process of the stack is, from its command line."""
    try:
        argv = (pathlib.Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    text = " ".join(words)
    if pid == stack_pid:
        return "gateway (python -m local)"
    if "lambda_worker" in text:
        return f"function {_function_name(pid)}"
    if "dynalite" in text or (words and pathlib.Path(words[0]).name in ("node", "nodejs")):
        return "store (dynalite)"
    return pathlib.Path(words[0]).name if words else "other"


def _function_name(pid: int) -> str:
    """A worker's function, from the environment the runtime gave it (AWS_LAMBDA_FUNCTION_NAME)."""
    try:
        environ = (pathlib.Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return "?"
    for entry in environ:
        if entry.startswith(b"AWS_LAMBDA_FUNCTION_NAME="):
            return entry.split(b"=", 1)[1].decode(errors="replace")
    return "?"


def _cpu_seconds(pid: int) -> Tuple[float, float]:
    """(its own CPU, that of its children that ended and were reaped), in seconds."""
    try:
        fields = (pathlib.Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


Snapshot = Dict[int, Tuple[str, float, float]]
ENDED = "processes ended during the step"


def cpu_snapshot(stack_pid: int) -> Snapshot:
    snapshot = {pid: (_component(pid, stack_pid), *_cpu_seconds(pid)) for pid in _descendants(stack_pid)}
    snapshot[os.getpid()] = ("load generator (this bench)", *_cpu_seconds(os.getpid()))
    return snapshot


def cpu_by_component(before: Snapshot, after: Snapshot) -> Dict[str, float]:
    """CPU spent between two snapshots, by component. A process that ended in between (an
    environment reclaimed or replaced) is known only through its parent's reaped-children time,
    which covers its whole life: what it had spent by ``before`` is taken off again."""
    spent: Dict[str, float] = {}
    ended = 0.0
    for pid, (name, own, reaped) in after.items():
        _, own_before, reaped_before = before.get(pid, (name, 0.0, 0.0))
        spent[name] = spent.get(name, 0.0) + own - own_before
        ended += reaped - reaped_before
    ended -= sum(own for pid, (_, own, _) in before.items() if pid not in after)
    if ended > 0:
        spent[ENDED] = ended
    return {name: round(seconds, 3) for name, seconds in sorted(spent.items()) if seconds > 0}


# ---- clients -------------------------------------------------------------------------------


@dataclass
class Ledger:
    sent_at: Dict[str, float] = field(default_factory=dict)
    acked_ms: Dict[str, float] = field(default_factory=dict)
    delivered_ms: Dict[str, float] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)


class Peer:
    """One WebSocket: pings on the heartbeat interval, hands frames to the ledger."""

    def __init__(self, ws: Any, ledger: Ledger, role: str) -> None:
        self.ws = ws
        self.ledger = ledger
        self.role = role
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                now = time.perf_counter()
                if kind == "ack" and self.role == "visitor":
                    key = frame.get("client_msg_id")
                    if key in self.ledger.sent_at and key not in self.ledger.acked_ms:
                        self.ledger.acked_ms[key] = (now - self.ledger.sent_at[key]) * 1000
                elif kind == "message" and self.role == "agent":
                    key = frame.get("client_msg_id")
                    if key in self.ledger.sent_at and key not in self.ledger.delivered_ms:
                        self.ledger.delivered_ms[key] = (now - self.ledger.sent_at[key]) * 1000
                elif kind == "error":
                    self.ledger.errors.append(frame.get("code", "?"))
        except websockets.ConnectionClosed:
            pass

    async def heartbeat(self, interval: float, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, interval))
        try:
            while True:
                await self.ws.send('{"action":"ping"}')
                await asyncio.sleep(interval)
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            pass


def _session(url: str, body: Dict[str, Any], origin: str) -> Dict[str, Any]:
    response = requests.post(url, json=body, headers={"Origin": origin}, timeout=30)
    response.raise_for_status()
    return response.json()


async def _sessions(count: int, url: str, body: Dict[str, Any], origin: str, parallel: int = 16) -> List[Dict[str, Any]]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> Dict[str, Any]:
        async with gate:
            return await asyncio.to_thread(_session, url, body, origin)

    return await asyncio.gather(*(one() for _ in range(count)))


async def _connect(url: str, origin: str, parallel: asyncio.Semaphore) -> Any:
    async with parallel:
        return await websockets.connect(url, origin=origin, max_size=None, open_timeout=60, ping_interval=None)


async def drive(info: Dict[str, Any], base: str, logins: List[Tuple[str, str]], args: argparse.Namespace) -> Dict[str, Any]:
    rng = random.Random(args.seed)
    ledger = Ledger()
    api, ws_url, site = info["api_url"], info["websocket_url"], info["site_id"]
    gate = asyncio.Semaphore(32)
    agents: List[Peer] = []
    for email, password in logins:
        token = _session(api + "/v1/agent/session", {"site_id": site, "email": email, "password": password}, base)["token"]
        agents.append(Peer(await _connect(f"{ws_url}?token={token}", base, gate), ledger, "agent"))
    visitor_count = args.sockets - len(agents)
    began = time.perf_counter()
    sessions = await _sessions(visitor_count, api + "/v1/visitor/session", {"site_id": site}, base)
    sockets = await asyncio.gather(*(_connect(f"{ws_url}?token={s['token']}", base, gate) for s in sessions))
    visitors = [Peer(ws, ledger, "visitor") for ws in sockets]
    setup_seconds = time.perf_counter() - began
    peers = agents + visitors
    beats = [asyncio.create_task(p.heartbeat(WIDGET_PING_SECONDS, rng)) for p in peers]
    chatters = list(zip(visitors[: args.chatters], sessions[: args.chatters]))
    ids = itertools.count(1)

    async def send(peer: Peer, session: Dict[str, Any]) -> str:
        key = f"load{next(ids)}"
        ledger.sent_at[key] = time.perf_counter()
        await peer.ws.send(json.dumps({"action": "send", "conversation_id": session["conversation_id"],
                                       "client_msg_id": key, "text": f"你好, message {key}"}, ensure_ascii=False))
        return key

    # Every chatting visitor opens its conversation first (assignment happens here, not measured).
    opening = [await send(peer, session) for peer, session in chatters]
    await _settle(ledger, opening, timeout=60)
    steps = []
    for rate in args.rates:
        keys: List[str] = []
        before = cpu_snapshot(args.stack_pid)
        started = time.perf_counter()
        total = int(rate * args.seconds)
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            peer, session = chatters[n % len(chatters)]
            keys.append(await send(peer, session))
        offered_seconds = time.perf_counter() - started
        await _settle(ledger, keys, timeout=30)
        after = cpu_snapshot(args.stack_pid)
        delivered = [ledger.delivered_ms[k] for k in keys if k in ledger.delivered_ms]
        acked = [ledger.acked_ms[k] for k in keys if k in ledger.acked_ms]
        last = max((ledger.sent_at[k] + ledger.delivered_ms[k] / 1000 for k in keys if k in ledger.delivered_ms),
                   default=started)
        cpu = cpu_by_component(before, after)
        steps.append({
            "offered_per_second": rate,
            "messages": total,
            "offered_seconds": round(offered_seconds, 2),
            "delivered_per_second": round(len(delivered) / max(last - started, 1e-9), 1),
            "not_delivered": total - len(delivered),
            "not_acked": total - len(acked),
            "delivery_ms": {"p50": percentile(delivered, 50), "p99": percentile(delivered, 99),
                            "max": round(max(delivered), 1) if delivered else None},
            "ack_ms": {"p50": percentile(acked, 50), "p99": percentile(acked, 99)},
            "cpu_seconds": cpu,
            "cpu_ms_per_message": {name: round(seconds * 1000 / total, 2) for name, seconds in cpu.items()},
        })
        print(f"  {rate:>4}/s offered: {steps[-1]['delivered_per_second']}/s delivered, p50 "
              f"{steps[-1]['delivery_ms']['p50']} ms, p99 {steps[-1]['delivery_ms']['p99']} ms, "
              f"not delivered {steps[-1]['not_delivered']}, CPU/msg "
              f"{sum(steps[-1]['cpu_ms_per_message'].values()):.1f} ms", flush=True)
    for task in beats:
        task.cancel()
    await asyncio.gather(*(p.ws.close() for p in peers), return_exceptions=True)
    return {"sockets": len(peers), "agents": len(agents), "chatters": len(chatters),
            "setup_seconds": round(setup_seconds, 1), "steps": steps,
            "error_codes": sorted(set(ledger.errors))}


async def _settle(ledger: Ledger, keys: List[str], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and not all(k in ledger.delivered_ms and k in ledger.acked_ms for k in keys):
        await asyncio.sleep(0.1)


def _goals(steps: List[Dict[str, Any]]) -> Dict[str, Any]:
    by_rate = {s["offered_per_second"]: s for s in steps}

    def p99(rate: int) -> Optional[float]:
        step = by_rate.get(rate)
        return step["delivery_ms"]["p99"] if step and not step["not_delivered"] else None

    at_100, at_50 = p99(100), p99(50)
    return {
        "sustains_100_per_second_p99_under_250_ms": at_100 is not None and at_100 < GOALS["p99_ms_at_100"]
        and by_rate[100]["delivered_per_second"] >= 0.95 * 100,
        "p99_under_100_ms_at_50_per_second": at_50 is not None and at_50 < GOALS["p99_ms_at_50"],
    }


def create_agents(info: Dict[str, Any], count: int) -> List[Tuple[str, str]]:
    from bench.chaos import store_env

    logins = []
    for i in range(count):
        email = f"load{i}@demo.kefu"
        subprocess.run([sys.executable, "-m", "admin", "create-agent", "--site", info["site_id"], "--email", email,
                        "--name", f"Load {i}", "--password", AGENT_PASSWORD],
                       cwd=ROOT, env=store_env(info), capture_output=True, timeout=60)
        logins.append((email, AGENT_PASSWORD))
    return logins


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    from tests.e2e.stack import RunningStack

    parser = argparse.ArgumentParser(prog="python -m bench.local_load", description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--chatters", type=int, default=200, help="visitors who write; the rest only ping")
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50, 100, 150])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    # Every socket comes from 127.0.0.1: the per-address and per-visitor limits would meter the
    # bench, not the stack, so they are lifted (RunningStack's defaults) and the send limit too.
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every figure
    stack = RunningStack(env={"KEFU_RATE_LIMIT": "1000000"})
    try:
        args.stack_pid = stack.process.pid
        logins = create_agents(stack.info, args.agents)
        report = asyncio.run(drive(stack.info, stack.base, logins, args))
    finally:
        stack.stop()
    report.update({
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {"sockets": args.sockets, "agents": args.agents, "chatters": args.chatters,
                   "rates": args.rates, "seconds_per_rate": args.seconds, "seed": args.seed},
        "store": stack.info.get("store"),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "goals": GOALS,
        "met": _goals(report["steps"]),
    })
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"local load: {report['sockets']} sockets; goals met: {report['met']}; written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return report


if __name__ == "__main__":
    main()
