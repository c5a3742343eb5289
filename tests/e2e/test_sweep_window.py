"""Issue 10 item 8, a timely sweep, on the real local stack over real sockets.

200 visitor sockets go half-open (the TCP connection stays up, no close frame ever reaches the
server) one after another while a few live sockets keep pinging every second and chatting. An agent
socket watches the `presence` frames. Every half-open socket must be reported offline (the agent's
frame, and its connection record gone) within KEFU_HEARTBEAT_TIMEOUT + KEFU_SWEEP_INTERVAL + 2 s of
its last ping; no live socket may ever be dropped or reported offline.
"""
from __future__ import annotations

import json
import os
import re
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

import boto3
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.stack import ROOT, RunningStack
from tests.e2e.wsclient import ChatClient, half_open_socket, send_text_frame

pytestmark = pytest.mark.timeout(150)

TIMEOUT_S = 6
SWEEP_S = 2
WINDOW_S = TIMEOUT_S + SWEEP_S + 2  # from a socket's last ping to its offline report
HALF_OPEN = 200
LIVE_VISITORS = 4
PING_EVERY_S = 1.0
CLIENT_THREADS = 16
# How fast the 200 connect, and so die (each right after its one ping). The local stack is one
# process, moto included, so what API Gateway, Lambda and DynamoDB would spread out shares one
# core here: a socket's $connect, ping, drop, close and $disconnect take it about 55 ms of CPU,
# and deaths faster than that core keeps up with are reported late whatever the sweep does.
CONNECTS_PER_S = float(os.environ.get("SWEEP_WINDOW_CONNECTS_PER_S", "10"))
SCAN_EVERY_S = 2.0
ASSIGN_BATCH = 50

PING = json.dumps({"action": "ping"})
LOG = ROOT / "test-output" / "sweep-window-server.log"


@pytest.fixture(scope="module")
def stack():
    running = RunningStack(env={"KEFU_HEARTBEAT_TIMEOUT": str(TIMEOUT_S), "KEFU_SWEEP_INTERVAL": str(SWEEP_S),
                                "KEFU_SESSION_LIMIT": "1000"})  # 204 sessions from one address
    yield running
    running.stop()
    LOG.parent.mkdir(exist_ok=True)
    LOG.write_text(running.log_text())  # every invocation with its duration, every sweep's report


class LiveClient:
    """A healthy client: pings every second (a visitor also chats) and timestamps every frame it gets."""

    def __init__(self, url: str, origin: Optional[str] = None, conversation_id: Optional[str] = None) -> None:
        self.chat = ChatClient(url, origin=origin)
        self.conversation_id = conversation_id
        self.frames: List[Tuple[float, Dict[str, Any]]] = []
        self.pings: Dict[str, float] = {}
        self.pongs: Dict[str, float] = {}
        self.closed: Optional[str] = None
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._write, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        try:
            for raw in self.chat.ws:
                now = time.monotonic()
                frame = json.loads(raw)
                self.frames.append((now, frame))
                if frame.get("type") == "pong":
                    self.pongs[frame.get("req")] = now
        except ConnectionClosed:
            pass
        if not self._stopping.is_set():
            self.closed = f"closed by the server ({getattr(self.chat.ws, 'close_code', None)})"

    def _write(self) -> None:
        n, next_at = 0, time.monotonic()
        while not self._stopping.is_set():
            try:
                self.pings[f"p{n}"] = time.monotonic()
                self.chat.send({"action": "ping", "req": f"p{n}"})
                if self.conversation_id and n % 2 == 0:
                    self.chat.send({"action": "send", "conversation_id": self.conversation_id, "req": f"s{n}",
                                    "client_msg_id": f"m{n}", "text": f"still here {n}"})
            except ConnectionClosed:
                return
            n += 1
            next_at += PING_EVERY_S
            self._stopping.wait(max(0.0, next_at - time.monotonic()))

    @staticmethod
    def stop_all(clients: List["LiveClient"]) -> float:
        for client in clients:
            client._stopping.set()
        stopped = time.monotonic()
        for client in clients:
            client._threads[1].join(timeout=5)
        time.sleep(1)  # the last replies
        for client in clients:
            client.chat.close()
            client._threads[0].join(timeout=5)
        return stopped

    def errors(self) -> List[Dict[str, Any]]:
        return [f for _, f in self.frames if f.get("type") == "error"]

    def pong_delays(self) -> List[float]:
        return [self.pongs[req] - sent for req, sent in self.pings.items() if req in self.pongs]

    def unanswered(self, before: float) -> List[str]:
        return [req for req, sent in self.pings.items() if req not in self.pongs and sent < before]


