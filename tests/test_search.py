"""Search (docs/search.md): terms, indexing from the messages table's stream records, queries that
intersect posting lists, paging, site isolation, agents only; and the History list."""
from __future__ import annotations

import pytest

from chalicelib import search
from chalicelib.models import Conversation, Message, SearchEntry, Visitor
from chalicelib.search_terms import MAX_TERMS, query_terms, terms
from local.streams import stream_record


# ---- terms --------------------------------------------------------------------------------------

def test_chinese_is_cut_into_bigrams_so_a_word_is_found_inside_a_sentence():
    indexed = terms("这个紫砂茶壶有货吗")
    assert indexed == ["这个", "个紫", "紫砂", "砂茶", "茶壶", "壶有", "有货", "货吗"]
    assert set(query_terms("茶壶")) <= set(indexed)
    assert set(query_terms("紫砂茶壶")) <= set(indexed)
    assert not set(query_terms("茶杯")) <= set(indexed)


def test_mixed_chinese_and_english_punctuation_and_emoji():
    assert terms("我想买Teapots，可以吗？😀🍵 OK!!") == ["我想", "想买", "teapot", "可以", "以吗", "ok"]
    assert terms("😀🍵!!！？…") == []
    assert query_terms("，。!") == []


def test_normalisation_width_case_plurals_and_emails():
    assert terms("ＴＥＡＰＯＴ") == terms("teapot") == ["teapot"]
    assert terms("Boxes cities glass status") == ["box", "city", "glass", "status"]
    assert terms("alice@Shop.Example") == ["alice", "shop", "example"]
    assert terms("200ml u_42") == ["200ml", "u_42"]


def test_single_characters_only_where_asked_and_for_lone_characters():
    assert terms("王小明") == ["王小", "小明"]
    assert terms("王小明", unigrams=True) == ["王", "王小", "小", "小明", "明"]
    assert terms("茶。") == ["茶"]
    assert query_terms("王") == ["王"]


def test_long_text_is_bounded():
    long_text = "".join(chr(0x4e00 + i) for i in range(3000))  # 2999 distinct bigrams
    assert len(terms(long_text)) == MAX_TERMS
    assert len(terms(" ".join(f"w{i}" for i in range(5000)))) == MAX_TERMS
    assert terms("x" * 500) == ["x" * 40]


# ---- indexing from stream records built from real items ----------------------------------------

def _records(*messages):
    """The messages table's stream records (NEW_IMAGE) for these stored messages, as Lambda gets them."""
    out = []
    for n, message in enumerate(messages):
        stored = Message.get(message["conversation_id"], message["client_msg_id"])
        image = stored.serialize()
        keys = {"conversation_id": image["conversation_id"], "client_msg_id": image["client_msg_id"]}
        out.append(stream_record(Message.Meta.table_name, "MODIFY", keys, image, n + 1))
    return out


def _send(harness, conn, cid, client_msg_id, text):
    ack = harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id, "text": text})
    assert ack["type"] == "ack", ack
    return {"conversation_id": cid, "client_msg_id": client_msg_id, "seq": ack["seq"]}


def _search(harness, conn, query, **fields):
    return harness.reply(conn, {"action": "search", "query": query, **fields})


