"""Fixtures for unit tests: moto tables, a recording Management API, API Gateway-shaped events."""
from __future__ import annotations

import copy
import json
import pathlib
import secrets
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional

import pytest
from moto import mock_aws

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "apigw-websocket"


def recorded_event(kind: str) -> Dict[str, Any]:
    return json.loads((FIXTURES / f"{kind}.json").read_text())


def new_connection_id() -> str:
    return secrets.token_urlsafe(11)[:15] + "="


def connect_event(connection_id: str, token: Optional[str], origin: Optional[str] = None) -> Dict[str, Any]:
    event = copy.deepcopy(recorded_event("connect"))
    event["requestContext"]["connectionId"] = connection_id
    if origin is not None:
        event["headers"]["Origin"] = origin
        event["multiValueHeaders"]["Origin"] = [origin]
    if token is not None:
        event["queryStringParameters"] = {"token": token}
        event["multiValueQueryStringParameters"] = {"token": [token]}
    return event


def message_event(connection_id: str, body: Any) -> Dict[str, Any]:
    event = copy.deepcopy(recorded_event("message"))
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["routeKey"] = "$default"
    event["requestContext"]["messageId"] = secrets.token_urlsafe(11)[:15] + "="
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def disconnect_event(connection_id: str) -> Dict[str, Any]:
    event = copy.deepcopy(recorded_event("disconnect"))
    event["requestContext"]["connectionId"] = connection_id
    return event


class FakeManagementApi:
    """Stands in for the apigatewaymanagementapi client: records frames, answers 410 for gone ids."""

    class exceptions:
        class GoneException(Exception):
            pass

        class PayloadTooLargeException(Exception):
            pass

    def __init__(self) -> None:
        self.frames: Dict[str, List[Dict[str, Any]]] = {}
        self.gone: set = set()
        self.deleted: List[str] = []
        self.lock = threading.Lock()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        if ConnectionId in self.gone:
            raise self.exceptions.GoneException("410")
        if len(Data) > 128 * 1024:
            raise self.exceptions.PayloadTooLargeException("413")
        with self.lock:
            self.frames.setdefault(ConnectionId, []).append(json.loads(Data))

    def delete_connection(self, ConnectionId: str) -> None:
        self.deleted.append(ConnectionId)
        if ConnectionId in self.gone:
            raise self.exceptions.GoneException("410")
        self.gone.add(ConnectionId)

    def take(self, connection_id: str) -> List[Dict[str, Any]]:
        with self.lock:
            return self.frames.pop(connection_id, [])

    def of_type(self, connection_id: str, frame_type: str) -> List[Dict[str, Any]]:
        return [f for f in self.frames.get(connection_id, []) if f.get("type") == frame_type]


@pytest.fixture
def aws():
    from chalicelib import agents, connections, protocol, sites
    from chalicelib.models import create_tables
    from local import atomic_moto

    atomic_moto.install()
    with mock_aws():
        create_tables()
        connections.forget_cache()
        agents.forget_cache()
        sites.forget_cached_sites()
        protocol._recent_sends.clear()
        yield


@pytest.fixture
def timeline(monkeypatch):
    """A movable clock for the app: call it with seconds to move time forward."""
    from chalicelib import clock

    state = {"now": time.time()}
    monkeypatch.setattr(clock, "now", lambda: state["now"])

    def advance(seconds):
        state["now"] += seconds
    return advance


@pytest.fixture
def no_rate_limits(monkeypatch):
    """For tests that act faster than any person: lift the per-visitor and per-address limits."""
    from chalicelib.config import settings

    for name in ("KEFU_RATE_LIMIT", "KEFU_TYPING_LIMIT", "KEFU_PAGE_VIEW_LIMIT", "KEFU_SESSION_LIMIT"):
        monkeypatch.setenv(name, "1000000")
    settings.cache_clear()


