"""Drive the real app in the local stack and measure every Lambda invocation it makes.

The local stack (local/stack.py: the embedded DynamoDB-compatible store, the API Gateway stand-in,
the real Chalice app) runs in this process; clients are real WebSocket and HTTP clients. Each
handler the gateway invokes is wrapped to record, per invocation: the function, the action, wall
time, the CPU time of its own threads, and (in the metered pass) DynamoDB requests and billed units
(bench/metering.py) and the frames it posted with their encoded sizes.

Two passes of the same scenario: a metered one (the meter reads items around every write, which
would inflate durations) and a timed one. Invocations are driven one at a time, so what a record
holds belongs to that invocation alone.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A visitor's page as the widget reports it, and a message of ordinary length (two short sentences).
PAGE = {"url": "https://shop.example/products/teapots/yixing-clay-teapot-200ml?ref=home",
        "title": "Yixing clay teapot, 200 ml | Shop"}
TEXT = "您好，请问这个紫砂壶什么时候发货？Is express shipping available?"


SCHEDULED_EVENT = {"version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
                   "resources": ["arn:aws:events:us-east-1:000000000000:rule/heartbeat_sweep"], "detail": {}}


@dataclass
class Invocation:
    function: str
    action: str
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    reads: int = 0
    writes: int = 0
    read_units: float = 0.0
    write_units: int = 0
    posts: List[int] = field(default_factory=list)  # encoded size of every frame posted


class Recorder:
    """Wraps the app's handlers and the delivery module; collects Invocations."""

    def __init__(self, app: Any, kefu: bool = True) -> None:
        self.records: List[Invocation] = []
        self.calls: Any = None  # a metering CallLog while metering
        self._current: Optional[Invocation] = None
        self._handler_thread: Optional[int] = None
        self._pool_cpu = 0.0
        self._lock = threading.Lock()
        for name in list(app.handler_map):
            app.handler_map[name] = self._wrap(name, app.handler_map[name])
        if kefu:
            self._wrap_kefu()

    def _wrap_kefu(self) -> None:
        from chalicelib import delivery

        original_post = delivery.post

        def post(connection_id: str, frame: Dict[str, Any]) -> str:
            started = time.thread_time()
            try:
                return original_post(connection_id, frame)
            finally:
                self.note_post(len(delivery.encode(frame)), time.thread_time() - started)
        delivery.post = post
        # REST: the app's entry point as the gateway calls it; timed on the thread that runs it.
        from bench.inprocess import InProcessRuntime

        call_rest = InProcessRuntime.call_rest
        recorder = self

        def handle(runtime: Any, app: Any, event: Dict[str, Any], context: Any) -> Any:
            path = event.get("path", "")
            if not path.startswith("/v1/"):  # not one of Kefu's routes
                return call_rest(runtime, app, event, context)
            with recorder.invocation("api_handler", recorder.label or path):
                return call_rest(runtime, app, event, context)
        InProcessRuntime.call_rest = handle  # type: ignore[method-assign]

    def note_post(self, size: int, cpu_seconds: float = 0.0) -> None:
        with self._lock:
            if self._current is not None:
                self._current.posts.append(size)
                if threading.get_ident() != self._handler_thread:
                    self._pool_cpu += cpu_seconds

    def _wrap(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def timed(event: Dict[str, Any], context: Any) -> Any:
            action = "-"
            if isinstance(event, dict) and isinstance(event.get("body"), str):
                try:
                    action = str(json.loads(event["body"]).get("action"))
                except (ValueError, AttributeError):
                    pass
            with self.invocation(name, self.label or action):
                return handler(event, context)
        return timed

    label: Optional[str] = None  # names the next invocations (e.g. "ping:write") while set

    @contextlib.contextmanager
    def invocation(self, function: str, action: str = "-") -> Iterator[Invocation]:
        """Measure whatever runs inside as one invocation (also used for REST, timed at the client)."""
        record = Invocation(function, action)
        with self._lock:
            self._current, self._handler_thread, self._pool_cpu = record, threading.get_ident(), 0.0
        before = self._units()
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield record
        finally:
            record.wall_ms = (time.perf_counter() - wall) * 1000
            with self._lock:
                record.cpu_ms = (time.thread_time() - cpu + self._pool_cpu) * 1000
                self._current = None
            after = self._units()
            record.reads, record.writes = after[0] - before[0], after[1] - before[1]
            record.read_units, record.write_units = after[2] - before[2], after[3] - before[3]
            with self._lock:
                self.records.append(record)

    def _units(self) -> tuple:
        c = self.calls
        return (c.reads, c.writes, c.read_units, c.write_units) if c is not None else (0, 0, 0.0, 0)

    @contextlib.contextmanager
    def expect(self, invocations: int, label: Optional[str] = None, timeout: float = 20.0) -> Iterator[None]:
        """Run an action that sets off ``invocations`` invocations; return once all have returned."""
        mark = len(self.records)
        self.label = label
        try:
            yield
            deadline = time.monotonic() + timeout
            while len(self.records) < mark + invocations:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"expected {invocations} invocations, saw {len(self.records) - mark}")
                time.sleep(0.005)
        finally:
            self.label = None


