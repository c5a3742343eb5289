"""End-to-end: `python -m local --template out/package/sam.json` boots what `make package` built
(functions from the unpacked deployment.zip, the template's routes, stage, environment and tables)
and a visitor and an agent chat both ways over real WebSockets."""
from __future__ import annotations

import json

import boto3
import pytest

from tests.e2e.stack import RunningStack
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(packaged_template):
    running = RunningStack(["--template", str(packaged_template)])
    yield running
    running.stop()


def test_the_stack_serves_the_templates_stage_and_tables(stack, packaged_template):
    info = stack.info
    assert info["template"] == str(packaged_template)
    assert info["websocket_url"].endswith("/api") and info["management_endpoint"].endswith("/api")
    assert info["table_prefix"] == "kefu-dev-"
    tables = boto3.client("dynamodb", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                          aws_access_key_id="local", aws_secret_access_key="local").list_tables()["TableNames"]
    template = json.loads(packaged_template.read_text())
    assert sorted(tables) == sorted(r["Properties"]["TableName"] for r in template["Resources"].values()
                                    if r["Type"] == "AWS::DynamoDB::Table")


def test_visitor_and_agent_chat_both_ways_on_the_packaged_wiring(stack):
    agent = stack.agent()
    agent_ws = ChatClient(stack.ws_url(agent["token"]))
    visitor = stack.visitor(name="Vera")
    assert visitor["websocket_url"] == stack.info["websocket_url"]  # KEFU_PUBLIC_WEBSOCKET_URL, localised
    visitor_ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    assert visitor_ws.request({"action": "ping"})["type"] == "pong"
    cid = visitor["conversation_id"]
    # Every frame back is a post_to_connection to KEFU_WS_MANAGEMENT_ENDPOINT: on a stage the
    # WebSocket API does not have, no ack and no message would ever arrive.
    ack = visitor_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "v1", "text": "Hello?"})
    assert ack["type"] == "ack" and ack["seq"] == 1
    got = agent_ws.wait_type("message", conversation_id=cid)
    assert got["text"] == "Hello?" and got["sender"]["role"] == "visitor"
    ack = agent_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "Hi Vera"})
    assert ack["seq"] == 2
    assert visitor_ws.wait_type("message", conversation_id=cid)["text"] == "Hi Vera"
    agent_ws.close()
    visitor_ws.close()


def test_a_template_pushing_to_an_undeployed_stage_does_not_boot(packaged_template, tmp_path):
    """Issue 13's bug, as built before the fix: pushes went to /dev, the WebSocket stage was api."""
    template = json.loads(packaged_template.read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            endpoint = resource["Properties"]["Environment"]["Variables"]["KEFU_WS_MANAGEMENT_ENDPOINT"]
            endpoint["Fn::Sub"] = endpoint["Fn::Sub"].rsplit("/", 1)[0] + "/dev"
    (tmp_path / "sam.json").write_text(json.dumps(template))
    for package in packaged_template.parent.glob("*.zip"):  # the code and its layers
        (tmp_path / package.name).symlink_to(package)
    with pytest.raises(RuntimeError) as refused:
        RunningStack(["--template", str(tmp_path / "sam.json")])
    log = str(refused.value)
    assert "python -m local --template:" in log and "KEFU_WS_MANAGEMENT_ENDPOINT" in log
    assert "stage 'dev' of WebsocketAPI, which is deployed as stage 'api' only" in log