@dataclass
class HalfOpen:
    visitor: Dict[str, Any]
    sock: Optional[socket.socket] = None
    last_ping: float = 0.0  # monotonic time the last ping frame left
    offline_at: Optional[float] = None  # the agent's presence frame arrived
    gone_at: Optional[float] = None  # a table scan ending then no longer had the record


class RecordWatch:
    """Scans the stack's connections table every SCAN_EVERY_S, noting when each scan began and ended."""

    def __init__(self, stack: RunningStack) -> None:
        self.client = boto3.client("dynamodb", endpoint_url=stack.info["dynamodb_endpoint"], region_name="us-east-1",
                                   aws_access_key_id="local", aws_secret_access_key="local")
        self.table = stack.info.get("table_prefix", "kefu-local-") + "connections"
        self.scans: List[Tuple[float, float, Set[Tuple[str, str]]]] = []  # (started, ended, {(role, subject)})
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def scan(self) -> Set[Tuple[str, str]]:
        started = time.monotonic()
        present: Set[Tuple[str, str]] = set()
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, ProjectionExpression="#r, subject", ExpressionAttributeNames={"#r": "role"})
        for page in pages:
            present.update((item["role"]["S"], item["subject"]["S"]) for item in page["Items"])
        self.scans.append((started, time.monotonic(), present))
        return present

    def _run(self) -> None:
        while not self._stopping.wait(SCAN_EVERY_S):
            self.scan()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def first_scan_after(self, moment: float) -> Optional[Set[Tuple[str, str]]]:
        return next((present for started, _, present in self.scans if started >= moment), None)

    def gone_at(self, role: str, subject: str, since: float) -> Optional[float]:
        """When the first scan begun after ``since`` without the record ended (an upper bound)."""
        return next((ended for started, ended, present in self.scans
                     if started >= since and (role, subject) not in present), None)


