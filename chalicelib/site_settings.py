"""A site's settings as its owner edits them: validated strictly, bounded, stored on the site item.

The site item is read on every message (its agent roster), so whatever rides on it is bounded:
the stored settings JSON is at most ``MAX_SETTINGS_BYTES``, which keeps the site item well under
the 4 KB a read unit covers. Visitors get the widget part with their session (``for_widget``), so
settings cost the widget no request of its own.

Every refusal is a 400 with a machine-readable code: ``unknown_field``, ``invalid_<field>``,
``greeting_too_long``, ``invalid_origin``, ``invalid_business_hours``, ``invalid_auto_invitations``,
``settings_too_large``.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from chalicelib import clock
from chalicelib.errors import KefuError, bad_request

MAX_SETTINGS_BYTES = 3072
MAX_GREETING_CHARS = 300
MAX_ORIGINS = 20
MAX_UPLOAD_TYPES = 30
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_AUTO_INVITATIONS = 5
MAX_INVITATION_CHARS = 200
MAX_INVITATION_DELAY = 3600
MAX_URL_PATTERN_CHARS = 200
AUTO_INVITATION_FIELDS = ("url_pattern", "delay_seconds", "message")
LANGUAGES = ("auto", "zh", "en")
POSITIONS = ("right", "left")
FIELD_MODES = ("off", "optional", "required")
PRE_CHAT_FIELDS = ("name", "email", "phone")
OFFLINE_MODES = ("form", "hide")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_COLOR = r"^#[0-9a-fA-F]{6}$"
_HOUR = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
_MIME = r"^[a-z]+/([a-z0-9][a-z0-9.+-]{0,80}|\*)$"
_HOST = r"^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)$"

DEFAULT_WIDGET: Dict[str, Any] = {
    "color": "#1f6feb",
    "position": "right",
    "launcher_text": "",
    "greeting": "",
    "team_name": "",
    "team_avatar_url": "",
    "pre_chat_form": {"name": "off", "email": "off", "phone": "off"},
    "offline": "form",
    "business_hours": {"enabled": False, "time_zone": "Asia/Shanghai", "days": {}},
    "expected_reply_minutes": None,
    "auto_invitations": [],
}
DEFAULTS: Dict[str, Any] = {"default_language": "auto", "widget": DEFAULT_WIDGET}


# --- reading ------------------------------------------------------------------------------------

def stored(site: Any) -> Dict[str, Any]:
    """The site's settings with defaults filled in (a site made before settings existed has none)."""
    raw = site.settings if isinstance(getattr(site, "settings", None), dict) else {}
    widget = {**DEFAULT_WIDGET, **(raw.get("widget") or {})}
    widget["pre_chat_form"] = {**DEFAULT_WIDGET["pre_chat_form"], **(widget.get("pre_chat_form") or {})}
    return {"default_language": raw.get("default_language", DEFAULTS["default_language"]), "widget": widget}


def for_widget(site: Any) -> Dict[str, Any]:
    """What the visitor's widget applies, sent with its session: the widget settings, the site's
    default language and whether the site is within its business hours now."""
    current = stored(site)
    widget = dict(current["widget"])
    return {**widget, "default_language": current["default_language"],
            "within_hours": within_hours(widget["business_hours"])}


# --- business hours -----------------------------------------------------------------------------

def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def within_hours(hours: Dict[str, Any], at: Optional[float] = None) -> bool:
    """Whether ``at`` (epoch seconds; default now) falls in one of the day's ranges, in the site's
    time zone. Business hours that are not enabled are always open."""
    if not hours.get("enabled"):
        return True
    zone = _zone(hours.get("time_zone", ""))
    if zone is None:
        return True  # never shut a site out over a zone this runtime cannot resolve
    local = datetime.fromtimestamp(clock.now() if at is None else at, zone)
    minute = local.hour * 60 + local.minute
    for start, end in (hours.get("days") or {}).get(DAYS[local.weekday()], []):
        if _minutes(start) <= minute < _minutes(end):
            return True
    return False


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


# --- validating ---------------------------------------------------------------------------------

