"""Reports: conversations per day, first response time, resolution time and ratings, per site and
per agent, as aggregates counted where Kefu writes anyway, never by scanning.

One ``ReportDay`` item per site and UTC day holds counters; an event adds to the site's counter
and, on the same item, to its agent's (``<counter>:<agent id>``), in one UpdateItem:
  a conversation opens (its first message)     opened +1 (for the agent it is handed to, if any)
  the first agent reply since it (re)opened     frt_n +1, frt_ms + (reply - opened)
  a close (by an agent, or idle)                res_n +1, res_ms + (closed - opened)
  a rating                                      rate_n +1, rate_sum + score, rate_<score> +1
None of these is per message: the first agent reply is found by the seq update the reply makes
anyway (chalicelib/messages.py), so it adds this one write once per opening.
"""
from __future__ import annotations

import datetime
import logging
import re
from typing import Any, Dict, List, Optional

from pynamodb.expressions.operand import Path

from chalicelib.errors import bad_request, forbidden
from chalicelib.models import ReportDay
from chalicelib.tokens import Identity

log = logging.getLogger("kefu.reports")

MAX_DAYS = 92
COUNTERS = ("opened", "frt_n", "frt_ms", "res_n", "res_ms", "rate_n", "rate_sum",
            "rate_1", "rate_2", "rate_3", "rate_4", "rate_5")
# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_DAY = r"^\d{4}-\d{2}-\d{2}$"


def day_of(ms: float) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def record(site_id: str, at_ms: float, counts: Dict[str, int], agent_id: Optional[str] = None) -> None:
    """Add ``counts`` to the site's counters of the day of ``at_ms`` (and to ``agent_id``'s)."""
    actions = []
    for name, amount in counts.items():
        actions.append(Path(name).add({"N": str(int(amount))}))
        if agent_id:
            actions.append(Path(f"{name}:{agent_id}").add({"N": str(int(amount))}))
    try:
        ReportDay._get_connection().update_item(site_id, day_of(at_ms), actions=actions)
    except Exception:
        # A report is worth less than the chat action that counted it: log, never fail the action.
        log.exception("report counters not updated for %s", site_id)


def _parse_day(value: Any, name: str) -> datetime.date:
    if not isinstance(value, str) or not re.match(_DAY, value):
        raise bad_request("invalid_date", f"{name} must be a date, YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise bad_request("invalid_date", f"{name} must be a date, YYYY-MM-DD")


def _summary(counters: Dict[str, int]) -> Dict[str, Any]:
    def avg(total: str, count: str) -> Optional[int]:
        return int(counters.get(total, 0) / counters[count]) if counters.get(count) else None

    return {
        "conversations": counters.get("opened", 0),
        "first_responses": counters.get("frt_n", 0),
        "first_response_ms_avg": avg("frt_ms", "frt_n"),
        "resolved": counters.get("res_n", 0),
        "resolution_ms_avg": avg("res_ms", "res_n"),
        "ratings": counters.get("rate_n", 0),
        "rating_avg": round(counters["rate_sum"] / counters["rate_n"], 2) if counters.get("rate_n") else None,
        "ratings_by_score": {str(s): counters.get(f"rate_{s}", 0) for s in range(1, 6)},
    }


def report(identity: Identity, start: Any, end: Any, agent_id: Any = None) -> Dict[str, Any]:
    """The ``reports`` frame for the days ``start`` to ``end`` (inclusive, UTC): one Query of at most
    MAX_DAYS small items. With ``agent_id``, ``days`` and ``totals`` are that agent's figures."""
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents read reports")
    if agent_id is not None and (not isinstance(agent_id, str) or not 1 <= len(agent_id) <= 64):
        raise bad_request("invalid_agent_id", "agent_id must be a string")
    first, last = _parse_day(start, "from"), _parse_day(end, "to")
    if last < first or (last - first).days >= MAX_DAYS:
        raise bad_request("invalid_date_range", f"to must be from `from` to {MAX_DAYS - 1} days after it")
    raw = ReportDay._get_connection().query(
        identity.site_id, ReportDay.day.between(first.isoformat(), last.isoformat()))
    by_day: Dict[str, Dict[str, int]] = {}
    totals: Dict[str, int] = {}
    per_agent: Dict[str, Dict[str, int]] = {}
    for item in raw.get("Items", []):
        counters = by_day.setdefault(item["day"]["S"], {})
        for name, value in item.items():
            if "N" not in value:
                continue
            counter, _, owner = name.partition(":")
            if counter not in COUNTERS:
                continue
            amount = int(float(value["N"]))
            if owner:
                target = per_agent.setdefault(owner, {})
                target[counter] = target.get(counter, 0) + amount
            if owner == (agent_id or ""):  # the site's figures, or the one agent's asked for
                counters[counter] = amount
                totals[counter] = totals.get(counter, 0) + amount
    days: List[Dict[str, Any]] = []
    day = first
    while day <= last:
        days.append({"day": day.isoformat(), **_summary(by_day.get(day.isoformat(), {}))})
        day += datetime.timedelta(days=1)
    return {"type": "reports", "from": first.isoformat(), "to": last.isoformat(), "agent_id": agent_id,
            "days": days, "totals": _summary(totals),
            "agents": {a: _summary(c) for a, c in sorted(per_agent.items())}}
