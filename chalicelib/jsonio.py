"""Reading JSON from the outside world: anything that is not plain, storable JSON is a 400.

Python's parser accepts what DynamoDB and UTF-8 cannot take (NaN and Infinity, lone surrogates
from "\\ud800" escapes) and overflows its stack on deeply nested input; all of these become
``invalid_json`` here instead of a 500 further in.
"""
from __future__ import annotations

import json
from typing import Any, Union

from chalicelib.errors import bad_request


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: Union[str, bytes]) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be stored
    except (ValueError, RecursionError, UnicodeError):
        raise bad_request("invalid_json", "not valid JSON (plain JSON in UTF-8, nested at most a few hundred levels)")
    return value


MAX_DEPTH = 16
# DynamoDB numbers: 38 significant digits, magnitudes from 1e-130 to 1e126.
_NUMBER_RANGE = (1e-130, 1e125)


def is_storable(value: Any, depth: int = 0) -> bool:
    """Whether DynamoDB can store this JSON value as it is (attributes, custom fields)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        magnitude = abs(value)
        return magnitude == 0 or (_NUMBER_RANGE[0] <= magnitude < _NUMBER_RANGE[1]
                                  and len(str(value).lstrip("-").replace(".", "").lstrip("0")) <= 38)
    if isinstance(value, list):
        return all(is_storable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and k and is_storable(v, depth + 1) for k, v in value.items())
    return False


def is_seq(value: Any) -> bool:
    """A seq, a count or an offset as clients send them: a non-negative integer JSON can carry exactly."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53
