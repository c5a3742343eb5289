"""DynamoDB tables, defined once with pynamodb.

These classes are the single definition of every table: the app reads and writes through them,
the local stack creates its tables from them and ``infra/`` renders them into CloudFormation.
Access patterns (all by key or index, never a Scan) are listed in docs/dynamodb.md.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
    LocalSecondaryIndex,
)
from pynamodb.connection import TableConnection
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from chalicelib.config import settings

_T = TypeVar("_T", bound="Table")


class Table(Model):
    """The base of every table: all of them share one botocore client per endpoint.

    pynamodb gives each model its own client, built on first use with its own botocore session
    (about 40 ms each, and racing threads may each build one): a function touching five tables
    built five on its cold start. The client is built once, under a lock, and handed to each
    table's connection as it is first used; the clients are alike (one config, one endpoint)."""

    @classmethod
    def _get_connection(cls) -> TableConnection:
        table = super()._get_connection()
        connection = table.connection
        if connection._client is None:  # not built yet: pynamodb builds it lazily as well
            key = (connection.host, connection.region)
            with _clients_lock:
                if key not in _clients:
                    _clients[key] = connection.client
                connection._client = _clients[key]
        return table

    @classmethod
    def find(cls: Type[_T], hash_key: Any, range_key: Any = None) -> Optional[_T]:
        """The item, read consistently, or None when there is none."""
        try:
            return cls.get(hash_key, range_key, consistent_read=True)
        except DoesNotExist:
            return None


_clients: Dict[Tuple[Optional[str], Optional[str]], Any] = {}
_clients_lock = threading.Lock()


def _meta(name: str) -> Type:
    cfg = settings()

    class Meta:
        base_name = name  # without the stage prefix; infra/ names the deployed tables from it
        table_name = f"{cfg.table_prefix}{name}"
        region = cfg.region
        host = cfg.dynamodb_endpoint
        billing_mode = "PAY_PER_REQUEST"
        # A function holds connections open between invocations; keep retries short so a
        # throttled call fails fast instead of eating the Lambda's time budget.
        max_retry_attempts = 3

    return Meta


class Site(Table):
    """A tenant. Also holds the live roster of its agents' connections (read once per message).

    Agents' loads are not stored: they are counted from the open-conversations index when an
    assignment is made, so no race can make them drift.
    """

    Meta = _meta("sites")
    site_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    allowed_origins = ListAttribute(of=UnicodeAttribute, default=list)
    secret = UnicodeAttribute()
    upload_max_bytes = NumberAttribute(null=True)
    upload_types = ListAttribute(of=UnicodeAttribute, null=True)
    created_at = NumberAttribute()
    # connection id -> agent id, for every live agent connection of the site
    agent_conns = MapAttribute(default=dict)
    # The owner's settings: default language and the widget's (chalicelib/site_settings.py, bounded).
    settings = JSONAttribute(null=True)
    # agent id -> since (ms), for agents who set themselves away: online, but given no new
    # conversations (chalicelib/availability.py). Read with the roster, so it costs no read.
    agent_away = MapAttribute(default=dict)


class Agent(Table):
    Meta = _meta("agents")
    site_id = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute(range_key=True)
    agent_id = UnicodeAttribute()
    name = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    disabled = BooleanAttribute(default=False)
    # Every agent token carries the version it was issued under; a password change or disabling
    # bumps it, so earlier tokens stop working (chalicelib/agents.py).
    token_version = NumberAttribute(default=0)
    created_at = NumberAttribute()
    role = UnicodeAttribute(null=True)  # owner | agent (absent: agent); an owner is also an agent
    avatar_url = UnicodeAttribute(null=True)  # shown to visitors beside the agent's messages


class Visitor(Table):
    """Who a visitor is and what they browse: everything about them that grows lives here, so the
    conversation item, rewritten by every message, stays small."""

    Meta = _meta("visitors")
    site_id = UnicodeAttribute(hash_key=True)
    visitor_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)  # given in the widget's pre-chat or offline form
    phone = UnicodeAttribute(null=True)
    attributes = MapAttribute(default=dict)
    verified = BooleanAttribute(default=False)
    # The visitor's current conversation. An id with no conversation item is one reserved for them
    # (status ``new``, nobody wrote yet): the first message creates its item (chalicelib/conversations.py).
    conversation_id = UnicodeAttribute(null=True)
    # connection id -> connected-at, for the live connections of a reserved conversation that has no
    # item yet (at most MAX_VISITOR_CONNECTIONS); copied into its visitor_conns when it is created
    live_conns = MapAttribute(null=True)
    current_page = MapAttribute(null=True)
    pages = ListAttribute(default=list)  # the most recent pages, bounded (chalicelib/tracking.py)
    page_count = NumberAttribute(default=0)
    created_at = NumberAttribute()
    last_seen_at = NumberAttribute()
    # The current visit (chalicelib/visitors.py): a session after VISIT_GAP_SECONDS of silence starts one.
    visit_started_at = NumberAttribute(null=True)  # ms
    visit_pages = NumberAttribute(null=True)
    visit_referrer = UnicodeAttribute(null=True)  # the referrer of the visit's first page
    visits = NumberAttribute(null=True)


