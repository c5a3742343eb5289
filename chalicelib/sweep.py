"""The heartbeat sweep: drop connections whose last heartbeat is too old.

API Gateway's $disconnect is best-effort, so a closed laptop lid can leave a connection behind.
Stale connections are found on the sharded last-seen index (reads track the stale ones, never
the live ones), closed through the Management API, forgotten, and the other side is told.
Safe to run twice or concurrently: every drop is a conditional delete on the heartbeat. The same
index holds timers that come due like stale connections: re-queues (chalicelib/requeue.py) and
idle conversations to close (chalicelib/autoclose.py).
"""
from __future__ import annotations

import heapq
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Set

from chalicelib import autoclose, clock, connections, delivery, observability, requeue
from chalicelib.config import settings
from chalicelib.models import Connection
from chalicelib.tokens import Identity

log = logging.getLogger("kefu.sweep")

PAGE_SIZE = 100


class SweepReport:
    """What one sweep did (a plain class: a dataclass costs every function's cold start)."""

    def __init__(self) -> None:
        self.examined = 0
        self.dropped = 0
        self.kept = 0  # pinged between the index read and the delete
        self.requeued = 0
        self.autoclosed = 0  # idle conversations closed (chalicelib/autoclose.py)
        self.complete = True  # False: the time budget ran out; the next run continues
        self.dropped_ids: List[str] = []

    def as_dict(self) -> Dict[str, object]:
        return {"examined": self.examined, "dropped": self.dropped, "kept": self.kept,
                "requeued": self.requeued, "autoclosed": self.autoclosed, "complete": self.complete}


def sweep(time_left_ms: Optional[Callable[[], int]] = None, margin_ms: int = 3000) -> SweepReport:
    """One sweep run. ``time_left_ms`` is the Lambda context's clock; stops early when it runs low.

    Stale connections are dropped ``KEFU_SWEEP_THREADS`` at a time, so a burst of dead sockets
    (a Wi-Fi network going down) is reported offline within one run, not one drop after another;
    the longest silent go first, whatever their shard, so a backlog delays the newest, never the
    most overdue.
    """
    cfg = settings()
    cutoff = clock.now() - cfg.heartbeat_timeout
    report = SweepReport()
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=cfg.sweep_threads, thread_name_prefix="sweep") as pool:
        running: List[Future] = []
        for record in _stale(cfg.sweep_shards, cutoff):
            if time_left_ms is not None and time_left_ms() < margin_ms:
                report.complete = False
                break
            if not _claim(record.connection_id):
                continue  # an overlapping run in this process is dropping it already
            report.examined += 1
            running.append(pool.submit(_sweep_claimed, record, cutoff, report, lock))
        for future in running:
            try:
                future.result()
            except Exception:  # one failed drop must not stop the others; the next run retries it
                log.exception("sweep: a drop failed")
                report.complete = False
        # Only then close the dropped sockets: the other side's presence frame is what waits, and a
        # close (with the $disconnect it sets off) would hold a thread each drop needs. A socket left
        # open by a function that dies here is forgotten already: its next frame is told to reconnect.
        for future in [pool.submit(delivery.close, connection_id) for connection_id in report.dropped_ids]:
            try:
                future.result()
            except Exception:
                log.exception("sweep: a close failed")
    (log.info if report.examined else log.debug)("sweep done: %s", report.as_dict())
    observability.count("sweep_drops", report.dropped)
    return report


def _stale(shards: int, cutoff: float) -> Iterator[Connection]:
    """Every record silent since before ``cutoff``, oldest first across all shards: each shard's
    query is already in last-seen order, so merging them pages through each one lazily."""
    queries = [Connection.last_seen_index.query(shard, Connection.last_seen < cutoff, page_size=PAGE_SIZE)
               for shard in range(shards)]
    return heapq.merge(*queries, key=lambda record: record.last_seen)


# Connections being dropped by a run in this process. A Lambda container runs one sweep at a time,
# but where runs overlap in one process (the local stack) the second leaves the first's alone.
_claimed: Set[str] = set()
_claimed_lock = threading.Lock()


def _claim(connection_id: str) -> bool:
    with _claimed_lock:
        if connection_id in _claimed:
            return False
        _claimed.add(connection_id)
        return True


def _sweep_claimed(record: Connection, cutoff: float, report: SweepReport, lock: threading.Lock) -> None:
    try:
        _sweep_one(record, cutoff, report, lock)
    finally:
        with _claimed_lock:
            _claimed.discard(record.connection_id)


def _sweep_one(record: Connection, cutoff: float, report: SweepReport, lock: threading.Lock) -> None:
    if record.role == requeue.ROLE:
        moved = requeue.run(record)
        with lock:
            report.requeued += moved
        return
    if record.role == autoclose.ROLE:
        closed = autoclose.run(record)
        with lock:
            report.autoclosed += int(closed)
        return
    identity = Identity(record.role, record.site_id, record.subject, record.conversation_id)
    timer = requeue.schedule(record.site_id, record.subject, 0) if identity.is_agent else None
    dropped = connections.drop(record.connection_id, identity, silent_since=cutoff)
    if dropped is None:
        with lock:
            report.kept += 1
    else:
        with lock:
            report.dropped += 1
            report.dropped_ids.append(record.connection_id)  # closed once every drop is done
    if timer is not None:
        moved = requeue.run(timer)  # nothing moves while the agent has another live connection
        with lock:
            report.requeued += moved