def test_an_agent_finds_a_chinese_word_inside_a_visitors_message(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    first = _send(harness, visitor_conn, cid, "m1", "你好")
    hit = _send(harness, visitor_conn, cid, "m2", "这个紫砂茶壶有货吗")
    assert search.index_records(_records(first, hit)) > 0
    found = _search(harness, agent_conn, "茶壶", req=7)
    assert found["type"] == "search_results" and found["req"] == 7
    assert [(r["conversation_id"], r["seq"], r["matched"]) for r in found["results"]] == [(cid, 2, "message")]
    assert found["results"][0]["snippet"] == "这个紫砂茶壶有货吗"
    assert found["results"][0]["sender"]["role"] == "visitor"
    assert found["next_cursor"] is None
    assert found["conversations"][cid]["conversation_id"] == cid  # enough to open it
    # every term must be in the message: 紫砂 and 有货 are; 茶杯 is not
    assert len(_search(harness, agent_conn, "紫砂 有货")["results"]) == 1
    assert _search(harness, agent_conn, "紫砂 茶杯")["results"] == []


def test_english_words_any_case_and_plural(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    sent = [_send(harness, visitor_conn, cid, "e1", "Do you ship TEAPOTS to Canada?"),
            _send(harness, agent_conn, cid, "e2", "Yes, every teapot ships worldwide.")]
    search.index_records(_records(*sent))
    found = _search(harness, agent_conn, "Teapot")["results"]
    assert [(r["seq"], r["sender"]["role"]) for r in found] == [(2, "agent"), (1, "visitor")]  # newest first
    assert [r["seq"] for r in _search(harness, agent_conn, "ship canada")["results"]] == [1]


def test_indexing_skips_pending_messages_gaps_and_removals_and_is_idempotent(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    sent = _send(harness, visitor_conn, cid, "i1", "porcelain cups")
    records = _records(sent)
    pending = Message(cid, "pending", message_id="x", sender_role="visitor", sender_id="v", text="porcelain",
                      created_at=1).serialize()
    gap = Message(cid, "~gap.9", message_id="gap.9", seq=9, sender_role="system", sender_id="kefu", gap=True,
                  created_at=1).serialize()
    keys = {"conversation_id": {"S": cid}, "client_msg_id": {"S": "i1"}}
    others = [stream_record(Message.Meta.table_name, "INSERT", keys, pending, 10),
              stream_record(Message.Meta.table_name, "MODIFY", keys, gap, 11),
              stream_record(Message.Meta.table_name, "REMOVE", keys, None, 12)]
    assert search.index_records(others) == 0
    assert search.index_records(records) == 3  # porcelain, cup, and the visitor's profile
    stored = {(e.term_key, e.ref) for e in SearchEntry.scan()}
    assert search.index_records(records) == 2  # a retried batch: the same postings again, nothing new
    assert {(e.term_key, e.ref) for e in SearchEntry.scan()} == stored
    assert [r["seq"] for r in _search(harness, agent_conn, "porcelain")["results"]] == [1]


def test_paging_newest_first_to_the_end(harness, no_rate_limits):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    sent = [_send(harness, visitor_conn, cid, f"p{i}", f"teapot number {i}") for i in range(7)]
    search.index_records(_records(*sent))
    seen, cursor, pages = [], None, 0
    while True:
        page = _search(harness, agent_conn, "teapot", limit=3, **({"cursor": cursor} if cursor else {}))
        assert page["type"] == "search_results", page
        seen += [r["seq"] for r in page["results"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1] and pages <= 4


def test_intersection_reads_are_bounded_and_go_on_from_a_cursor(harness, no_rate_limits):
    """Two common words that are rarely together: a request stops after its reads and says where to
    go on from; following the cursors finds every hit."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    sent = []
    for i in range(120):
        text = "red blue" if i in (3, 100) else ("red" if i % 2 else "blue")
        sent.append(_send(harness, visitor_conn, cid, f"c{i}", text))
    search.index_records(_records(*sent))
    first = search.intersect(site.site_id, ["red", "blue"], None, False, limit=10, reads=2)
    assert first.reads == 2 and first.going_on is not None
    hits, going_on = list(first.refs), first.going_on
    while going_on is not None:
        more = search.intersect(site.site_id, ["red", "blue"], going_on[0], going_on[1], limit=10, reads=2)
        hits += more.refs
        going_on = more.going_on
    assert [search.parse_ref(ref)[2] for ref in hits] == [101, 4]


def test_agents_see_only_their_own_site(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    other_site = harness.site()
    other_agent = harness.agent(other_site.site_id, email="olga@other.example")
    other_conn, _ = harness.connect(other_agent["token"])
    other_visitor = harness.visitor(other_site.site_id)
    other_visitor_conn, _ = harness.connect(other_visitor["token"])
    mine = _send(harness, visitor_conn, visitor["conversation_id"], "s1", "紫砂茶壶")
    theirs = _send(harness, other_visitor_conn, other_visitor["conversation_id"], "s1", "茶壶坏了")
    search.index_records(_records(mine, theirs))
    assert [r["conversation_id"] for r in _search(harness, agent_conn, "茶壶")["results"]] == [visitor["conversation_id"]]
    assert [r["conversation_id"] for r in _search(harness, other_conn, "茶壶")["results"]] == [
        other_visitor["conversation_id"]]
    # a cursor cannot reach into another site either: its lists are keyed by the caller's site
    assert _search(harness, other_conn, "紫砂")["results"] == []


def test_visitors_cannot_search_and_bad_queries_are_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    refused = _search(harness, visitor_conn, "茶壶")
    assert (refused["type"], refused["code"]) == ("error", "agents_only")
    for query in ("", "   ", "!!！？😀", 42, None, "x" * 201):
        answer = harness.reply(agent_conn, {"action": "search", "query": query})
        assert (answer["type"], answer["code"]) == ("error", "invalid_query"), query
    for limit in (0, 51, "5", True):
        assert _search(harness, agent_conn, "tea", limit=limit)["code"] == "invalid_limit"
    for cursor in ("nope", 5, "W10"):
        assert _search(harness, agent_conn, "tea", cursor=cursor)["code"] == "invalid_cursor"


def test_visitor_name_email_and_attributes_are_searchable_and_follow_changes(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id, name="王小明", attributes={"email": "xiaoming@mail.example",
                                                                     "plan": "Gold", "city": "杭州"})
    conn, _ = harness.connect(visitor["token"])
    cid = visitor["conversation_id"]
    search.index_records(_records(_send(harness, conn, cid, "v1", "hello")))
    for query in ("王", "小明", "xiaoming@mail.example", "gold", "杭州"):
        found = _search(harness, agent_conn, query)["results"]
        assert [(r["conversation_id"], r["matched"], r["seq"]) for r in found] == [(cid, "visitor", None)], query
    assert "王小明" in _search(harness, agent_conn, "王")["results"][0]["snippet"]
    # a second message with the same visitor rewrites nothing of theirs
    before = {e.ref for e in SearchEntry.query(f"{site.site_id}#gold")}
    search.index_records(_records(_send(harness, conn, cid, "v2", "again")))
    assert {e.ref for e in SearchEntry.query(f"{site.site_id}#gold")} == before
    # the visitor's plan changes: the old value stops matching, the new one matches
    stored = Visitor.get(site.site_id, visitor["visitor_id"])
    stored.update(actions=[Visitor.attributes.set({"email": "xiaoming@mail.example", "plan": "Silver"})])
    search.index_records(_records(_send(harness, conn, cid, "v3", "still here")))
    assert _search(harness, agent_conn, "gold")["results"] == []
    assert [r["conversation_id"] for r in _search(harness, agent_conn, "silver")["results"]] == [cid]


def test_the_chat_path_does_not_index(harness):
    """Indexing belongs to the stream's function: a send writes nothing to the search table."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    _send(harness, visitor_conn, visitor["conversation_id"], "n1", "茶壶")
    assert _search(harness, agent_conn, "茶壶")["results"] == []


def test_search_entries_expire_after_the_retention(harness, monkeypatch):
    from chalicelib.config import settings

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    sent = _send(harness, visitor_conn, visitor["conversation_id"], "t1", "teapot")
    monkeypatch.setenv("KEFU_SEARCH_RETENTION_DAYS", "30")
    settings.cache_clear()
    try:
        search.index_records(_records(sent))
    finally:
        monkeypatch.delenv("KEFU_SEARCH_RETENTION_DAYS")
        settings.cache_clear()
    [entry] = SearchEntry.query(f"{site.site_id}#teapot")
    created = Message.get(visitor["conversation_id"], "t1").created_at
    assert entry.expires_at == created // 1000 + 30 * 86400


# ---- the local stand-in for the stream ------------------------------------------------------

def test_the_local_stream_feeds_the_indexer_from_the_writes_botocore_made(harness):
    """The stand-in's two halves in one process: observe_writes (what each worker runs) notes the
    chat's writes, LocalStreams reads their images and hands the indexer its records."""
    import asyncio

    import boto3

    from chalicelib.config import settings
    from local.functions import StreamSource
    from local.lambda_worker import observe_writes
    from local.streams import LocalStreams

    invoked = []

    async def invoke(function, event):
        invoked.append((function, [record["eventName"] for record in event["Records"]]))
        harness.app.handler_map["index_messages"](event, None)

    async def run():
        feed = LocalStreams([StreamSource("IndexMessages", Message.Meta.table_name, batching_window_s=0.05)],
                            boto3.client("dynamodb", region_name=settings().region))
        stream_tables = await feed.start(invoke)
        assert stream_tables == {Message.Meta.table_name: ["conversation_id", "client_msg_id"]}
        take_off = observe_writes(stream_tables, lambda write: feed.note([write]))
        try:
            site, agent, agent_conn, visitor, visitor_conn = harness.chat()
            cid = visitor["conversation_id"]
            _send(harness, visitor_conn, cid, "l1", "这个紫砂茶壶有货吗")
            harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
            await feed.drain()
        finally:
            take_off()
            await feed.stop()
        return agent_conn, cid, feed

    agent_conn, cid, feed = asyncio.run(run())
    assert invoked and all(function == "IndexMessages" for function, _ in invoked)
    assert "INSERT" in [name for _, names in invoked for name in names]
    assert feed.dropped == 0 and feed.delivered >= 1
    found = _search(harness, agent_conn, "茶壶")["results"]
    assert [(r["conversation_id"], r["seq"]) for r in found] == [(cid, 1)]
    assert found[0]["status"] == "closed"


def test_observed_writes_are_the_accepted_ones_on_stream_tables_only(aws):
    """Resource-level boto3 writes, transactions and batches are seen; a refused conditional write,
    a cancelled transaction and a write to another table are not."""
    import boto3
    from botocore.exceptions import ClientError

    from chalicelib.config import settings
    from chalicelib.models import Visitor
    from local.lambda_worker import observe_writes

    table = Message.Meta.table_name
    notes = []
    take_off = observe_writes({table: ["conversation_id", "client_msg_id"]}, notes.append)
    try:
        region = settings().region
        client = boto3.client("dynamodb", region_name=region)
        boto3.resource("dynamodb", region_name=region).Table(table).put_item(
            Item={"conversation_id": "c1", "client_msg_id": "m1", "text": "hi"})
        with pytest.raises(ClientError):
            client.put_item(TableName=table, Item={"conversation_id": {"S": "c1"}, "client_msg_id": {"S": "m1"}},
                            ConditionExpression="attribute_not_exists(conversation_id)")
        client.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": {"conversation_id": {"S": "c1"}, "client_msg_id": {"S": "m1"}},
                        "UpdateExpression": "SET #t = :t", "ExpressionAttributeNames": {"#t": "text"},
                        "ExpressionAttributeValues": {":t": {"S": "edited"}}}},
            {"Put": {"TableName": Visitor.Meta.table_name, "Item": {"site_id": {"S": "s1"}, "visitor_id": {"S": "v1"}}}}])
        with pytest.raises(ClientError):
            client.transact_write_items(TransactItems=[
                {"Delete": {"TableName": table, "Key": {"conversation_id": {"S": "c1"}, "client_msg_id": {"S": "m1"}},
                            "ConditionExpression": "attribute_not_exists(conversation_id)"}}])
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"conversation_id": {"S": "c2"}, "client_msg_id": {"S": "m2"}}}},
            {"DeleteRequest": {"Key": {"conversation_id": {"S": "c1"}, "client_msg_id": {"S": "m1"}}}}]})
    finally:
        take_off()
    client.delete_item(TableName=table, Key={"conversation_id": {"S": "c2"}, "client_msg_id": {"S": "m2"}})
    assert [(n["operation"], n["table"], n["keys"]["conversation_id"]["S"]) for n in notes] == [
        ("PutItem", table, "c1"), ("UpdateItem", table, "c1"), ("PutItem", table, "c2"), ("DeleteItem", table, "c1")]
    assert notes[0]["keys"] == {"conversation_id": {"S": "c1"}, "client_msg_id": {"S": "m1"}}


