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
        self.items_read = 0  # items DynamoDB examined for reads (what read units are billed on)
        self._lock = threading.Lock()

    def add(self, operation: str, table: str, items_read: int = 0) -> None:
        with self._lock:
            self.calls.append((operation, table))
            self.items_read += items_read

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.items_read = 0

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
        result: Dict = {}
        try:
            result = original(self, operation_name, operation_kwargs)
            return result
        finally:  # refused conditional writes are billed too
            log.add(operation_name, operation_kwargs.get("TableName", ""), _items_read(operation_name, result))

    Connection.dispatch = dispatch
    try:
        yield log
    finally:
        Connection.dispatch = original


def _items_read(operation: str, result: Dict) -> int:
    if operation in ("Query", "Scan"):
        return int(result.get("ScannedCount", result.get("Count", 0)))
    if operation == "GetItem":
        return 1 if result.get("Item") else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in result.get("Responses", {}).values())
    return 0
