"""Counts the DynamoDB calls the app makes and what DynamoDB would bill for them.

Every pynamodb request passes through ``Connection.dispatch``. Around each one this meter reads the
item before and after (with requests of its own, not counted) and applies DynamoDB's rules:
- item size: attribute names plus values (strings in UTF-8, numbers ~1 byte per 2 digits + 1,
  3 bytes of overhead per list or map and 1 per element);
- writes: one unit per KB of the larger of the old and new item, at least 1, refused conditional
  writes included; plus, for each index, a put, a delete, or both when its key changed, or an
  update when a projected attribute changed (nothing when the write leaves the index alone);
- transactions: twice the units of each item; BatchWriteItem: each put by its own size, each delete
  as one unit (only the search index deletes in batches, items under 1 KB);
- reads: one unit per 4 KB (half for eventually consistent reads), per item for GetItem and
  BatchGetItem, over the total returned for Query.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pynamodb.connection.base import Connection

READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class CallLog:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, str]] = []
        self.items_read = 0  # items DynamoDB examined for reads
        self.read_units = 0.0
        self.write_units = 0
        self.units_by_call: List[Tuple[str, str, float]] = []
        self._lock = threading.Lock()

    def add(self, operation: str, table: str, items_read: int = 0, read_units: float = 0.0,
            write_units: int = 0) -> None:
        with self._lock:
            self.calls.append((operation, table))
            self.items_read += items_read
            self.read_units += read_units
            self.write_units += write_units
            self.units_by_call.append((operation, table, read_units or write_units))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.units_by_call.clear()
            self.items_read = 0
            self.read_units = 0.0
            self.write_units = 0

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

    def units(self) -> Dict[str, float]:
        out: Dict[str, float] = Counter()
        for op, table, units in self.units_by_call:
            out[f"{op} {table}"] += units
        return dict(out)


@contextlib.contextmanager
def counting() -> Iterator[CallLog]:
    log = CallLog()
    original = Connection.dispatch
    local = threading.local()

    def dispatch(self, operation_name, operation_kwargs):
        if getattr(local, "inside", False):  # the meter's own look-ups
            return original(self, operation_name, operation_kwargs)
        table = operation_kwargs.get("TableName", "")
        before = _current_item(self, original, local, operation_name, operation_kwargs)
        result: Dict = {}
        try:
            result = original(self, operation_name, operation_kwargs)
            return result
        finally:  # refused conditional writes are billed too
            if operation_name == "BatchWriteItem":
                # each put is billed as its own write (by its size); a delete by the item it removes,
                # under 1 KB for every table written this way (the search index)
                for batch_table, requests in operation_kwargs["RequestItems"].items():
                    units = sum(write_units(batch_table, None, r["PutRequest"]["Item"]) if "PutRequest" in r else 1
                                for r in requests)
                    log.add(operation_name, batch_table, write_units=units)
            elif operation_name == "TransactWriteItems":
                # each item of a transaction costs twice (items here are under 1 KB: the rare paths
                # that use one create or reopen a conversation)
                log.add(operation_name, table, write_units=2 * len(operation_kwargs["TransactItems"]))
            elif operation_name in WRITES:
                after = _current_item(self, original, local, operation_name, operation_kwargs)
                units = write_units(table, before, after)
                log.add(operation_name, table, write_units=units)
            else:
                log.add(operation_name, table, _items_read(operation_name, result),
                        read_units=read_units(operation_name, operation_kwargs, result))

    Connection.dispatch = dispatch
    try:
        yield log
    finally:
        Connection.dispatch = original


def _current_item(connection: Any, original: Any, local: threading.local, operation: str,
                  kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if operation not in ("PutItem", "UpdateItem", "DeleteItem"):
        return None
    key = kwargs.get("Key")
    if key is None:  # PutItem: the key is inside the item
        schema = _schema(kwargs["TableName"])
        key = {name: kwargs["Item"][name] for name in schema["keys"] if name in kwargs["Item"]}
    local.inside = True
    try:
        found = original(connection, "GetItem", {"TableName": kwargs["TableName"], "Key": key,
                                                 "ConsistentRead": True})
    finally:
        local.inside = False
    return found.get("Item")


def _items_read(operation: str, result: Dict) -> int:
    if operation in ("Query", "Scan"):
        return int(result.get("ScannedCount", result.get("Count", 0)))
    if operation == "GetItem":
        return 1 if result.get("Item") else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in result.get("Responses", {}).values())
    return 0


# --- sizes ---------------------------------------------------------------------------------

def value_size(value: Dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw) if isinstance(raw, (bytes, bytearray)) else math.ceil(len(raw) * 3 / 4)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in raw)
    raise ValueError(kind)


def item_size(item: Optional[Dict[str, Any]], only: Optional[set] = None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items()
               if only is None or name in only)


# --- units ---------------------------------------------------------------------------------

_SCHEMAS: Dict[str, Dict[str, Any]] = {}


def _schema(table: str) -> Dict[str, Any]:
    """Keys and indexes of a table, from the pynamodb model that defines it."""
    if not _SCHEMAS:
        from chalicelib.models import ALL_MODELS

        for model in ALL_MODELS:
            schema = model._get_schema()
            keys = {k["AttributeName"] for k in schema["key_schema"]}
            indexes = []
            for index in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]:
                projection = index["projection"]
                index_keys = {k["AttributeName"] for k in index["key_schema"]}
                if projection["ProjectionType"] == "ALL":
                    projected = None
                else:
                    projected = keys | index_keys | set(projection.get("NonKeyAttributes", []))
                indexes.append({"keys": index_keys, "projected": projected})
            _SCHEMAS[model.Meta.table_name] = {"keys": keys, "indexes": indexes}
    return _SCHEMAS[table]


def _kb(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def write_units(table: str, before: Optional[Dict[str, Any]], after: Optional[Dict[str, Any]]) -> int:
    units = _kb(max(item_size(before), item_size(after)))
    for index in _schema(table)["indexes"]:
        was_in = bool(before) and all(k in before for k in index["keys"])
        is_in = bool(after) and all(k in after for k in index["keys"])
        old = item_size(before, index["projected"]) if was_in else 0
        new = item_size(after, index["projected"]) if is_in else 0
        if was_in and is_in:
            if any(before[k] != after[k] for k in index["keys"]):
                units += _kb(old) + _kb(new)  # the index entry moves: a delete and a put
            elif _projected(before, index) != _projected(after, index):
                units += _kb(max(old, new))
        elif was_in:
            units += _kb(old)
        elif is_in:
            units += _kb(new)
    return units


def _projected(item: Dict[str, Any], index: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in item.items() if index["projected"] is None or k in index["projected"]}


def read_units(operation: str, kwargs: Dict[str, Any], result: Dict[str, Any]) -> float:
    def units(size: int, consistent: bool) -> float:
        whole = max(1, math.ceil(size / 4096))
        return whole if consistent else whole / 2

    if operation == "GetItem":
        return units(item_size(result.get("Item")), bool(kwargs.get("ConsistentRead")))
    if operation in ("Query", "Scan"):
        return units(sum(item_size(i) for i in result.get("Items", [])), bool(kwargs.get("ConsistentRead")))
    if operation == "BatchGetItem":
        total = 0.0
        for table, items in result.get("Responses", {}).items():
            consistent = bool(kwargs.get("RequestItems", {}).get(table, {}).get("ConsistentRead"))
            total += sum(units(item_size(i), consistent) for i in items)
        return total
    return 0.0