def _only(value: Any, allowed: tuple, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"invalid_{where}", f"{where} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise bad_request("unknown_field", f"{where}: unknown field {unknown[0]!r}; known: {', '.join(allowed)}")
    return value


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise bad_request(f"invalid_{name}", f"{name} must be text of at most {limit} characters")
    return value.strip()


def _choice(value: Any, name: str, choices: tuple) -> str:
    if value not in choices:
        raise bad_request(f"invalid_{name}", f"{name} must be one of {', '.join(choices)}")
    return value


def origin(value: Any) -> str:
    """A page origin as browsers send it (scheme://host[:port]), or ``*``; else ``invalid_origin``."""
    if value == "*":
        return value
    if not isinstance(value, str) or len(value) > 255:
        raise bad_request("invalid_origin", "an origin is scheme://host[:port], e.g. https://shop.example")
    candidate = value.strip().rstrip("/")
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:
        raise bad_request("invalid_origin", f"{value!r} is not an origin: scheme://host[:port]")
    if (parts.scheme not in ("http", "https") or not parts.hostname or not re.match(_HOST, parts.hostname)
            or parts.path or parts.query or parts.fragment or parts.username or parts.password):
        raise bad_request("invalid_origin", f"{value!r} is not an origin: scheme://host[:port], nothing after")
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def origins(value: Any) -> List[str]:
    if not isinstance(value, list) or len(value) > MAX_ORIGINS:
        raise bad_request("invalid_origin", f"allowed_origins is a list of at most {MAX_ORIGINS} origins")
    return list(dict.fromkeys(origin(v) for v in value))


def https_url(value: Any, name: str) -> str:
    text = _text(value, name, 500)
    if text and (urlsplit(text).scheme != "https" or not urlsplit(text).hostname):
        raise bad_request(f"invalid_{name}", f"{name} must be an https:// URL")
    return text


def _business_hours(value: Any) -> Dict[str, Any]:
    hours = _only(value, ("enabled", "time_zone", "days"), "business_hours")
    if hours.get("enabled", False) not in (True, False):
        raise bad_request("invalid_business_hours", "business_hours.enabled must be true or false")
    zone = hours.get("time_zone", DEFAULT_WIDGET["business_hours"]["time_zone"])
    if not isinstance(zone, str) or len(zone) > 64 or _zone(zone) is None:
        raise bad_request("invalid_business_hours", "business_hours.time_zone must be an IANA zone, e.g. Asia/Shanghai")
    days = hours.get("days", {})
    if not isinstance(days, dict) or set(days) - set(DAYS):
        raise bad_request("invalid_business_hours", f"business_hours.days is keyed by {', '.join(DAYS)}")
    clean: Dict[str, List[List[str]]] = {}
    for day, ranges in days.items():
        if not isinstance(ranges, list) or len(ranges) > 3:
            raise bad_request("invalid_business_hours", f"{day}: a list of at most 3 [\"HH:MM\", \"HH:MM\"] ranges")
        previous_end = -1
        for pair in ranges:
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(t, str) and re.match(_HOUR, t) for t in pair)):
                raise bad_request("invalid_business_hours", f"{day}: each range is [\"HH:MM\", \"HH:MM\"]")
            start, end = _minutes(pair[0]), _minutes(pair[1])
            if start >= end or start < previous_end:
                raise bad_request("invalid_business_hours", f"{day}: ranges must start before they end, in order")
            previous_end = end
        clean[day] = [list(pair) for pair in ranges]
    if hours.get("enabled") and not any(clean.values()):
        raise bad_request("invalid_business_hours", "enabled business hours need at least one range")
    return {"enabled": bool(hours.get("enabled", False)), "time_zone": zone, "days": clean}


def _pre_chat_form(value: Any) -> Dict[str, str]:
    form = _only(value, PRE_CHAT_FIELDS, "pre_chat_form")
    return {name: _choice(form.get(name, "off"), "pre_chat_form", FIELD_MODES) for name in PRE_CHAT_FIELDS}


