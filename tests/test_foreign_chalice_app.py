"""A Chalice WebSocket app written the way Chalice's docs write them (tests/apps/wschat: its own
app.websocket_api.send, DynamoDB for connections, stage api), unmodified, served by
`python -m local.gateway app:app` run from the app's folder, and two people chatting through it."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading

import boto3
import pytest
from websockets.sync.client import connect

from local.stack import free_port

pytestmark = pytest.mark.timeout(120)

ROOT = pathlib.Path(__file__).resolve().parents[1]
WSCHAT = ROOT / "tests" / "apps" / "wschat"


@pytest.fixture
def dynamodb():
    from moto.server import ThreadedMotoServer

    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
        TableName="wschat-connections", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}])
    yield endpoint
    server.stop()


@pytest.fixture
def gateway(dynamodb):
    # What a developer types in the app's folder; the app finds DynamoDB through the standard
    # AWS_ENDPOINT_URL_DYNAMODB setting, with no change to its code.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ENDPOINT_URL_DYNAMODB": dynamodb}
    for name in ("KEFU_WS_MANAGEMENT_ENDPOINT",):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "local.gateway", "app:app", "--port", str(free_port("127.0.0.1"))],
                               cwd=WSCHAT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines, ready = [], threading.Event()
    found = {}

    def pump():
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("WebSocket "):
                found["url"] = line.split()[1]
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    assert ready.wait(60) and found, "\n".join(lines)
    yield found["url"], lines
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_chalice_docs_style_chat_app_runs_unmodified_and_chats(gateway):
    url, log_lines = gateway
    assert url.endswith("/api")  # the stage from its .chalice/config.json
    alice = connect(url + "/", open_timeout=30)  # the tutorial prints the URL with a trailing slash
    bob = connect(url, open_timeout=30)
    alice.send("alice")
    assert alice.recv(timeout=30) == "Using nickname alice"
    bob.send("bob")
    assert bob.recv(timeout=30) == "Using nickname bob"
    alice.send("/join lobby")
    assert alice.recv(timeout=30) == "Joined lobby"
    bob.send("/join lobby")
    assert bob.recv(timeout=30) == "Joined lobby"
    assert alice.recv(timeout=30) == "bob joined lobby"
    alice.send("hello bob")
    assert bob.recv(timeout=30) == "alice: hello bob"
    bob.send("hi alice")
    assert alice.recv(timeout=30) == "bob: hi alice"
    bob.close()
    alice.close()
    log = "\n".join(log_lines)
    assert "WebsocketMessage" in log and "cold" in log and "warm" in log  # one line per invocation