@dataclass
class Sizes:
    """Encoded sizes of frames, by kind (what API Gateway meters in 32 KB units)."""
    inbound: Dict[str, List[int]] = field(default_factory=dict)   # client -> API Gateway, by action
    outbound: Dict[str, List[int]] = field(default_factory=dict)  # posts, by frame type

    def add(self, kind: Dict[str, List[int]], name: str, size: int) -> None:
        kind.setdefault(name, []).append(size)


class Client:
    """A browser's WebSocket, as the widget and the console use it (req ids, replies)."""

    def __init__(self, url: str, token: str, origin: str, sizes: Sizes) -> None:
        from websockets.sync.client import connect

        self.ws = connect(f"{url}?token={token}", origin=origin, ping_interval=None, open_timeout=20)
        self.sizes = sizes
        self.inbox: List[Dict[str, Any]] = []
        self._next = 0

    def send(self, frame: Dict[str, Any]) -> None:
        raw = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        self.sizes.add(self.sizes.inbound, frame["action"], len(raw.encode()))
        self.ws.send(raw)

    def request(self, frame: Dict[str, Any], timeout: float = 20.0) -> Dict[str, Any]:
        self._next += 1
        req = f"r{self._next}"
        self.send({**frame, "req": req})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame_in = self._pull(deadline - time.monotonic())
            if frame_in is not None and frame_in.get("req") == req:
                return frame_in
        raise TimeoutError(f"no reply to {frame['action']}")

    def _pull(self, timeout: float) -> Optional[Dict[str, Any]]:
        try:
            raw = self.ws.recv(timeout=max(0.01, timeout))
        except TimeoutError:
            return None
        frame = json.loads(raw)
        self.sizes.add(self.sizes.outbound, frame.get("type", "?"), len(raw.encode() if isinstance(raw, str) else raw))
        self.inbox.append(frame)
        return frame

    def wait_for(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float = 20.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.inbox:
                if predicate(frame):
                    self.inbox.remove(frame)
                    return frame
            if time.monotonic() > deadline:
                raise TimeoutError("frame never came")
            self._pull(0.2)

    def close(self) -> None:
        self.ws.close()


def scenario(app: Any, stack_info: Dict[str, Any], recorder: Recorder, sizes: Sizes, conversations: int,
             messages: int, tag: str) -> None:
    """An agent with two console tabs; ``conversations`` visitors with two tabs each; ``messages``
    per conversation alternating visitor/agent, each with the sender's typing frame and the other
    side's read mark; pings that write last-seen and pings that do not; a sync of the whole
    conversation; visitors leave, the agent closes each conversation; sweep runs; the agent leaves."""
    import requests

    from chalicelib import sites
    from chalicelib.config import settings
    from local.lambda_worker import LambdaContext

    base = stack_info["demo_url"].rsplit("/demo/", 1)[0]
    ws_url = stack_info["websocket_url"]
    site = sites.create_site(f"Bench {tag}", [base], site_id=f"bench-{tag}")
    sites.create_agent(site.site_id, "agent@bench.example", "bench-password", "Agent")

    def rest(action: str, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        with recorder.expect(1, action):
            response = requests.post(f"{stack_info['api_url']}{path}", json=body, headers={"Origin": base}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    agent = rest("agent_session", "/v1/agent/session",
                 {"site_id": site.site_id, "email": "agent@bench.example", "password": "bench-password"})
    consoles = []
    for _ in range(2):
        with recorder.expect(1, "agent"):
            consoles.append(Client(ws_url, agent["token"], base, sizes))
        with recorder.expect(1):
            consoles[-1].request({"action": "state"})
    write_interval = min(settings().heartbeat_interval, settings().heartbeat_timeout / 3)
    for n in range(conversations):
        visitor = rest("visitor_session", "/v1/visitor/session", {"site_id": site.site_id})
        cid = visitor["conversation_id"]
        tabs = []
        for _ in range(2):
            with recorder.expect(1, "visitor"):
                tabs.append(Client(ws_url, visitor["token"], base, sizes))
        for tab in tabs:
            with recorder.expect(1):
                tab.request({"action": "page_view", **PAGE})
            with recorder.expect(1, "sync:empty"):
                tab.request({"action": "sync", "conversation_id": cid, "after_seq": 0})
        for i in range(messages):
            sender, receiver = (tabs[0], consoles[0]) if i % 2 == 0 else (consoles[0], tabs[0])
            with recorder.expect(1):
                sender.send({"action": "typing", "conversation_id": cid, "is_typing": True})  # no reply
            with recorder.expect(1, "send:first" if i == 0 else "send"):
                ack = sender.request({"action": "send", "conversation_id": cid,
                                      "client_msg_id": f"{tag}-{n}-{i}", "text": TEXT})
            assert ack["type"] == "ack", ack
            receiver.wait_for(lambda f: f.get("type") == "message" and f.get("seq") == ack["seq"])
            with recorder.expect(1):
                receiver.request({"action": "read", "conversation_id": cid, "seq": ack["seq"]})
        with recorder.expect(1, "sync:page"):
            page = tabs[1].request({"action": "sync", "conversation_id": cid, "after_seq": 0})
        assert len(page["messages"]) == messages, page
        time.sleep(write_interval + 0.05)
        with recorder.expect(1, "ping:write"):
            tabs[0].request({"action": "ping"})
        with recorder.expect(1, "ping:quiet"):
            tabs[0].request({"action": "ping"})
        for tab in tabs:
            with recorder.expect(1, "visitor"):
                tab.close()
        with recorder.expect(1):
            consoles[0].request({"action": "close", "conversation_id": cid})
    sweep = app.handler_map["heartbeat_sweep"]
    for _ in range(3):
        with recorder.expect(1, "nothing stale"):
            sweep(SCHEDULED_EVENT, LambdaContext("heartbeat_sweep", 256, "sweep", int((time.time() + 60) * 1000)))
    for console in consoles:
        with recorder.expect(1, "agent"):
            console.close()


def quiet_logs() -> None:
    """The store's request log and the app's JSON logs would bury the figures."""
    import logging

    for name in ("local", "werkzeug", "kefu", "kefu.metrics"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(conversations: int, messages: int) -> Dict[str, Any]:
    """Start the local stack, run the scenario metered then timed; return the records and sizes."""
    os.environ.setdefault("KEFU_SWEEP_INTERVAL", "3600")  # the bench invokes the sweep itself
    os.environ.setdefault("KEFU_MAIL_INTERVAL", "3600")  # email is costed apart (not per message)
    os.environ.setdefault("KEFU_HEARTBEAT_INTERVAL", "1")  # a ping that writes, without a 30 s wait
    for name in ("KEFU_RATE_LIMIT", "KEFU_TYPING_LIMIT", "KEFU_PAGE_VIEW_LIMIT", "KEFU_SESSION_LIMIT",
                 "KEFU_LOGIN_IP_LIMIT"):
        os.environ.setdefault(name, "1000000")
    from local.stack import Stack, StackOptions

    from bench.inprocess import in_process

    stack = Stack(StackOptions(port=0, data_dir=None, reload=False))
    with in_process():  # the bench meters and times the app's own calls, so they run here
        info = stack.start()
    quiet_logs()
    try:
        from bench.metering import counting
        import app as app_module

        recorder = Recorder(app_module.app)
        metered_sizes, timed_sizes = Sizes(), Sizes()
        with counting() as calls:
            recorder.calls = calls
            scenario(app_module.app, info, recorder, metered_sizes, conversations, messages, "metered")
        metered = recorder.records
        recorder.calls, recorder.records = None, []
        scenario(app_module.app, info, recorder, timed_sizes, conversations, messages, "timed")
        timed = recorder.records
        tutorial = run_tutorial(info["dynamodb_endpoint"], room_size=4, messages=max(messages, 4))
    finally:
        stack.stop()
    return {"tutorial": tutorial, "metered": [asdict(r) for r in metered], "timed": [asdict(r) for r in timed],
            "frame_sizes": {"inbound": metered_sizes.inbound, "outbound": metered_sizes.outbound}}


def run_tutorial(store: str, room_size: int, messages: int) -> Dict[str, Any]:
    """Our model of the tutorial's design (bench/tutorial_chat.py) on its own local gateway, same
    store: ``room_size`` members name themselves, join one room and exchange ``messages``. Counted
    through the counting proxy, then timed straight against the store."""
    from websockets.sync.client import connect

    from bench import tutorial_chat
    from bench.counting_proxy import CountingProxy
    from bench.inprocess import in_process
    from local.functions import deployment_from_chalice
    from local.gateway import LocalGateway

    with in_process():
        gateway = LocalGateway(deployment_from_chalice(str(ROOT), "bench.tutorial_chat:app"), port=0,
                               stage="dev").run_in_thread()
    proxy = CountingProxy(store).start()
    os.environ["TUTORIAL_WS_ENDPOINT"] = gateway.management_endpoint
    recorder = Recorder(tutorial_chat.app, kefu=False)
    tutorial_chat.post_observers.append(recorder.note_post)
    per_pass: Dict[str, Any] = {}
    try:
        for name, endpoint in (("counted", proxy.url), ("timed", store)):
            os.environ["TUTORIAL_DYNAMODB_ENDPOINT"] = endpoint
            os.environ["TUTORIAL_TABLE"] = f"tutorial-chat-{name}"
            tutorial_chat._dynamodb.cache_clear()
            tutorial_chat.create_table()
            recorder.records = []
            members = []
            requests_by_action: Dict[str, Dict[str, int]] = {}

            @contextlib.contextmanager
            def step(action: str) -> Iterator[None]:
                before = dict(proxy.calls)
                with recorder.expect(1, action):
                    yield
                counts = requests_by_action.setdefault(action, {})
                for operation, n in proxy.calls.items():
                    counts[operation] = counts.get(operation, 0) + n - before.get(operation, 0)

            for i in range(room_size):
                with step("connect"):
                    members.append(connect(gateway.websocket_url, ping_interval=None, open_timeout=20))
                with step("name"):
                    members[-1].send(f"member{i}")
                with step("join"):
                    members[-1].send("/join conversation")
            proxy.reset()
            for i in range(messages):
                with step("text"):  # one at a time, as in Kefu's pass
                    members[i % 2].send(TEXT)
            counted = {"calls": dict(proxy.calls), "items": dict(proxy.items), "read_units": proxy.read_units,
                       "requests_by_action": requests_by_action}
            for member in members:
                with step("disconnect"):
                    member.close()
            per_pass[name] = {"records": [asdict(r) for r in recorder.records], "text_messages": messages,
                              "room_size": room_size, "proxy": counted}
    finally:
        proxy.stop()
        gateway.stop_from_thread()
    return per_pass