def _sweep_runs(lines: List[str]) -> int:
    """Runs of the sweep function, from the runtime's one line per invocation."""
    return sum(1 for line in lines if re.search(r"\bHeartbeatSweep\s+schedule\b", line))


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_every_half_open_socket_is_reported_offline_in_time_and_no_live_one_is_dropped(stack):
    assert stack.info["heartbeat_timeout"] == TIMEOUT_S and stack.info["sweep_interval"] == SWEEP_S
    # 200 visitors, each a session and a first message over REST (agents see a visitor's presence
    # once its conversation is open), opened while no agent is online: opened with an agent online,
    # each would read every open conversation to pick an agent. The agent takes them 50 at a time,
    # each batch in the $connect of a connection then closed: one $connect handing out all 200
    # would outlast the 6 s timeout, and the sweep would drop it inside its own $connect.
    agent_session = stack.agent()

    def session(i: int) -> HalfOpen:
        visitor = stack.visitor(name=f"Silent {i}")
        first = stack.rest("POST", f"/v1/conversations/{visitor['conversation_id']}/messages", visitor["token"],
                           json={"client_msg_id": "hello", "text": "Hello?"})
        first.raise_for_status()
        return HalfOpen(visitor)

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        started = time.monotonic()
        silent: List[HalfOpen] = []
        for batch in range(0, HALF_OPEN, ASSIGN_BATCH):
            silent += pool.map(session, range(batch, min(batch + ASSIGN_BATCH, HALF_OPEN)))
            ChatClient(stack.ws_url(agent_session["token"])).close()
        sessions_s = time.monotonic() - started
        # The agent who watches, and the live visitors.
        agent = LiveClient(stack.ws_url(agent_session["token"]))
        live_sessions = [stack.visitor(name=f"Live {i}") for i in range(LIVE_VISITORS)]
        live = [LiveClient(stack.ws_url(s["token"]), origin=stack.base, conversation_id=s["conversation_id"])
                for s in live_sessions]
        by_visitor = {entry.visitor["visitor_id"]: entry for entry in silent}
        watch = RecordWatch(stack)
        watch.start()

        # 200 handshakes by hand, CONNECTS_PER_S a second from 16 threads, each followed by one
        # ping and then silence: sockets die one after another while the others connect.
        lines_before = len(stack.lines)
        cpu_before = _cpu_seconds(stack.process.pid)
        phase_started = time.monotonic()

        def open_one(i: int) -> None:
            time.sleep(max(0.0, phase_started + i / CONNECTS_PER_S - time.monotonic()))
            entry = silent[i]
            entry.sock = half_open_socket(stack.ws_url(entry.visitor["token"]), origin=stack.base)
            send_text_frame(entry.sock, PING)
            entry.last_ping = time.monotonic()

        list(pool.map(open_one, range(HALF_OPEN)))
        connects_s = time.monotonic() - phase_started

    # The agent's presence frames, until every half-open socket is reported or its window is long past.
    deadline = max(e.last_ping for e in silent) + WINDOW_S + 3
    while time.monotonic() < deadline:
        for at, frame in list(agent.frames):
            if frame.get("type") == "presence" and frame.get("status") == "offline" and frame.get("id") in by_visitor:
                entry = by_visitor[frame["id"]]
                if entry.offline_at is None:
                    entry.offline_at = at
        if all(e.offline_at is not None for e in silent):
            break
        time.sleep(0.1)
    phase_s = time.monotonic() - phase_started
    stack_cpu = _cpu_seconds(stack.process.pid) - cpu_before
    sweep_runs = _sweep_runs(stack.lines[lines_before:])

    # The live sockets stay a while longer, then stop; none was dropped or reported offline.
    time.sleep(max(TIMEOUT_S + SWEEP_S, deadline + SCAN_EVERY_S + 1 - time.monotonic()))
    watch.stop()
    stopped = LiveClient.stop_all([agent, *live])
    for entry in silent:
        entry.gone_at = watch.gone_at("visitor", entry.visitor["visitor_id"], since=entry.last_ping)
        entry.sock.close()

    to_offline = sorted(e.offline_at - e.last_ping for e in silent if e.offline_at is not None)
    to_gone = sorted(e.gone_at - e.last_ping for e in silent if e.gone_at is not None)
    delays = [d for c in [agent, *live] for d in c.pong_delays()]
    print(f"\n{HALF_OPEN} sessions in {sessions_s:.1f} s; {HALF_OPEN} $connects in {connects_s:.1f} s; "
          f"last ping -> offline frame: min {to_offline[0]:.1f} p50 {statistics.median(to_offline):.1f} "
          f"max {to_offline[-1]:.1f} s ({len(to_offline)}/{HALF_OPEN}; window {WINDOW_S} s); "
          f"record gone (scan bound) max {to_gone[-1] if to_gone else float('nan'):.1f} s; "
          f"live pong delay p50 {statistics.median(delays):.2f} max {max(delays):.2f} s; "
          f"{sweep_runs} sweeps in {phase_s:.0f} s; stack CPU {stack_cpu / phase_s:.0%} of one core")

    live_ids = {s["visitor_id"] for s in live_sessions}
    offline_live = [f for _, f in agent.frames
                    if f.get("type") == "presence" and f.get("status") == "offline" and f.get("id") in live_ids]
    assert not offline_live, f"live visitors reported offline: {offline_live}"
    for client in [agent, *live]:
        assert client.closed is None, client.closed
        assert not client.errors(), client.errors()
        assert not client.unanswered(before=stopped - 5), "pings went unanswered"
    for role, subject in [("agent", agent_session["agent_id"]), *[("visitor", v) for v in live_ids]]:
        assert watch.gone_at(role, subject, since=0) is None, f"the live {role} {subject}'s record was swept"

    late = [(e.visitor["visitor_id"], e.offline_at and round(e.offline_at - e.last_ping, 1)) for e in silent
            if e.offline_at is None or e.offline_at - e.last_ping > WINDOW_S]
    assert not late, f"{len(late)} half-open sockets not reported offline within {WINDOW_S} s: {late[:10]}"
    # Each record is gone by its presence frame (drop deletes, then tells) and so by the window's end.
    for entry in silent:
        key = ("visitor", entry.visitor["visitor_id"])
        after_frame, after_window = watch.first_scan_after(entry.offline_at), watch.first_scan_after(
            entry.last_ping + WINDOW_S)
        assert after_frame is not None and key not in after_frame, f"{key}: reported offline, record still there"
        assert after_window is not None and key not in after_window, f"{key}: record outlived the window"
    # The sweep runs every KEFU_SWEEP_INTERVAL seconds, not every interval plus its own duration.
    assert sweep_runs >= phase_s / SWEEP_S - 2, f"{sweep_runs} sweeps in {phase_s:.0f} s"