@pytest.fixture
def mgmt(monkeypatch):
    from chalicelib import delivery

    api = FakeManagementApi()
    monkeypatch.setattr(delivery, "_client", lambda endpoint: api)
    return api


class Chat(NamedTuple):
    site: Any
    agent: Dict[str, Any]
    agent_conn: str
    visitor: Dict[str, Any]
    visitor_conn: str


class Harness:
    """Drives the app through its Lambda entry points, as API Gateway would."""

    def __init__(self, mgmt: FakeManagementApi) -> None:
        from chalice.test import Client

        import app as app_module

        self.app = app_module.app
        # A project folder without .chalice/config.json: Chalice's client would otherwise patch the dev
        # stage's environment into os.environ around each invoke, which concurrent invokes leak.
        self.client = Client(self.app, project_dir=str(FIXTURES.parent))
        self.mgmt = mgmt

    def site(self, origins=("https://shop.example",)):
        from chalicelib import sites

        return sites.create_site("Shop", list(origins))

    def agent(self, site_id: str, email: str = "ann@shop.example", password: str = "correct horse"):
        from chalicelib import sites

        sites.create_agent(site_id, email, password, email.split("@")[0].title())
        return self.rest("POST", "/v1/agent/session",
                         {"site_id": site_id, "email": email, "password": password}).json_body

    def visitor(self, site_id: str, origin: str = "https://shop.example", **fields):
        return self.rest("POST", "/v1/visitor/session", {"site_id": site_id, **fields},
                         headers={"Origin": origin}).json_body

    def chat(self, opened: bool = False) -> "Chat":
        """A site with one agent and one visitor, both connected: the usual starting point.
        ``opened``: the visitor has written once (seq 1), so the conversation is open and assigned."""
        site = self.site()
        agent = self.agent(site.site_id)
        agent_conn, _ = self.connect(agent["token"])
        visitor = self.visitor(site.site_id)
        if opened:
            self.say(visitor)
        visitor_conn, _ = self.connect(visitor["token"])
        return Chat(site, agent, agent_conn, visitor, visitor_conn)

    def say(self, visitor: Dict[str, Any], text: str = "hello", client_msg_id: str = "hello") -> Dict[str, Any]:
        """The visitor writes (over REST): a conversation opens for agents only once someone speaks."""
        response = self.rest("POST", f"/v1/conversations/{visitor['conversation_id']}/messages",
                             {"client_msg_id": client_msg_id, "text": text}, token=visitor["token"])
        assert response.status_code == 200, response.json_body
        return response.json_body

    def rest(self, method: str, path: str, body: Any = None, token: Optional[str] = None,
             headers: Optional[Dict[str, str]] = None):
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
        return self.client.http.request(method, path, headers=all_headers, body=raw)

    def connect(self, token: Optional[str], origin: Optional[str] = None) -> tuple:
        connection_id = new_connection_id()
        self.mgmt.gone.add(connection_id)  # as API Gateway: 410 for posts until $connect returns
        try:
            response = self.client.lambda_.invoke("ws_connect", connect_event(connection_id, token, origin))
        finally:
            self.mgmt.gone.discard(connection_id)
        return connection_id, response.payload["statusCode"]

    def frame(self, connection_id: str, body: Any) -> List[Dict[str, Any]]:
        """Send a frame; return the frames posted back to the sender by this invocation."""
        self.mgmt.take(connection_id)
        self.client.lambda_.invoke("ws_message", message_event(connection_id, body))
        return self.mgmt.take(connection_id)

    def reply(self, connection_id: str, body: Any) -> Dict[str, Any]:
        replies = self.frame(connection_id, body)
        assert len(replies) == 1, replies
        return replies[0]

    def disconnect(self, connection_id: str) -> None:
        self.client.lambda_.invoke("ws_disconnect", disconnect_event(connection_id))


@pytest.fixture
def harness(aws, mgmt):
    return Harness(mgmt)