class SiteOpenIndex(GlobalSecondaryIndex):
    """A site's open conversations, oldest opened first: the queue and the agents' lists.

    Sparse (``open_site_id`` is removed on close), so reads track the open count, never the
    history. Only attributes that change on assignment are projected: a message, a read mark or
    a heartbeat rewrites the conversation without writing to this index.
    """

    class Meta:
        index_name = "site-open-index"
        projection = IncludeProjection(["status", "agent_id", "visitor_id"])

    open_site_id = UnicodeAttribute(hash_key=True)
    opened_at = NumberAttribute(range_key=True)


class SiteCreatedIndex(GlobalSecondaryIndex):
    """All of a site's conversations, newest first (history). Keys only: never written per message."""

    class Meta:
        index_name = "site-created-index"
        projection = KeysOnlyProjection()

    site_id = UnicodeAttribute(hash_key=True)
    created_at = NumberAttribute(range_key=True)


class SiteClosedIndex(GlobalSecondaryIndex):
    """A site's closed conversations, most recently closed first: the console's History.

    Sparse (``closed_site_id`` is set on close and removed on reopen) and keys only, so paging the
    history reads closed conversations only, and a message (which never changes these keys) never
    writes to it.
    """

    class Meta:
        index_name = "site-closed-index"
        projection = KeysOnlyProjection()

    closed_site_id = UnicodeAttribute(hash_key=True)
    closed_at = NumberAttribute(range_key=True)


class Conversation(Table):
    """Rewritten by every message (the seq counter), so kept under 1 KB: fixed-size fields, a
    140-character preview and at most ``MAX_VISITOR_CONNECTIONS`` connection ids."""

    Meta = _meta("conversations")
    conversation_id = UnicodeAttribute(hash_key=True)
    site_id = UnicodeAttribute()
    visitor_id = UnicodeAttribute()
    # new | queued | assigned | closed ("new": created by a first message or an invitation, not yet
    # opened; before that a session only reserves the id, on the visitor item)
    status = UnicodeAttribute()
    agent_id = UnicodeAttribute(null=True)
    last_seq = NumberAttribute(default=0)
    last_text = UnicodeAttribute(null=True)
    visitor_read_seq = NumberAttribute(default=0)
    agent_read_seq = NumberAttribute(default=0)
    # connection id -> connected-at, for every live connection of the visitor
    visitor_conns = MapAttribute(default=dict)
    # The visitor's sends in the current rate window (chalicelib/send_limit.py): a limit across all
    # their sockets and REST that costs no write of its own. The count sits in one of
    # RATE_SLOTS attributes, picked by the window's number, so one conditional update (if_not_exists)
    # both starts a new window and counts within one; send_count is the former single counter.
    send_window = NumberAttribute(null=True)
    send_count = NumberAttribute(null=True)
    send_count_0 = NumberAttribute(null=True)
    send_count_1 = NumberAttribute(null=True)
    send_count_2 = NumberAttribute(null=True)
    send_count_3 = NumberAttribute(null=True)
    send_count_4 = NumberAttribute(null=True)
    send_count_5 = NumberAttribute(null=True)
    open_site_id = UnicodeAttribute(null=True)  # = site_id while open: the site-open-index key
    opened_at = NumberAttribute(null=True)  # ms, when it was created or last reopened
    closed_at = NumberAttribute(null=True)
    closed_site_id = UnicodeAttribute(null=True)  # = site_id while closed: the site-closed-index key
    closed_by = UnicodeAttribute(null=True)  # the closing agent's id, or "auto" (idle: chalicelib/autoclose.py)
    # Agents' tools (chalicelib/labels.py, chalicelib/ratings.py): bounded so the item stays small.
    labels = UnicodeSetAttribute(null=True)  # at most MAX_LABELS of at most MAX_LABEL_CHARS
    first_response_at = NumberAttribute(null=True)  # ms, the first agent reply since it (re)opened
    first_response_id = UnicodeAttribute(null=True)  # that reply's message id (a same-ms reply is not it)
    rating = NumberAttribute(null=True)  # 1-5, the visitor's, once, after close
    rating_comment = UnicodeAttribute(null=True)  # at most ratings.MAX_COMMENT characters
    rated_at = NumberAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    # The visitor's email, if they gave one: a reply while they are gone is emailed (chalicelib/contact.py).
    contact_email = UnicodeAttribute(null=True)
    transcript_requested = BooleanAttribute(null=True)  # email the visitor the transcript at close
    site_open_index = SiteOpenIndex()
    site_created_index = SiteCreatedIndex()
    site_closed_index = SiteClosedIndex()