def _reply_minutes(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 7 * 24 * 60:
        raise bad_request("invalid_expected_reply_minutes", "expected_reply_minutes: 1 to 10080, or null")
    return value


_WIDGET_FIELDS = {
    "color": lambda v: _choice_color(v),
    "position": lambda v: _choice(v, "position", POSITIONS),
    "launcher_text": lambda v: _text(v, "launcher_text", 40),
    "greeting": lambda v: _greeting(v),
    "team_name": lambda v: _text(v, "team_name", 60),
    "team_avatar_url": lambda v: https_url(v, "team_avatar_url"),
    "pre_chat_form": _pre_chat_form,
    "offline": lambda v: _choice(v, "offline", OFFLINE_MODES),
    "business_hours": _business_hours,
    "expected_reply_minutes": _reply_minutes,
    "auto_invitations": lambda v: auto_invitations(v),
}


def auto_invitations(value: Any) -> List[Dict[str, Any]]:
    """Greetings the widget shows by itself (web/widget.js), at most once per visit each: after
    ``delay_seconds`` on a page whose URL matches ``url_pattern`` (``*`` matches anything; no ``*``:
    the URL contains it; empty: every page)."""
    invalid = "invalid_auto_invitations"
    if not isinstance(value, list) or len(value) > MAX_AUTO_INVITATIONS:
        raise bad_request(invalid, f"auto_invitations: a list of at most {MAX_AUTO_INVITATIONS}")
    clean = []
    for rule in value:
        rule = _only(rule, AUTO_INVITATION_FIELDS, "auto_invitations")
        delay = rule.get("delay_seconds", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_INVITATION_DELAY:
            raise bad_request(invalid, f"auto_invitations: delay_seconds from 0 to {MAX_INVITATION_DELAY}")
        pattern = rule.get("url_pattern", "")
        if not isinstance(pattern, str) or len(pattern) > MAX_URL_PATTERN_CHARS or any(ord(c) < 33 for c in pattern):
            raise bad_request(invalid, f"auto_invitations: url_pattern of at most {MAX_URL_PATTERN_CHARS} "
                                       "characters without spaces")
        message = rule.get("message")
        if not isinstance(message, str) or not message.strip() or len(message) > MAX_INVITATION_CHARS:
            raise bad_request(invalid, f"auto_invitations: a message of 1 to {MAX_INVITATION_CHARS} characters")
        clean.append({"url_pattern": pattern, "delay_seconds": delay,
                      "message": _text(message, "auto_invitations", MAX_INVITATION_CHARS)})
    return clean


def _choice_color(value: Any) -> str:
    if not isinstance(value, str) or not re.match(_COLOR, value):
        raise bad_request("invalid_color", "color must be #rrggbb")
    return value.lower()


def _greeting(value: Any) -> str:
    if isinstance(value, str) and len(value) > MAX_GREETING_CHARS:
        raise bad_request("greeting_too_long", f"the greeting is limited to {MAX_GREETING_CHARS} characters")
    return _text(value, "greeting", MAX_GREETING_CHARS)


def upload_types(value: Any) -> List[str]:
    if (not isinstance(value, list) or not 0 < len(value) <= MAX_UPLOAD_TYPES
            or not all(isinstance(t, str) and re.match(_MIME, t) for t in value)):
        raise bad_request("invalid_upload_types", f"upload types: 1-{MAX_UPLOAD_TYPES} MIME types like image/png or image/*")
    return list(dict.fromkeys(value))


def upload_max_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= MAX_UPLOAD_BYTES:
        raise bad_request("invalid_upload_max_bytes", f"upload max_bytes: 1024 to {MAX_UPLOAD_BYTES}")
    return value


def merged(current: Dict[str, Any], changes: Dict[str, Any]) -> Dict[str, Any]:
    """``current`` with ``changes`` (the stored part: default_language and widget) applied, each
    field validated; the result is bounded in size."""
    result = {"default_language": current["default_language"], "widget": dict(current["widget"])}
    if "default_language" in changes:
        result["default_language"] = _choice(changes["default_language"], "default_language", LANGUAGES)
    if "widget" in changes:
        for name, value in _only(changes["widget"], tuple(_WIDGET_FIELDS), "widget").items():
            result["widget"][name] = _WIDGET_FIELDS[name](value)
    size = len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_SETTINGS_BYTES:
        raise KefuError("settings_too_large", f"settings are limited to {MAX_SETTINGS_BYTES} bytes of JSON", 400)
    return result
