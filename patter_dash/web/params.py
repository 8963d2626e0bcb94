"""Params: query-string parsing shared by the read, export and stream routes.

Every bad value raises :class:`BadParam` naming the parameter, which the
blueprint turns into a 400 JSON error; nothing is silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from ..core.store import CallFilter
from ..model import quality, search
from ..model.annotations import MAX_TAG_LENGTH
from ..model.redact import hash_query
from .context import current_dashboard

# int() and float() also take "1_000", " 5", "+5" and non-ASCII digits ("１０");
# a query string should mean one thing, so only plain ASCII numbers pass.
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class BadParam(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid parameter '{name}': {message}")
        self.name = name


def integer(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        raise BadParam(name, "must be an integer")
    # int() refuses over 4,300 digits with a ValueError; anything this long is out of range anyway.
    value = int(raw) if len(raw) <= 20 else hi + 1
    if not lo <= value <= hi:
        raise BadParam(name, f"must be between {lo} and {hi}")
    return value


def timestamp(args: Mapping[str, str], name: str) -> float | None:
    """ISO 8601 or epoch seconds; a date or time without a zone is UTC."""
    raw = args.get(name)
    if not raw:
        return None
    if raw != raw.strip():  # "\f" or " " alone would otherwise pass as "no bound"
        raise BadParam(name, "must not start or end with spaces")
    if _NUMBER.fullmatch(raw):
        value = float(raw)
        if not math.isfinite(value) or abs(value) > 1e11:
            raise BadParam(name, "epoch seconds out of range")
        return value
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParam(name, "must be ISO 8601 (e.g. 2026-11-25T13:00:00Z) or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def choice(args: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise BadParam(name, f"must be one of {', '.join(allowed)}")
    return raw


def flag(args: Mapping[str, str], name: str) -> bool | None:
    """A yes/no filter: 1 or true, 0 or false; absent or empty is "either"."""
    raw = choice(args, name, ("0", "1", "true", "false"))
    return None if raw is None else raw in ("1", "true")


def text(args: Mapping[str, str], name: str, max_length: int = 256) -> str | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise BadParam(name, f"at most {max_length} characters")
    return raw


def period(args: Mapping[str, str]) -> tuple[float | None, float | None]:
    start, end = timestamp(args, "from"), timestamp(args, "to")
    if start is not None and end is not None and end < start:
        raise BadParam("to", "must not be before 'from'")
    return start, end


def _query(q: str | None) -> str | None:
    """``q`` (model/search.py's language); a whole phone number becomes its hash when numbers are redacted (the calls of that caller)."""
    if q is None:
        return None
    redactor = current_dashboard().pipeline.redactor
    q = hash_query(redactor, q) if redactor.active else q
    try:
        search.terms(q)  # parsed here so that a query with nothing to look for is a 400, not an empty page
    except search.BadQuery as exc:
        raise BadParam("q", str(exc)) from None
    return q


#: Range filters: name → (highest value accepted, its unit). ``min_<name>`` and ``max_<name>``, both included.
RANGES = {
    "duration": (10 * 86_400.0, "seconds"), "cost": (1_000_000.0, "USD"), "latency": (3_600_000.0, "ms"),
    **{name: (top, unit) for name, (_, top, unit) in quality.FILTERS.items()},
}


def number_range(args: Mapping[str, str], name: str) -> tuple[float | None, float | None]:
    """``min_<name>``/``max_<name>``: finite numbers from 0 to the range's highest, min not above max."""
    top, unit = RANGES[name]
    bounds = []
    for side in ("min", "max"):
        key, raw = f"{side}_{name}", args.get(f"{side}_{name}")
        if raw is None or raw == "":
            bounds.append(None)
            continue
        if not _NUMBER.fullmatch(raw):
            raise BadParam(key, f"must be a number ({unit})")
        value = float(raw)
        if not 0 <= value <= top:  # False for NaN too
            raise BadParam(key, f"must be a number ({unit}) from 0 to {top:g}")
        bounds.append(value)
    lo, hi = bounds
    if lo is not None and hi is not None and hi < lo:
        raise BadParam(f"max_{name}", f"must not be below min_{name}")
    return lo, hi


def call_filter(args: Mapping[str, str]) -> CallFilter:
    start, end = period(args)
    return CallFilter(
        status=text(args, "status", 32),
        direction=choice(args, "direction", ("inbound", "outbound")),
        start=start,
        end=end,
        query=_query(text(args, "q")),
        provider_mode=text(args, "provider_mode", 32),
        tag=text(args, "tag", MAX_TAG_LENGTH),
        has_notes=flag(args, "has_notes"),
        duration=number_range(args, "duration"),
        cost=number_range(args, "cost"),
        latency=number_range(args, "latency"),
        provider=text(args, "provider", 64),
        model=text(args, "model", 128),
        **{name: number_range(args, name) for name in quality.FILTERS},
    )


#: History's orders, newest first: ``ended_at`` (as the calls finished; the default, the dashboard's
#: table's order, Patter's, and read straight from the newest calls) and ``started_at`` (by start).
SORTS = ("ended_at", "started_at")


def sort(args: Mapping[str, str]) -> str:
    """``sort``: ``ended_at`` (default) or ``started_at``, newest first either way; anything else is a 400."""
    return choice(args, "sort", SORTS) or SORTS[0]
