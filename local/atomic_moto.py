"""Make moto's DynamoDB apply each request atomically, as DynamoDB does.

moto's backend mutates items without locking, so two concurrent `UpdateItem ... ADD` calls from
different threads can both read the old value; real DynamoDB never lets that happen to one item.
Serialising moto's request handling restores the guarantee the app relies on (per-item atomic
updates and conditions). Used by the local stack's embedded store and by the unit tests.
"""
from __future__ import annotations

import functools
import threading

_lock = threading.RLock()
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self, *args, **kwargs):
        with _lock:
            return original(self, *args, **kwargs)

    DynamoHandler.call_action = call_action
    _installed = True
