from __future__ import annotations



def test_visitor_and_agent_exchange_messages(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, status = harness.connect(agent["token"])
    assert status == 200
    visitor = harness.visitor(site.site_id, name="Vic")
    assert set(visitor) >= {"token", "visitor_id", "conversation_id", "expires_at"}
    visitor_conn, status = harness.connect(visitor["token"], origin="https://shop.example")
    assert status == 200

    ack = harness.reply(visitor_conn, {"action": "send", "req": "r1", "conversation_id": visitor["conversation_id"],
                                       "client_msg_id": "c1", "text": "hello"})
    assert ack["type"] == "ack" and ack["req"] == "r1" and ack["seq"] == 1 and ack["client_msg_id"] == "c1"
    delivered = harness.mgmt.of_type(agent_conn, "message")
    assert [m["text"] for m in delivered] == ["hello"]
    assert delivered[0]["sender"] == {"role": "visitor", "id": visitor["visitor_id"]}

    ack = harness.reply(agent_conn, {"action": "send", "conversation_id": visitor["conversation_id"],
                                     "client_msg_id": "a1", "text": "hi, how can I help?"})
    assert ack["seq"] == 2
    assert [m["text"] for m in harness.mgmt.of_type(visitor_conn, "message")] == ["hi, how can I help?"]


def test_conversation_auto_assigned_to_online_agent(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    assert harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body["conversations"] == []
    harness.say(visitor)  # a conversation reaches agents once the visitor writes
    listing = harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body
    conv = [c for c in listing["conversations"] if c["conversation_id"] == visitor["conversation_id"]][0]
    assert conv["status"] == "assigned" and conv["agent_id"] == agent["agent_id"]


def test_conversation_queued_when_no_agent_online(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    visitor = harness.visitor(site.site_id)
    harness.say(visitor)
    listing = harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body
    assert listing["conversations"][0]["conversation_id"] == visitor["conversation_id"]
    assert listing["conversations"][0]["status"] == "queued"
    # when an agent comes online, the queue is handed out
    agent_conn, _ = harness.connect(agent["token"])
    listing = harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body
    assert listing["conversations"][0]["status"] == "assigned"
    # announcing it did not post to the agent's connection while still inside $connect (a 410)
    from chalicelib.models import Connection
    assert Connection.count(agent_conn) == 1
    assert harness.reply(agent_conn, {"action": "ping"})["type"] == "pong"


def test_return_visit_reuses_conversation(harness):
    site = harness.site()
    first = harness.visitor(site.site_id)
    again = harness.visitor(site.site_id, visitor_id=first["visitor_id"])
    assert again["conversation_id"] == first["conversation_id"]
    assert again["visitor_id"] == first["visitor_id"]


def test_rest_send_and_sync_share_the_socket_path(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    path = f"/v1/conversations/{visitor['conversation_id']}/messages"
    for i in range(3):
        response = harness.rest("POST", path, {"client_msg_id": f"m{i}", "text": f"t{i}"}, token=visitor["token"])
        assert response.status_code == 200 and response.json_body["seq"] == i + 1
    page = harness.rest("GET", path + "?after_seq=1", token=visitor["token"]).json_body
    assert [m["text"] for m in page["messages"]] == ["t1", "t2"] and page["has_more"] is False


def test_ping_answers_pong(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    reply = harness.reply(conn, {"action": "ping", "req": 7})
    assert reply["type"] == "pong" and reply["req"] == 7


def test_typing_and_read_reach_the_other_side(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    assert harness.frame(visitor_conn, {"action": "typing", "conversation_id": cid, "is_typing": True}) == []
    typing = harness.mgmt.of_type(agent_conn, "typing")
    assert typing and typing[-1]["from"]["role"] == "visitor"
    harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "c1", "text": "x"})
    receipt = harness.reply(agent_conn, {"action": "read", "conversation_id": cid, "seq": 1})
    assert receipt["type"] == "read" and receipt["seq"] == 1
    assert harness.mgmt.of_type(visitor_conn, "read")[-1]["seq"] == 1


def test_page_view_shown_to_agents(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    harness.reply(visitor_conn, {"action": "page_view", "url": "https://shop.example/cart", "title": "Cart"})
    views = harness.mgmt.of_type(agent_conn, "page_view")
    assert views[-1]["page"]["url"] == "https://shop.example/cart"
    listing = harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body
    assert listing["conversations"][0]["current_page"]["title"] == "Cart"


def test_presence_of_visitor_reaches_agents(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    assert harness.mgmt.of_type(agent_conn, "presence")[-1]["status"] == "online"
    harness.disconnect(visitor_conn)
    assert harness.mgmt.of_type(agent_conn, "presence")[-1]["status"] == "offline"


def test_the_sites_first_agent_and_its_last_reach_every_live_visitor_with_the_count(harness):
    site = harness.site()
    ann = harness.agent(site.site_id, email="ann@shop.example")
    bob = harness.agent(site.site_id, email="bob@shop.example")
    visitors = [harness.visitor(site.site_id) for _ in range(2)]
    visitor_conns = [harness.connect(v["token"])[0] for v in visitors]
    other_site = harness.site()
    stranger_conn, _ = harness.connect(harness.visitor(other_site.site_id)["token"])

    def agent_presence(conn):
        return [(f["id"], f["status"], f.get("agents_online")) for f in harness.mgmt.of_type(conn, "presence")]

    ann_conn, _ = harness.connect(ann["token"])
    bob_conn, _ = harness.connect(bob["token"])  # the second agent: visitors already know someone is online
    for conn in visitor_conns:
        assert agent_presence(conn) == [(ann["agent_id"], "online", 1)]
    harness.disconnect(ann_conn)
    for conn in visitor_conns:
        assert agent_presence(conn) == [(ann["agent_id"], "online", 1)]
    harness.disconnect(bob_conn)
    for conn in visitor_conns:
        assert agent_presence(conn) == [(ann["agent_id"], "online", 1), (bob["agent_id"], "offline", 0)]
    assert agent_presence(stranger_conn) == []


def test_an_agent_presence_change_reaches_at_most_the_fanout_limit_of_visitors(harness, monkeypatch):
    from chalicelib import connections

    monkeypatch.setattr(connections, "PRESENCE_FANOUT_LIMIT", 2)
    site = harness.site()
    agent = harness.agent(site.site_id)
    visitor_conns = [harness.connect(harness.visitor(site.site_id)["token"])[0] for _ in range(3)]
    harness.connect(agent["token"])
    told = [c for c in visitor_conns if harness.mgmt.of_type(c, "presence")]
    assert len(told) == 2
