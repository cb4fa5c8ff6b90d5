"""Alertmanager webhook (version 4) bodies -> one ``Alert`` per alert, and the RFC3339 times they carry."""

from __future__ import annotations

import calendar
import hashlib
import math
import re
from typing import Any

from aiops.domain.alerts import Alert
from aiops.domain.errors import InputError

# Alertmanager writes nanosecond fractions, which datetime.fromisoformat cannot keep; parse by hand.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$")
_STATUSES = ("firing", "resolved")
# Go's zero time.Time: Alertmanager's way of saying "no end yet".
_GO_ZERO_YEAR = 1


def parse_time(value: object, where: str = "time") -> float:
    """Unix seconds from a number or an RFC3339 string (any fraction length, ``Z`` or ``+hh:mm`` offset)."""
    if isinstance(value, bool):
        raise InputError(where, f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InputError(where, f"not a finite time: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise InputError(where, f"not a time: expected a number or an RFC3339 string, got {type(value).__name__}")
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _RFC3339.match(text)
    if not m:
        raise InputError(where, f"not an RFC3339 time: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        base = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        raise InputError(where, f"not a valid date: {value!r}") from None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise InputError(where, f"not a valid date: {value!r}")
    fraction = float(m.group(7)) if m.group(7) else 0.0
    return base + fraction - _offset_seconds(m.group(8))


def _offset_seconds(zone: str) -> int:
    if zone in ("Z", "z"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def _is_go_zero(value: object) -> bool:
    return isinstance(value, str) and value.startswith("0001-01-01")


def parse_webhook(payload: object) -> list[Alert]:
    """Split an Alertmanager webhook body into single ``Alert``s, validating its shape.

    A wrong shape raises ``InputError`` whose ``where`` is a JSON path such as ``alerts[1].labels``. Alerts without a
    ``status`` take the group's; a missing fingerprint is derived from the sorted labels, so it is stable.
    """
    if not isinstance(payload, dict):
        raise InputError("(body)", f"must be a JSON object, got {_kind(payload)}")
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise InputError("version", f"unsupported webhook version {version!r} (expected \"4\")")
    group_status = payload.get("status")
    if group_status is not None and group_status not in _STATUSES:
        raise InputError("status", f"must be 'firing' or 'resolved', got {group_status!r}")
    alerts = payload.get("alerts")
    if alerts is None:
        raise InputError("alerts", "missing")
    if not isinstance(alerts, list):
        raise InputError("alerts", f"must be a list, got {_kind(alerts)}")
    return [_parse_alert(item, f"alerts[{i}]", group_status) for i, item in enumerate(alerts)]


def _parse_alert(item: object, where: str, group_status: str | None) -> Alert:
    if not isinstance(item, dict):
        raise InputError(where, f"must be an object, got {_kind(item)}")
    status = item.get("status", group_status)
    if status not in _STATUSES:
        raise InputError(f"{where}.status", f"must be 'firing' or 'resolved', got {status!r}")
    labels = _string_map(item.get("labels"), f"{where}.labels", required=True)
    if not labels:
        raise InputError(f"{where}.labels", "must not be empty")
    annotations = _string_map(item.get("annotations"), f"{where}.annotations", required=False)
    starts_at = _time_field(item, "startsAt", where)
    ends_raw = item.get("endsAt")
    ends_at = None if ends_raw in (None, "") or _is_go_zero(ends_raw) else parse_time(ends_raw, f"{where}.endsAt")
    fingerprint = item.get("fingerprint")
    if fingerprint in (None, ""):
        fingerprint = fingerprint_of(labels)
    elif not isinstance(fingerprint, str):
        raise InputError(f"{where}.fingerprint", f"must be a string, got {_kind(fingerprint)}")
    url = item.get("generatorURL", "")
    if not isinstance(url, str):
        raise InputError(f"{where}.generatorURL", f"must be a string, got {_kind(url)}")
    return Alert(fingerprint=fingerprint, status=status, labels=labels, annotations=annotations,
                 starts_at=starts_at, ends_at=ends_at, generator_url=url)


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit fingerprint of a label set (order-independent)."""
    raw = "\xff".join(f"{k}\xfe{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def _time_field(item: dict, key: str, where: str) -> float:
    raw = item.get(key)
    if raw in (None, "") or _is_go_zero(raw):
        return 0.0
    return parse_time(raw, f"{where}.{key}")


def _string_map(value: Any, where: str, required: bool) -> dict[str, str]:
    if value is None:
        if required:
            raise InputError(where, "missing")
        return {}
    if not isinstance(value, dict):
        raise InputError(where, f"must be an object of strings, got {_kind(value)}")
    for key, val in value.items():
        if not isinstance(val, str):
            raise InputError(f"{where}.{key}", f"must be a string, got {_kind(val)}")
    return dict(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)
