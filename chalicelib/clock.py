"""Time, in one place, so tests can move it."""
from __future__ import annotations

import time


def now() -> float:
    return time.time()


def now_ms() -> int:
    return int(time.time() * 1000)
