"""The heartbeat sweep: drop connections whose last heartbeat is too old.

API Gateway's $disconnect is best-effort, so a closed laptop lid can leave a connection behind.
Stale connections are found on the sharded last-seen index (reads track the stale ones, never
the live ones), closed through the Management API, forgotten, and the other side is told.
Safe to run twice or concurrently: every drop is a conditional delete on the heartbeat.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from chalicelib import clock, connections, conversations, delivery
from chalicelib.config import settings
from chalicelib.models import Connection, Site, as_dict
from chalicelib.tokens import Identity

log = logging.getLogger("kefu.sweep")

PAGE_SIZE = 100


@dataclass
class SweepReport:
    examined: int = 0
    dropped: int = 0
    kept: int = 0  # pinged between the index read and the delete
    requeued: int = 0
    complete: bool = True  # False: the time budget ran out; the next run continues
    dropped_ids: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return {"examined": self.examined, "dropped": self.dropped, "kept": self.kept,
                "requeued": self.requeued, "complete": self.complete}


def sweep(time_left_ms: Optional[Callable[[], int]] = None, margin_ms: int = 3000) -> SweepReport:
    """One sweep run. ``time_left_ms`` is the Lambda context's clock; stops early when it runs low."""
    cfg = settings()
    cutoff = clock.now() - cfg.heartbeat_timeout
    report = SweepReport()
    for shard in range(cfg.sweep_shards):
        for record in Connection.last_seen_index.query(shard, Connection.last_seen < cutoff, page_size=PAGE_SIZE):
            if time_left_ms is not None and time_left_ms() < margin_ms:
                report.complete = False
                log.info("sweep stopped for time: %s", report.as_dict())
                return report
            report.examined += 1
            _sweep_one(record, cutoff, report)
    (log.info if report.examined else log.debug)("sweep done: %s", report.as_dict())
    return report


def _sweep_one(record: Connection, cutoff: float, report: SweepReport) -> None:
    identity = Identity(record.role, record.site_id, record.subject, record.conversation_id)
    dropped = connections.drop(record.connection_id, identity, silent_since=cutoff)
    if dropped is None:
        report.kept += 1
        return
    report.dropped += 1
    report.dropped_ids.append(record.connection_id)
    delivery.close(record.connection_id)
    if dropped.agent_offline and dropped.site is not None:
        report.requeued += _requeue_agents_conversations(dropped.site, record.subject)


def _requeue_agents_conversations(site: Site, agent_id: str) -> int:
    """The agent died without saying goodbye: their visitors are told and handed to someone else."""
    requeued = 0
    for conversation in conversations.list_open(site.site_id):
        if conversation.status != "assigned" or conversation.agent_id != agent_id:
            continue
        visitors = list(as_dict(conversation.visitor_conns))
        connections.push(visitors, {"type": "presence", "role": "agent", "id": agent_id, "status": "offline",
                                    "conversation_id": conversation.conversation_id})
        if conversations.requeue(site, conversation):
            requeued += 1
    return requeued
