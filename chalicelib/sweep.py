"""The heartbeat sweep: drop connections whose last heartbeat is too old.

API Gateway's $disconnect is best-effort, so a closed laptop lid can leave a connection behind.
Stale connections are found on the sharded last-seen index (reads track the stale ones, never
the live ones), closed through the Management API, forgotten, and the other side is told.
Safe to run twice or concurrently: every drop is a conditional delete on the heartbeat.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from chalicelib import clock, connections, delivery, requeue
from chalicelib.config import settings
from chalicelib.models import Connection
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
    """One sweep run. ``time_left_ms`` is the Lambda context's clock; stops early when it runs low.

    Stale connections are dropped ``KEFU_SWEEP_THREADS`` at a time, so a burst of dead sockets
    (a Wi-Fi network going down) is reported offline within one run, not one drop after another.
    """
    cfg = settings()
    cutoff = clock.now() - cfg.heartbeat_timeout
    report = SweepReport()
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=cfg.sweep_threads, thread_name_prefix="sweep") as pool:
        running: List[Future] = []
        for shard in range(cfg.sweep_shards):
            for record in Connection.last_seen_index.query(shard, Connection.last_seen < cutoff, page_size=PAGE_SIZE):
                if time_left_ms is not None and time_left_ms() < margin_ms:
                    report.complete = False
                    break
                report.examined += 1
                running.append(pool.submit(_sweep_one, record, cutoff, report, lock))
            if not report.complete:
                break
        for future in running:
            try:
                future.result()
            except Exception:  # one failed drop must not stop the others; the next run retries it
                log.exception("sweep: a drop failed")
                report.complete = False
    (log.info if report.examined else log.debug)("sweep done: %s", report.as_dict())
    return report


def _sweep_one(record: Connection, cutoff: float, report: SweepReport, lock: threading.Lock) -> None:
    if record.role == requeue.ROLE:
        moved = requeue.run(record)
        with lock:
            report.requeued += moved
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
            report.dropped_ids.append(record.connection_id)
        delivery.close(record.connection_id)
    if timer is not None:
        moved = requeue.run(timer)  # nothing moves while the agent has another live connection
        with lock:
            report.requeued += moved
