"""The chaos bench's clients (bench/chaos.py): visitors' tabs and agents that follow
docs/protocol.md over real sockets (the ``websockets`` library), and break them on purpose.

Each keeps one unacked message at a time in an outbox and re-sends it with the same
client_msg_id after every reconnect; after every (re)connect it catches up by the rule of
"Never losing a message" (``synced_seq``, ``gaps``, ``next_after_seq``); it records every message
it saw, so the bench can tell what it never saw. Every decision comes from a seeded
``random.Random``; what the server and the scheduler do with them does not.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import random
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

import aiohttp
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

MAX_TEXT = 4000
# Codes after which the same frame is simply tried again a little later.
RETRY_LATER = {"send_in_progress", "rate_limited", "internal_error"}
MAX_PAGES = 500  # per catch-up; a server whose has_more never ends is reported, not followed forever

# Common characters, so long messages look like real Chinese text (3 bytes each in UTF-8).
HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种"
    "面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
    "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比"
    "或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做"
    "必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权"
    "收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信"
    "马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连"
)
PUNCTUATION = "，。！？、；：…"


# ---- configuration ---------------------------------------------------------------------------


@dataclass
class ChaosConfig:
    visitors: int = 50
    messages: int = 40  # per visitor, shared between its tabs
    agents: int = 3
    seed: int = 1
    duration_limit: float = 540.0  # seconds of traffic, final catch-up and checks (not stack start)
    two_tab_share: float = 0.3  # visitors with a second tab (socket and session of their own)
    think_mean: float = 4.0  # mean seconds between a tab's messages (50 visitors: ~15 messages/s offered)
    long_share: float = 0.1  # texts of 3000-4000 characters
    wordy_share: float = 0.1  # visitors whose texts are long half the time: pages must split
    wordy_long_share: float = 0.5
    medium_share: float = 0.2  # 100-800 characters
    idle_kill_rate: float = 0.04  # per message: RST, FIN or clean close while idle
    mid_send_kill_rate: float = 0.05  # per message: RST or FIN right after the send frame
    reload_rate: float = 0.02  # per message: a page reload (new session)
    reload_after_closed: float = 0.3  # chance a tab reloads when told its conversation closed
    send_on_closed: float = 0.9  # chance a tab told its conversation closed sends at once (tabs race)
    agent_reply_rate: float = 0.25  # chance an agent answers a visitor message in its conversation
    agent_action_every: float = 8.0  # mean seconds between an agent's close / transfer / kill
    agent_mid_send_kill_rate: float = 0.03
    request_timeout: float = 15.0
    ping_every: float = 25.0


class Lost(Exception):
    """The socket went away before the reply."""


class Timeout(Exception):
    """No reply in time."""


class ServerRefused(Exception):
    def __init__(self, frame: Dict[str, Any]) -> None:
        super().__init__(frame.get("code"))
        self.frame = frame
        self.code = frame.get("code")


def percentile(values: List[float], p: float) -> Optional[float]:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def make_text(rng: random.Random, tag: str, kind: str) -> str:
    """A unique text (it starts with the message's tag) of the given kind's length, at most 4000."""
    head = f"〔{tag}〕"
    if kind == "limit":
        length = MAX_TEXT
    elif kind == "long":
        length = MAX_TEXT if rng.random() < 0.3 else rng.randint(3000, MAX_TEXT)
    elif kind == "medium":
        length = rng.randint(100, 800)
    else:
        length = len(head) + rng.randint(2, 40)
    body = rng.choices(HANZI, k=length - len(head))
    for i in range(rng.randint(8, 20), len(body) - 1, rng.randint(8, 20)):
        body[i] = rng.choice(PUNCTUATION)
    return head + "".join(body)


# ---- one socket ------------------------------------------------------------------------------


class Socket:
    """A WebSocket with request/reply by ``req`` and every other frame handed to ``on_frame``."""

    _reqs = itertools.count(1)

    def __init__(self, ws: ClientConnection, on_frame: Callable[[Dict[str, Any]], None]) -> None:
        self.ws = ws
        self.on_frame = on_frame
        self.pending: Dict[str, asyncio.Future] = {}
        self.closed = asyncio.Event()
        self.connection_id: Optional[str] = None
        self.killed = False
        self.reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return not self.closed.is_set() and not self.killed

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                future = self.pending.pop(frame.get("req"), None) if isinstance(frame.get("req"), str) else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    self.on_frame(frame)  # pushes, and replies that came after their request gave up
        except ConnectionClosed:
            pass
        except Exception as exc:  # a broken frame must not leave requests hanging
            print(f"chaos: socket reader failed: {exc!r}", file=sys.stderr)
        finally:
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Lost())
            self.pending.clear()

    def _frame(self, frame: Dict[str, Any]) -> Tuple[str, str]:
        req = f"r{next(self._reqs)}"
        return req, json.dumps({**frame, "req": req}, ensure_ascii=False)

    async def send_only(self, frame: Dict[str, Any]) -> None:
        """Send a frame and do not wait for its reply (which, if any, goes to on_frame)."""
        _, raw = self._frame(frame)
        try:
            await self.ws.send(raw)
        except ConnectionClosed:
            raise Lost()

    async def request(self, frame: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        if not self.alive:
            raise Lost()
        req, raw = self._frame(frame)
        future = asyncio.get_running_loop().create_future()
        self.pending[req] = future
        try:
            await self.ws.send(raw)
            return await asyncio.wait_for(future, timeout)
        except ConnectionClosed:
            raise Lost()
        except asyncio.TimeoutError:
            raise Timeout()
        finally:
            self.pending.pop(req, None)

    def kill_rst(self) -> None:
        """Abort with SO_LINGER 0: the kernel answers with a TCP RST, no close frame, no FIN."""
        transport = self.ws.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.killed = True
        transport.abort()

    def kill_fin(self) -> None:
        """Close the TCP connection (FIN) without a WebSocket close frame, as a dying tab does."""
        self.killed = True
        self.ws.transport.abort()

    async def close(self) -> None:
        self.killed = True
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            self.kill_fin()
        await asyncio.wait([self.reader], timeout=3)


# ---- the run's ledger ------------------------------------------------------------------------


@dataclass
class Outgoing:
    client_msg_id: str
    text: str
    client: str
    role: str
    sender_id: str
    attempts: int = 0
    targets: List[str] = field(default_factory=list)
    ack: Optional[Tuple[str, int]] = None  # (conversation_id, seq)
    duplicate_acks: int = 0
    refused: Optional[str] = None  # a final refusal (the server said it stored nothing)


class Run:
    def __init__(self, config: ChaosConfig, info: Dict[str, Any], base: str) -> None:
        self.config = config
        self.info = info
        self.base = base
        self.started = time.monotonic()
        self.outgoing: Dict[str, Outgoing] = {}
        self.counts: collections.Counter = collections.Counter()
        self.events: List[Tuple[float, str, str, Dict[str, Any]]] = []
        self.ack_ms: List[float] = []
        # reconnect (not first connect) to caught up, by role: a visitor catches up one
        # conversation, an agent every conversation of the site that has news
        self.catch_up_ms: Dict[str, List[float]] = {"visitor": [], "agent": []}
        self.first_catch_up_ms: List[float] = []
        self.gaps_reported: Dict[str, Set[int]] = collections.defaultdict(set)
        self.seq_conflicts: List[Dict[str, Any]] = []
        self.stop_generating = asyncio.Event()
        self.final = asyncio.Event()
        self.agent_ids: List[str] = []
        self.tabs: List["VisitorTab"] = []
        self.http: Optional[aiohttp.ClientSession] = None
        limit = config.duration_limit
        self.generate_until = self.started + 0.75 * limit
        self.flush_until = self.started + 0.85 * limit
        self.hard_until = self.started + 0.97 * limit
        self.traffic_seconds = 0.0
        self.final_seconds = 0.0
        self.fresh_console_seconds = 0.0

    def sending_tabs(self, conversation_id: str) -> int:
        """How many tabs are connected to a conversation and still sending (the bench knows; agents don't)."""
        return sum(1 for tab in self.tabs if tab.conversation_id == conversation_id and not tab.done.is_set()
                   and tab.sock is not None and tab.sock.alive)

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, client: str, kind: str, **detail: Any) -> None:
        self.events.append((round(self.now(), 3), client, kind, detail))

    def note_attempt(self, message: Outgoing, conversation_id: str) -> None:
        message.attempts += 1
        message.targets.append(conversation_id)
        self.counts["send_attempts"] += 1
        if message.attempts > 1:
            self.counts["resends"] += 1

    def note_ack(self, client: str, frame: Dict[str, Any]) -> Optional[Outgoing]:
        message = self.outgoing.get(frame.get("client_msg_id"))
        if message is None:
            return None
        landed = (frame["conversation_id"], int(frame["seq"]))
        if frame.get("duplicate"):
            message.duplicate_acks += 1
            self.counts["duplicate_acks"] += 1
        if message.ack is not None and message.ack != landed:
            self.event(client, "ack_changed", cmid=message.client_msg_id, before=message.ack, now=landed)
            self.counts["acks_disagreeing"] += 1
        message.ack = landed
        return message

    async def rest(self, path: str, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """POST with retries (the stack is busy; a 5xx or a reset is tried again)."""
        assert self.http is not None
        last: Any = None
        for attempt in range(8):
            try:
                async with self.http.post(self.info["api_url"] + path, json=body, headers=headers or {},
                                          timeout=aiohttp.ClientTimeout(total=30)) as response:
                    payload = await response.json(content_type=None)
                    if response.status < 400:
                        return payload
                    # 409: it changed meanwhile; 429: rate_limited, retry later
                    if response.status < 500 and response.status not in (409, 429):
                        raise RuntimeError(f"POST {path}: {response.status} {payload}")
                    last = (response.status, payload)
                    self.counts[f"rest_{response.status}_{(payload or {}).get('code')}"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                last = exc
            self.counts["rest_retries"] += 1
            await asyncio.sleep(0.5 * (attempt + 1) * random.uniform(1, 2))
        raise RuntimeError(f"POST {path} kept failing: {last!r}")


# ---- clients ---------------------------------------------------------------------------------


class Client:
    """What visitors' tabs and agents share: a socket, reconnects, the catch-up rule, what was seen."""

    role = "?"

    def __init__(self, run: Run, name: str, rng: random.Random) -> None:
        self.run = run
        self.name = name
        self.rng = rng
        self.sock: Optional[Socket] = None
        self.held: Dict[str, Set[int]] = collections.defaultdict(set)
        self.synced: Dict[str, int] = collections.defaultdict(int)
        self.seen: Dict[str, Dict[int, str]] = collections.defaultdict(dict)
        self.connect_lock = asyncio.Lock()
        self.connects = 0
        self.catch_up_incomplete = 0

    # -- what the client holds

    def hold(self, conversation_id: str, seq: int, client_msg_id: Optional[str] = None) -> None:
        if client_msg_id is not None:
            before = self.seen[conversation_id].get(seq)
            if before is not None and before != client_msg_id:
                self.run.seq_conflicts.append({"client": self.name, "conversation_id": conversation_id,
                                               "seq": seq, "first": before, "then": client_msg_id})
            self.seen[conversation_id][seq] = client_msg_id
        held = self.held[conversation_id]
        held.add(seq)
        while self.synced[conversation_id] + 1 in held:
            self.synced[conversation_id] += 1

    def take_page(self, page: Dict[str, Any]) -> List[int]:
        conversation_id = page["conversation_id"]
        numbers = []
        for message in page.get("messages") or []:
            self.hold(conversation_id, int(message["seq"]), message["client_msg_id"])
            numbers.append(int(message["seq"]))
        for gap in page.get("gaps") or []:  # absent on servers before gaps: none
            self.hold(conversation_id, int(gap))
            self.run.gaps_reported[conversation_id].add(int(gap))
            numbers.append(int(gap))
        return numbers

    def on_frame(self, frame: Dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.hold(frame["conversation_id"], int(frame["seq"]), frame["client_msg_id"])
        elif kind == "messages":
            self.take_page(frame)
        elif kind == "ack":
            self.run.note_ack(self.name, frame)
            self.hold(frame["conversation_id"], int(frame["seq"]), frame["client_msg_id"])
        elif kind == "error" and frame.get("code") == "connection_unknown":
            self.run.counts["connection_unknown"] += 1
            self.run.event(self.name, "connection_unknown", conn=self.sock.connection_id if self.sock else None)
            if self.sock is not None:
                self.sock.kill_fin()
        self.on_push(frame)

    def on_push(self, frame: Dict[str, Any]) -> None:
        pass

    # -- requests

    async def request(self, frame: Dict[str, Any], sock: Optional[Socket] = None) -> Dict[str, Any]:
        """A request whose ``error`` replies raise ServerRefused; ``connection_unknown`` kills the socket."""
        sock = sock or self.sock
        if sock is None:
            raise Lost()
        reply = await sock.request(frame, self.run.config.request_timeout)
        if reply.get("type") == "error":
            self.run.counts[f"error:{reply.get('code')}"] += 1
            if reply.get("code") == "connection_unknown":
                self.run.event(self.name, "connection_unknown", conn=sock.connection_id, action=frame.get("action"))
                sock.kill_fin()
                raise Lost()
            raise ServerRefused(reply)
        if reply.get("type") == "ack":
            self.run.note_ack(self.name, reply)
            self.hold(reply["conversation_id"], int(reply["seq"]), reply["client_msg_id"])
        return reply

    async def catch_up(self, conversation_id: str, sock: Optional[Socket] = None) -> None:
        """docs/protocol.md "The catch-up rule": from synced_seq, then next_after_seq while has_more."""
        after = self.synced[conversation_id]
        for _ in range(MAX_PAGES):
            page = await self.request({"action": "sync", "conversation_id": conversation_id, "after_seq": after}, sock)
            self.run.counts["sync_pages"] += 1
            numbers = self.take_page(page)
            if not page.get("has_more"):
                return
            self.run.counts["sync_pages_with_more"] += 1
            following = page.get("next_after_seq", max(numbers, default=after))
            if following <= after:
                self.run.counts["sync_stuck"] += 1
                self.run.event(self.name, "sync_stuck", cid=conversation_id, after=after)
                return
            after = following
        self.run.counts["sync_too_many_pages"] += 1

    # -- connection

    def ws_url(self) -> str:
        raise NotImplementedError

    def origin(self) -> Optional[str]:
        return None

    async def refresh_token(self) -> None:
        raise NotImplementedError

    async def after_connect(self, sock: Socket) -> None:
        raise NotImplementedError

    async def ensure_connected(self, reason: str) -> None:
        """Connect unless connected, then catch up; retries with backoff until the run's hard limit."""
        async with self.connect_lock:
            if self.sock is not None and self.sock.alive:
                return
            began = time.monotonic()
            attempt = 0
            catch_up_timeouts = 0
            while True:
                attempt += 1
                sock = None
                try:
                    ws = await ws_connect(self.ws_url(), origin=self.origin(), open_timeout=15,
                                          ping_interval=None, close_timeout=2, max_size=2 ** 21)
                    sock = Socket(ws, self.on_frame)
                    self.sock = sock
                    self.connects += 1
                    await self.after_connect(sock)
                    elapsed = (time.monotonic() - began) * 1000
                    if self.connects == 1:
                        self.run.first_catch_up_ms.append(elapsed)
                    else:
                        self.run.catch_up_ms[self.role].append(elapsed)
                    self.run.event(self.name, "caught_up", reason=reason, conn=sock.connection_id,
                                   ms=round(elapsed), attempts=attempt)
                    return
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    self.run.counts[f"handshake_{status}"] += 1
                    self.run.event(self.name, "handshake_refused", status=status)
                    if status == 401:
                        await self.refresh_token()
                except Timeout:
                    # the socket works but a reply never came (a page too big to post, say)
                    catch_up_timeouts += 1
                    self.run.counts["catch_up_timeouts"] += 1
                    self.run.event(self.name, "catch_up_timeout", conn=sock.connection_id if sock else None)
                    if catch_up_timeouts >= 2 and sock is not None and sock.alive:
                        self.catch_up_incomplete += 1
                        self.run.counts["catch_up_incomplete"] += 1
                        return
                    if sock is not None:
                        sock.kill_fin()
                except (Lost, ServerRefused, OSError, asyncio.TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    self.run.counts["connect_failures"] += 1
                    self.run.event(self.name, "connect_failed", error=repr(exc)[:120])
                    if sock is not None:
                        sock.kill_fin()
                if time.monotonic() > self.run.hard_until:
                    raise Lost()
                await asyncio.sleep(min(4.0, 0.2 * 2 ** attempt) * self.rng.uniform(0.5, 1.5))

    async def ping_loop(self) -> None:
        while not self.run.final.is_set():
            await asyncio.sleep(self.run.config.ping_every * self.rng.uniform(0.8, 1.0))
            sock = self.sock
            if sock is not None and sock.alive:
                try:
                    await self.request({"action": "ping"}, sock)
                except (Lost, Timeout, ServerRefused):
                    pass

    def kill(self, how: str) -> None:
        sock = self.sock
        if sock is None or not sock.alive:
            return
        self.run.counts[f"kill_{how}"] += 1
        self.run.event(self.name, f"kill_{how}", conn=sock.connection_id)
        if how == "rst":
            sock.kill_rst()
        elif how == "fin":
            sock.kill_fin()
        else:
            asyncio.create_task(sock.close())

    def conversations(self) -> Iterable[str]:
        raise NotImplementedError

    async def final_catch_up(self) -> None:
        raise NotImplementedError


class Visitor:
    """What a visitor's tabs share: the visitor id (and in a browser, localStorage)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.visitor_id: Optional[str] = None
        self.wordy = False
        self.known = asyncio.Event()
        self.tabs: List["VisitorTab"] = []


class VisitorTab(Client):
    role = "visitor"

    def __init__(self, run: Run, visitor: Visitor, tab: int, quota: int, forced: Dict[int, str],
                 rng: random.Random) -> None:
        super().__init__(run, f"v{visitor.index:02d}.t{tab}", rng)
        self.visitor = visitor
        self.tab = tab
        self.quota = quota
        self.forced = forced  # message index -> chaos kind, so a small run still has every kind
        self.generated = 0
        self.outbox: Deque[Outgoing] = collections.deque()
        self.token = ""
        self.conversation_id = ""
        self.tokens: Dict[str, str] = {}  # every conversation this tab was in -> a token for it
        self.closed_seen: Set[str] = set()
        self.closed_now: Set[str] = set()  # told closed, not told reopened since
        self.wake = asyncio.Event()  # cuts the pause between messages short
        self.done = asyncio.Event()

    def ws_url(self) -> str:
        return f"{self.run.info['websocket_url']}?token={self.token}"

    def origin(self) -> Optional[str]:
        return self.run.base

    def conversations(self) -> Iterable[str]:
        return list(self.tokens)

    async def new_session(self, reason: str) -> None:
        body: Dict[str, Any] = {"site_id": self.run.info["site_id"], "name": f"访客{self.visitor.index:02d}"}
        if self.visitor.visitor_id:
            body["visitor_id"] = self.visitor.visitor_id
        session = await self.run.rest("/v1/visitor/session", body, headers={"Origin": self.run.base})
        if self.visitor.visitor_id is None:
            self.visitor.visitor_id = session["visitor_id"]
            self.visitor.known.set()
        before = self.conversation_id
        self.token = session["token"]
        self.conversation_id = session["conversation_id"]
        self.tokens[self.conversation_id] = self.token
        self.run.counts["sessions"] += 1
        self.run.event(self.name, "session", reason=reason, cid=self.conversation_id, before=before or None)

    async def refresh_token(self) -> None:
        await self.new_session("token refused")

    async def after_connect(self, sock: Socket) -> None:
        state = await self.request({"action": "state"}, sock)
        sock.connection_id = state.get("connection_id")
        await self.catch_up(self.conversation_id, sock)

    def on_push(self, frame: Dict[str, Any]) -> None:
        if frame.get("type") == "conversation":
            event = frame.get("event")
            self.run.counts[f"visitor_saw_{event}"] += 1
            conversation = frame.get("conversation") or {}
            self.run.event(self.name, f"saw_{event}", cid=conversation.get("conversation_id"),
                           status=conversation.get("status"), last_seq=conversation.get("last_seq"))
            if event == "closed" and conversation.get("conversation_id") == self.conversation_id:
                self.closed_seen.add(self.conversation_id)
                if self.rng.random() < self.run.config.send_on_closed:
                    self.wake.set()
            if event == "closed":
                self.closed_now.add(conversation.get("conversation_id"))
            elif event in ("reopened", "assigned", "queued"):
                self.closed_now.discard(conversation.get("conversation_id"))

    async def move(self, reason: str) -> None:
        """A new session (the visitor's current conversation) and a socket for it."""
        await self.new_session(reason)
        sock, self.sock = self.sock, None
        if sock is not None:
            await sock.close()
        await self.ensure_connected(reason)

    def next_message(self) -> Outgoing:
        index = self.generated
        self.generated += 1
        roll = self.rng.random()
        long_share = self.run.config.wordy_long_share if self.visitor.wordy else self.run.config.long_share
        kind = "long" if roll < long_share else (
            "medium" if roll < long_share + self.run.config.medium_share else "short")
        if self.visitor.index == 0 and self.tab == 0 and index == 0:
            kind = "limit"  # every run has at least one text of exactly 4000 characters
        client_msg_id = f"v{self.visitor.index:02d}-t{self.tab}-m{index:03d}"
        text = make_text(self.rng, client_msg_id, kind)
        self.run.counts[f"texts_{kind}"] += 1
        if len(text) == MAX_TEXT:
            self.run.counts["texts_at_limit"] += 1
        message = Outgoing(client_msg_id, text, self.name, "visitor", self.visitor.visitor_id or "")
        self.run.outgoing[client_msg_id] = message
        return message

    def chaos_for(self, index: int) -> Optional[str]:
        if index in self.forced:
            return self.forced[index]
        cfg = self.run.config
        roll = self.rng.random()
        for kind, rate in (("idle_kill", cfg.idle_kill_rate), ("mid_send_kill", cfg.mid_send_kill_rate),
                           ("reload", cfg.reload_rate)):
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def run_tab(self) -> None:
        try:
            await self._run_tab()
        except Lost:
            self.run.counts["tabs_gave_up"] += 1
            self.run.event(self.name, "gave_up")
        except Exception as exc:  # a bench bug or a server answer it cannot take: counted, not hidden
            self.run.counts["tabs_crashed"] += 1
            self.run.event(self.name, "crashed", error=repr(exc)[:300])
            print(f"chaos: {self.name} crashed: {exc!r}", file=sys.stderr)
        finally:
            self.done.set()

    async def _run_tab(self) -> None:
        cfg = self.run.config
        if self.tab > 0:
            await self.visitor.known.wait()
        await self.new_session("arrive")
        await self.ensure_connected("arrive")
        pinger = asyncio.create_task(self.ping_loop())
        chaos_decided: Set[str] = set()
        try:
            while True:
                if not self.outbox:
                    if self.generated >= self.quota or time.monotonic() > self.run.generate_until:
                        break
                    self.outbox.append(self.next_message())
                if time.monotonic() > self.run.flush_until:
                    self.run.event(self.name, "flush_deadline", pending=[m.client_msg_id for m in self.outbox])
                    break
                await self.ensure_connected("reconnect")
                message = self.outbox[0]
                chaos = None
                if message.client_msg_id not in chaos_decided:
                    chaos_decided.add(message.client_msg_id)
                    chaos = self.chaos_for(int(message.client_msg_id.rsplit("m", 1)[1]))
                    if self.conversation_id in self.closed_seen and chaos is None:
                        self.closed_seen.discard(self.conversation_id)
                        if self.rng.random() < cfg.reload_after_closed:
                            chaos = "reload"
                if chaos == "idle_kill":
                    self.kill(self.rng.choice(["rst", "fin", "close"]))
                    await asyncio.sleep(self.rng.uniform(0.2, 3.0))
                    continue
                if chaos == "reload" and message.attempts == 0:
                    self.run.counts["reloads"] += 1
                    await self.move("reload")
                    continue
                frame = {"action": "send", "conversation_id": self.conversation_id,
                         "client_msg_id": message.client_msg_id, "text": message.text}
                sock = self.sock
                assert sock is not None
                self.run.note_attempt(message, self.conversation_id)
                if self.conversation_id in self.closed_now:
                    self.run.counts["visitor_sends_to_closed"] += 1
                if chaos == "mid_send_kill":
                    how = self.rng.choice(["rst", "fin"])
                    try:
                        await sock.send_only(frame)
                    except Lost:
                        continue
                    await asyncio.sleep(self.rng.uniform(0, 0.12))
                    self.run.counts["mid_send_kills"] += 1
                    self.run.event(self.name, "mid_send_kill", cmid=message.client_msg_id, how=how,
                                   cid=self.conversation_id)
                    self.kill(how)
                    await asyncio.sleep(self.rng.uniform(0.2, 2.0))
                    continue
                sent_at = time.monotonic()
                try:
                    reply = await self.request(frame, sock)
                except Lost:
                    self.run.event(self.name, "send_lost", cmid=message.client_msg_id, conn=sock.connection_id)
                    continue
                except Timeout:
                    self.run.counts["send_timeouts"] += 1
                    self.run.event(self.name, "send_timeout", cmid=message.client_msg_id, conn=sock.connection_id)
                    sock.kill_fin()
                    continue
                except ServerRefused as refused:
                    if await self.refused(message, refused.code):
                        self.outbox.popleft()
                    continue
                self.run.ack_ms.append((time.monotonic() - sent_at) * 1000)
                self.run.event(self.name, "ack", cmid=message.client_msg_id, cid=reply["conversation_id"],
                               seq=reply["seq"], duplicate=bool(reply.get("duplicate")), conn=sock.connection_id)
                self.outbox.popleft()
                if reply["conversation_id"] != self.conversation_id:
                    # "Closed is not a dead end": it landed in the visitor's current conversation.
                    self.run.counts["moved_by_ack"] += 1
                    await self.move("ack elsewhere")
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(),
                                           min(self.rng.expovariate(1 / cfg.think_mean), 4 * cfg.think_mean))
                except asyncio.TimeoutError:
                    pass
            self.done.set()
            # idle until the final catch-up, reconnecting if the socket dies
            while not self.run.final.is_set():
                sock = self.sock
                if sock is None or not sock.alive:
                    await self.ensure_connected("idle reconnect")
                    continue
                closed = asyncio.create_task(sock.closed.wait())
                final = asyncio.create_task(self.run.final.wait())
                await asyncio.wait([closed, final], return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                final.cancel()
        finally:
            self.done.set()
            pinger.cancel()

    async def refused(self, message: Outgoing, code: str) -> bool:
        """An error reply to a send; True when the message is given up (a final refusal)."""
        self.run.event(self.name, "send_refused", cmid=message.client_msg_id, code=code, cid=self.conversation_id)
        if code in RETRY_LATER:
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
            return False
        if code == "conversation_closed":
            # Servers before "Closed is not a dead end" refuse it: the widget starts a new session.
            self.run.counts["visitor_sends_refused_closed"] += 1
            await self.move("refused: closed")
            return False
        message.refused = code
        self.run.counts["visitor_final_refusals"] += 1
        return True

    async def final_catch_up(self) -> None:
        for attempt in range(3):
            try:
                await self.ensure_connected("final")
                await self.catch_up(self.conversation_id)
                for conversation_id, token in list(self.tokens.items()):
                    if conversation_id == self.conversation_id:
                        continue
                    ws = await ws_connect(f"{self.run.info['websocket_url']}?token={token}", origin=self.run.base,
                                          open_timeout=15, ping_interval=None, close_timeout=2, max_size=2 ** 21)
                    sock = Socket(ws, self.on_frame)
                    try:
                        await self.catch_up(conversation_id, sock)
                    finally:
                        await sock.close()
                return
            except (Lost, Timeout, ServerRefused, OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
                self.run.counts["final_catch_up_retries"] += 1
                self.run.event(self.name, "final_catch_up_failed", error=repr(exc)[:120])
                if self.sock is not None:
                    self.sock.kill_fin()
        self.run.counts["final_catch_up_failed"] += 1


class AgentClient(Client):
    role = "agent"

    def __init__(self, run: Run, index: int, email: str, password: str, rng: random.Random,
                 name: Optional[str] = None) -> None:
        super().__init__(run, name or f"a{index}", rng)
        self.index = index
        self.email = email
        self.password = password
        self.agent_id = ""
        self.token = ""
        self.known: Dict[str, Dict[str, Any]] = {}  # conversation id -> its latest view
        self.online: Set[str] = set()
        self.outbox: Deque[Outgoing] = collections.deque()
        self.outbox_changed = asyncio.Event()
        self.replies = 0
        self.ready = asyncio.Event()

    def ws_url(self) -> str:
        return f"{self.run.info['websocket_url']}?token={self.token}"

    def conversations(self) -> Iterable[str]:
        return list(self.known)

    async def login(self) -> None:
        session = await self.run.rest("/v1/agent/session", {"site_id": self.run.info["site_id"],
                                                            "email": self.email, "password": self.password})
        self.token = session["token"]
        self.agent_id = session["agent_id"]

    async def refresh_token(self) -> None:
        await self.login()

    def learn(self, conversation: Dict[str, Any]) -> None:
        conversation_id = conversation.get("conversation_id")
        if conversation_id:
            self.known[conversation_id] = {**self.known.get(conversation_id, {}), **conversation}

    async def list_all(self, sock: Socket) -> None:
        """Every conversation of the site, open and closed, page by page (``next_cursor``)."""
        cursor = None
        for _ in range(100):
            frame: Dict[str, Any] = {"action": "list", "include_closed": True}
            if cursor:
                frame["cursor"] = cursor
            page = await self.request(frame, sock)
            for conversation in page.get("conversations") or []:
                self.learn(conversation)
            cursor = page.get("next_cursor")  # absent on servers before paging: one page
            if not cursor:
                return

    async def after_connect(self, sock: Socket) -> None:
        state = await self.request({"action": "state"}, sock)
        sock.connection_id = state.get("connection_id")
        self.online = set(state.get("agents_online") or [])
        for conversation in state.get("conversations") or []:
            self.learn(conversation)
        await self.list_all(sock)
        behind = [cid for cid, view in self.known.items()
                  if view.get("last_seq") is None or int(view["last_seq"]) > self.synced[cid]]
        await self.catch_up_many(behind, sock)

    async def catch_up_many(self, conversation_ids: List[str], sock: Optional[Socket] = None) -> None:
        """The catch-up rule for many conversations, a few at a time (the gateway runs frames concurrently)."""
        gate = asyncio.Semaphore(4)

        async def one(conversation_id: str) -> None:
            async with gate:
                await self.catch_up(conversation_id, sock)

        results = await asyncio.gather(*(one(cid) for cid in conversation_ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def on_push(self, frame: Dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "conversation":
            conversation = frame.get("conversation") or {}
            self.learn(conversation)
            self.run.event(self.name, f"saw_{frame.get('event')}", cid=conversation.get("conversation_id"),
                           agent=conversation.get("agent_id"), last_seq=conversation.get("last_seq"))
        elif kind == "presence" and frame.get("role") == "agent":
            (self.online.add if frame.get("status") == "online" else self.online.discard)(frame.get("id"))
        elif kind == "message" and frame["conversation_id"] not in self.known:
            self.known[frame["conversation_id"]] = {"conversation_id": frame["conversation_id"]}
        if kind == "message" and (frame.get("sender") or {}).get("role") == "visitor":
            conversation_id = frame["conversation_id"]
            mine = (self.known.get(conversation_id) or {}).get("agent_id") == self.agent_id
            if mine and not self.run.stop_generating.is_set() and self.rng.random() < self.run.config.agent_reply_rate:
                self.queue_reply(conversation_id)

    def queue_reply(self, conversation_id: str) -> None:
        index = self.replies
        self.replies += 1
        kind = "long" if self.rng.random() < self.run.config.long_share else "short"
        client_msg_id = f"a{self.index}-r{index:04d}"
        message = Outgoing(client_msg_id, make_text(self.rng, client_msg_id, kind), self.name, "agent", self.agent_id)
        message.targets.append(conversation_id)  # an agent's message always goes to this conversation
        message.attempts = 0
        self.run.outgoing[client_msg_id] = message
        self.run.counts[f"texts_{kind}"] += 1
        self.outbox.append(message)
        self.outbox_changed.set()

    async def sender(self) -> None:
        cfg = self.run.config
        while True:
            if not self.outbox:
                if self.run.stop_generating.is_set():
                    return
                self.outbox_changed.clear()
                try:
                    await asyncio.wait_for(self.outbox_changed.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            if time.monotonic() > self.run.flush_until:
                self.run.event(self.name, "flush_deadline", pending=[m.client_msg_id for m in self.outbox])
                return
            await self.ensure_connected("reconnect")
            message = self.outbox[0]
            conversation_id = message.targets[0]
            frame = {"action": "send", "conversation_id": conversation_id,
                     "client_msg_id": message.client_msg_id, "text": message.text}
            sock = self.sock
            assert sock is not None
            message.attempts += 1
            self.run.counts["send_attempts"] += 1
            if message.attempts > 1:
                self.run.counts["resends"] += 1
            if self.rng.random() < cfg.agent_mid_send_kill_rate:
                how = self.rng.choice(["rst", "fin"])
                try:
                    await sock.send_only(frame)
                except Lost:
                    continue
                await asyncio.sleep(self.rng.uniform(0, 0.12))
                self.run.counts["mid_send_kills"] += 1
                self.run.event(self.name, "mid_send_kill", cmid=message.client_msg_id, how=how, cid=conversation_id)
                self.kill(how)
                await asyncio.sleep(self.rng.uniform(0.2, 2.0))
                continue
            sent_at = time.monotonic()
            try:
                reply = await self.request(frame, sock)
            except Lost:
                self.run.event(self.name, "send_lost", cmid=message.client_msg_id, conn=sock.connection_id)
                continue
            except Timeout:
                self.run.counts["send_timeouts"] += 1
                self.run.event(self.name, "send_timeout", cmid=message.client_msg_id, conn=sock.connection_id)
                sock.kill_fin()
                continue
            except ServerRefused as refused:
                self.run.event(self.name, "send_refused", cmid=message.client_msg_id, code=refused.code,
                               cid=conversation_id)
                if refused.code in RETRY_LATER:
                    await asyncio.sleep(self.rng.uniform(0.5, 2.5))
                    continue
                message.refused = refused.code  # conversation_closed: an agent may not write there
                self.run.counts[f"agent_refused_{refused.code}"] += 1
                self.outbox.popleft()
                continue
            self.run.ack_ms.append((time.monotonic() - sent_at) * 1000)
            self.run.event(self.name, "ack", cmid=message.client_msg_id, cid=reply["conversation_id"],
                           seq=reply["seq"], duplicate=bool(reply.get("duplicate")), conn=sock.connection_id)
            self.outbox.popleft()

    async def chaos(self) -> None:
        """Close, transfer, and get killed now and then; the first three actions are one of each."""
        kinds = ["close", "transfer", "kill"]
        forced = collections.deque(kinds[self.index % 3:] + kinds[:self.index % 3])
        while not self.run.stop_generating.is_set():
            await asyncio.sleep(self.rng.expovariate(1 / self.run.config.agent_action_every))
            if self.run.stop_generating.is_set():
                return
            action = forced.popleft() if forced else self.rng.choices(["close", "transfer", "kill"], [4, 3, 2])[0]
            try:
                await self.ensure_connected("reconnect")
                if action == "kill":
                    self.kill(self.rng.choice(["rst", "fin"]))
                    await asyncio.sleep(self.rng.uniform(0.2, 2.0))
                    await self.ensure_connected("reconnect")
                elif not await self.act_on_own(action) and len(forced) < 3:
                    forced.appendleft(action)  # nothing to act on yet: a scripted action waits
            except (Lost, Timeout):
                continue

    async def act_on_own(self, action: str) -> bool:
        open_ones = [cid for cid, view in self.known.items() if view.get("status") not in ("closed", None)]
        mine = [cid for cid in open_ones if self.known[cid].get("agent_id") == self.agent_id]
        candidates = mine or (open_ones if action == "close" else [])
        others = sorted(self.online - {self.agent_id})
        if not candidates or (action == "transfer" and not others):
            self.run.counts[f"agent_{action}_skipped"] += 1
            return False
        conversation_id = self.rng.choice(sorted(candidates))
        if action == "close":
            # Closes favour conversations open in two live tabs: both tabs then send at once and
            # race to reopen it.
            raced = [cid for cid in sorted(candidates) if self.run.sending_tabs(cid) > 1]
            if raced and self.rng.random() < 0.7:
                conversation_id = self.rng.choice(raced)
        frame: Dict[str, Any] = {"action": action, "conversation_id": conversation_id}
        if action == "transfer":
            frame["agent_id"] = self.rng.choice(others)
        try:
            reply = await self.request(frame)
        except ServerRefused as refused:
            self.run.counts[f"agent_{action}_refused_{refused.code}"] += 1
            self.run.event(self.name, f"{action}_refused", cid=conversation_id, code=refused.code)
            return True
        self.learn(reply.get("conversation") or {})
        self.run.counts[f"agent_{action}s"] += 1
        self.run.event(self.name, action, cid=conversation_id, to=frame.get("agent_id"))
        return True

    async def run_agent(self) -> None:
        await self.login()
        self.run.agent_ids.append(self.agent_id)
        await self.ensure_connected("arrive")
        self.ready.set()
        pinger = asyncio.create_task(self.ping_loop())
        chaos = asyncio.create_task(self.chaos())
        try:
            await self.sender()
        except Lost:
            self.run.counts["agents_gave_up"] += 1
        except Exception as exc:
            self.run.counts["agents_crashed"] += 1
            self.run.event(self.name, "crashed", error=repr(exc)[:300])
            print(f"chaos: {self.name} crashed: {exc!r}", file=sys.stderr)
        finally:
            chaos.cancel()
            pinger.cancel()

    async def final_catch_up(self) -> None:
        for attempt in range(3):
            try:
                await self.ensure_connected("final")
                assert self.sock is not None
                await self.list_all(self.sock)
                await self.catch_up_many(list(self.known))
                return
            except (Lost, Timeout, ServerRefused) as exc:
                self.run.counts["final_catch_up_retries"] += 1
                self.run.event(self.name, "final_catch_up_failed", error=repr(exc)[:120])
                if self.sock is not None:
                    self.sock.kill_fin()
        self.run.counts["final_catch_up_failed"] += 1