MAX_VISITOR_CONNECTIONS = 20
# A conversation agents see and handle ("new": nobody wrote yet; "closed": done).
OPEN_STATUSES = ("queued", "assigned")


class MessageSeqIndex(LocalSecondaryIndex):
    """Messages in seq order. Sparse: a message appears once its seq is assigned."""

    class Meta:
        index_name = "seq-index"
        projection = AllProjection()

    conversation_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)


class Message(Table):
    """Keyed by the client's message id, so a retried send finds its original by key."""

    Meta = _meta("messages")
    conversation_id = UnicodeAttribute(hash_key=True)
    client_msg_id = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute()
    seq = NumberAttribute(null=True)
    sender_role = UnicodeAttribute()  # visitor | agent | system (gap tombstones)
    sender_id = UnicodeAttribute()
    text = UnicodeAttribute(null=True)
    attachment = MapAttribute(null=True)
    gap = BooleanAttribute(null=True)  # a tombstone: this seq will never hold a message
    note = BooleanAttribute(null=True)  # an internal note: agents only, never pushed or synced to visitors
    created_at = NumberAttribute()
    seq_index = MessageSeqIndex()


class LastSeenIndex(GlobalSecondaryIndex):
    """Connections by heartbeat age, sharded so heartbeats spread over partitions."""

    class Meta:
        index_name = "last-seen-index"
        projection = AllProjection()

    sweep_shard = NumberAttribute(hash_key=True)
    last_seen = NumberAttribute(range_key=True)


class SiteVisitorsIndex(GlobalSecondaryIndex):
    """A site's live visitor connections, grouped by visitor: the agents' live visitors view.

    Sparse (``visitor_site_id`` is set on visitor connections only) and its keys and projected
    attributes never change after $connect, so a heartbeat never writes to it: one index write
    when a visitor connects and one when they leave.
    """

    class Meta:
        index_name = "site-visitors-index"
        projection = IncludeProjection(["subject"])

    visitor_site_id = UnicodeAttribute(hash_key=True)
    visitor_key = UnicodeAttribute(range_key=True)  # visitor id + " " + connection id


class Connection(Table):
    """A live WebSocket connection, or (role ``requeue``) a timer on the last-seen index: an agent's
    conversations to re-queue once it comes due, unless the agent is back (chalicelib/sweep.py)."""

    Meta = _meta("connections")
    connection_id = UnicodeAttribute(hash_key=True)
    role = UnicodeAttribute()  # visitor | agent | requeue | autoclose (a conversation's idle timer)
    site_id = UnicodeAttribute()
    subject = UnicodeAttribute()  # visitor id or agent id
    conversation_id = UnicodeAttribute(null=True)  # a visitor's conversation
    connected_at = NumberAttribute()
    last_seen = NumberAttribute()
    sweep_shard = NumberAttribute()
    expires_at = NumberAttribute()  # DynamoDB TTL attribute
    visitor_site_id = UnicodeAttribute(null=True)  # visitors only: the site-visitors-index key
    visitor_key = UnicodeAttribute(null=True)
    last_seen_index = LastSeenIndex()
    site_visitors_index = SiteVisitorsIndex()


class CannedResponse(Table):
    """An agent's canned response, per site (chalicelib/canned.py): at most MAX_CANNED per site, each
    a short shortcut and at most MAX_CANNED_TEXT characters, so the whole list fits one frame."""

    Meta = _meta("canned")
    site_id = UnicodeAttribute(hash_key=True)
    shortcut = UnicodeAttribute(range_key=True)
    text = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()