def test_a_batch_write_s_unprocessed_items_are_not_noted():
    from local.lambda_worker import written_items

    put = {"PutRequest": {"Item": {"k": {"S": "a"}, "v": {"N": "1"}}}}
    delete = {"DeleteRequest": {"Key": {"k": {"S": "b"}}}}
    notes = written_items("BatchWriteItem", {"RequestItems": {"t": [put, delete], "other": [put]}},
                          {"UnprocessedItems": {"t": [delete]}}, {"t": ["k"]})
    assert notes == [{"operation": "PutItem", "table": "t", "keys": {"k": {"S": "a"}},
                      "image": {"k": {"S": "a"}, "v": {"N": "1"}}}]
    # Keys travel as JSON, as Lambda's records carry them: binary in base64, numbers as text.
    [note] = written_items("PutItem", {"TableName": "b", "Item": {"k": b"\x00\xff", "n": 7, "x": "y"}}, {},
                           {"b": ["k", "n"]})
    assert note["keys"] == {"k": {"B": "AP8="}, "n": {"N": "7"}}
    assert "image" not in note  # plain values (boto3's resource layer): the stand-in reads the item


def test_a_write_that_holds_its_item_carries_its_image_and_nothing_is_read_back():
    """A PutItem's item and an UpdateItem's ALL_NEW answer are the images of those writes: each
    record carries its own (two writes of one item, two images), and the store is never asked."""
    import asyncio

    from local.functions import StreamSource
    from local.lambda_worker import written_items
    from local.streams import LocalStreams

    key = {"k": {"S": "a"}}
    put = written_items("PutItem", {"TableName": "t", "Item": {**key, "seq": {"N": "1"}, "b": {"B": b"\x01"}}}, {},
                        {"t": ["k"]})
    update = written_items("UpdateItem", {"TableName": "t", "Key": key, "ReturnValues": "ALL_NEW"},
                           {"Attributes": {**key, "seq": {"N": "2"}, "tags": {"BS": [b"\xff"]}}}, {"t": ["k"]})
    unreturned = written_items("UpdateItem", {"TableName": "t", "Key": key, "ReturnValues": "NONE"}, {}, {"t": ["k"]})
    assert put[0]["image"] == {"k": {"S": "a"}, "seq": {"N": "1"}, "b": {"B": "AQ=="}}
    assert update[0]["image"] == {"k": {"S": "a"}, "seq": {"N": "2"}, "tags": {"BS": ["/w=="]}}
    assert "image" not in unreturned[0]

    class Store:
        reads = 0

        def describe_table(self, TableName):
            return {"Table": {"KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                              "StreamSpecification": {"StreamViewType": "NEW_IMAGE"}}}

        def get_item(self, TableName, Key, ConsistentRead):
            Store.reads += 1
            return {"Item": {**Key, "seq": {"N": "3"}}}

    batches = []

    async def invoke(function, event):
        batches.append(event["Records"])

    async def run():
        feed = LocalStreams([StreamSource("F", "t", batch_size=10, batching_window_s=0.1)], Store())
        await feed.start(invoke)
        feed.note(put + update + unreturned)
        await feed.drain(timeout=5)
        await feed.stop()

    asyncio.run(run())
    [records] = batches
    assert [(r["eventName"], r["dynamodb"]["NewImage"]["seq"]["N"]) for r in records] == [
        ("INSERT", "1"), ("MODIFY", "2"), ("MODIFY", "3")]
    assert Store.reads == 1  # the UpdateItem that returned nothing


def test_a_failing_stream_function_drops_its_batch_and_the_feed_goes_on():
    import asyncio

    from local.functions import StreamSource
    from local.streams import LocalStreams

    class Store:
        def describe_table(self, TableName):
            return {"Table": {"KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                              "StreamSpecification": {"StreamViewType": "KEYS_ONLY"}}}

        def get_item(self, TableName, Key, ConsistentRead):
            assert ConsistentRead
            return {"Item": {**Key, "v": {"S": "now"}}}

    batches = []

    async def invoke(function, event):
        batches.append(event["Records"])
        if len(batches) == 1:
            raise RuntimeError("the function failed")

    async def run():
        feed = LocalStreams([StreamSource("F", "t", batch_size=2, batching_window_s=0.2)], Store())
        await feed.start(invoke)
        feed.note([{"operation": "PutItem", "table": "t", "keys": {"k": {"S": str(i)}}} for i in range(3)])
        feed.note([{"operation": "DeleteItem", "table": "t", "keys": {"k": {"S": "x"}}},
                   {"operation": "PutItem", "table": "elsewhere", "keys": {"k": {"S": "y"}}}])
        await feed.drain(timeout=5)
        await feed.stop()
        return feed

    feed = asyncio.run(run())
    assert [len(batch) for batch in batches] == [2, 2]
    assert (feed.dropped, feed.delivered) == (2, 2)
    last = batches[1]
    assert [r["eventName"] for r in last] == ["INSERT", "REMOVE"]
    assert all("NewImage" not in r["dynamodb"] and r["dynamodb"]["StreamViewType"] == "KEYS_ONLY" for r in last)
    assert last[0]["dynamodb"]["SequenceNumber"] < last[1]["dynamodb"]["SequenceNumber"]


# ---- History: closed conversations, most recently closed first ------------------------------------

def test_history_lists_closed_conversations_only_newest_closed_first(harness, timeline, no_rate_limits):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    ids = []
    for i in range(5):
        visitor = harness.visitor(site.site_id, name=f"V{i}")
        harness.say(visitor)
        ids.append(visitor["conversation_id"])
    harness.visitor(site.site_id)  # a page load: a conversation nobody wrote in
    for cid in (ids[1], ids[3], ids[0], ids[4]):
        timeline(1)
        harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    first = harness.reply(agent_conn, {"action": "list", "closed": True, "limit": 2})
    assert [c["conversation_id"] for c in first["conversations"]] == [ids[4], ids[0]]
    rest = harness.reply(agent_conn, {"action": "list", "closed": True, "limit": 2, "cursor": first["next_cursor"]})
    assert [c["conversation_id"] for c in rest["conversations"]] == [ids[3], ids[1]]
    assert all(c["status"] == "closed" for c in first["conversations"] + rest["conversations"])
    assert rest["next_cursor"] is None  # the open one and the page load are not history


def test_history_drops_a_reopened_conversation_and_reads_only_closed_ones(harness):
    from bench.metering import counting

    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    assert [c["conversation_id"] for c in harness.reply(agent_conn, {"action": "list", "closed": True})["conversations"]] == [cid]
    replies = harness.frame(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "back",
                                           "text": "one more question"})
    assert [r.get("event", r["type"]) for r in replies] == ["reopened", "ack"]
    assert Conversation.get(cid).closed_site_id is None
    with counting() as calls:
        listed = harness.reply(agent_conn, {"action": "list", "closed": True})
    assert listed["conversations"] == [] and listed["next_cursor"] is None
    assert calls.scans == 0 and calls.items_read == 0, calls.by_operation()


def test_history_errors(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    assert harness.reply(agent_conn, {"action": "list", "closed": "yes"})["code"] == "invalid_closed"
    assert harness.reply(agent_conn, {"action": "list", "closed": True, "include_closed": True})["code"] == "invalid_list"
    assert harness.reply(agent_conn, {"action": "list", "closed": True, "cursor": "bad"})["code"] == "invalid_cursor"
    assert harness.reply(visitor_conn, {"action": "list", "closed": True})["code"] == "agents_only"
    rest = harness.rest("GET", "/v1/conversations?closed=true", token=agent["token"])
    assert rest.status_code == 200 and rest.json_body["conversations"] == []
