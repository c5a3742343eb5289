"""Counts the DynamoDB calls the app makes (every pynamodb request passes through dispatch)."""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Dict, Iterator, List, Tuple

from pynamodb.connection.base import Connection

READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class CallLog:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, operation: str, table: str) -> None:
        with self._lock:
            self.calls.append((operation, table))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    @property
    def reads(self) -> int:
        return sum(1 for op, _ in self.calls if op in READS)

    @property
    def writes(self) -> int:
        return sum(1 for op, _ in self.calls if op in WRITES)

    @property
    def scans(self) -> int:
        return sum(1 for op, _ in self.calls if op == "Scan")

    def by_operation(self) -> Dict[str, int]:
        return dict(Counter(f"{op} {table}" for op, table in self.calls))


@contextlib.contextmanager
def counting() -> Iterator[CallLog]:
    log = CallLog()
    original = Connection.dispatch

    def dispatch(self, operation_name, operation_kwargs):
        log.add(operation_name, operation_kwargs.get("TableName", ""))
        return original(self, operation_name, operation_kwargs)

    Connection.dispatch = dispatch
    try:
        yield log
    finally:
        Connection.dispatch = original