class ReportDay(Table):
    """A site's report aggregates for one UTC day (chalicelib/reports.py): counters added to at events
    that write anyway (a conversation opening, the first agent reply, a close, a rating), never by
    scanning. Per-agent counters are top-level attributes named ``<counter>:<agent id>`` on the same
    item, so one UpdateItem counts an event for the site and its agent; they are read raw."""

    Meta = _meta("reports")
    site_id = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)  # YYYY-MM-DD, UTC


class Limit(Table):
    """Counters behind the limits that must hold across function instances (chalicelib/limits.py):
    one small item per key and window, or per account for login failures; gone by TTL."""

    Meta = _meta("limits")
    key = UnicodeAttribute(hash_key=True)
    count = NumberAttribute(default=0)
    last_at = NumberAttribute(null=True)
    expires_at = NumberAttribute()  # DynamoDB TTL attribute


class SearchEntry(Table):
    """The search index (chalicelib/search.py, docs/search.md), written only by the stream handler.

    A posting: ``term_key`` = site id + "#" + term, ``ref`` = created-at (ms, 13 digits) + "#" +
    conversation id + "#" + seq (8 digits), or + "#v" for the visitor's fields, so one Query lists
    a term's documents newest first and a site never reads another's. A conversation's profile
    (``term_key`` = site id + "#~" + conversation id, ``ref`` "profile") remembers which visitor
    terms were indexed, so they are rewritten only when the visitor's fields change. Short
    attribute names: every posting is billed by its size.
    """

    Meta = _meta("search")
    term_key = UnicodeAttribute(hash_key=True, attr_name="k")
    ref = UnicodeAttribute(range_key=True, attr_name="r")
    client_msg_id = UnicodeAttribute(null=True, attr_name="m")  # the message's key, for its snippet
    terms = ListAttribute(of=UnicodeAttribute, null=True, attr_name="ts")  # profile: the terms indexed
    profile_ref = UnicodeAttribute(null=True, attr_name="pr")  # profile: the ref its postings carry
    expires_at = NumberAttribute(null=True, attr_name="x")  # DynamoDB TTL (KEFU_SEARCH_RETENTION_DAYS)



class MailDueIndex(GlobalSecondaryIndex):
    """Mails still to send, by when they are due. Sparse: ``due_shard`` is removed once a mail is
    sent or given up, so the sender's Query reads only what is waiting."""

    class Meta:
        index_name = "due-index"
        projection = AllProjection()

    due_shard = NumberAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class Mail(Table):
    """An email to send, written with the event it tells of and sent by the mail schedule
    (chalicelib/outbox.py), never on the chat path's clock. What it says is composed when it is
    sent, from the conversation as it is then; kept a while after, for the record."""

    Meta = _meta("mail")
    mail_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()  # offline_message | unanswered | reply | transcript
    site_id = UnicodeAttribute()
    conversation_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()  # pending | sent | skipped | failed
    due_shard = NumberAttribute(null=True)  # present while pending: the due-index key
    due_at = NumberAttribute()  # epoch seconds
    attempts = NumberAttribute(default=0)
    lease_until = NumberAttribute(null=True)  # a sender working on it until then
    last_error = UnicodeAttribute(null=True)
    recipients = ListAttribute(of=UnicodeAttribute, null=True)
    subject = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    sent_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # DynamoDB TTL attribute, set once it is done
    due_index = MailDueIndex()



ALL_MODELS: List[Type[Model]] = [Site, Agent, Visitor, Conversation, Message, Connection, Limit, SearchEntry, Mail,
                                 CannedResponse, ReportDay]

# The TTL attribute of each table that has one (DynamoDB TTL is set outside CreateTable).
TTL_ATTRIBUTES: Dict[Type[Model], str] = {Connection: "expires_at", Limit: "expires_at", SearchEntry: "x",
                                          Mail: "expires_at"}

# Tables whose changes a stream carries to a function (infra/ enables it; local/streams.py feeds
# the same records locally): the messages, new images only, to the search indexer.
STREAMS: Dict[Type[Model], str] = {Message: "NEW_IMAGE"}


def create_tables() -> None:
    """Create every table that does not exist yet, and wait until each is active."""
    for model in ALL_MODELS:
        if not model.exists():
            model.create_table(wait=True)


def as_dict(value: object) -> Dict[str, object]:
    """A raw map attribute's contents as a plain dict (an absent map is empty)."""
    if value is None:
        return {}
    if isinstance(value, MapAttribute):
        return value.as_dict()
    return dict(value)  # type: ignore[call-overload]
