"""Events: what the voice runtime reports, checked and normalised.

This module owns the ingest envelope ``{"type", "data", "id"}`` and the rules
that turn untrusted input (Patter's frozen dataclasses, its dicts, or JSON from
another process) into a clean :class:`Event`: strict JSON, cleaned text and
numbers, then the declared types of :mod:`patter_dash.schema`. It never touches the store; :mod:`patter_dash.store` applies
events, :mod:`patter_dash.pipeline` moves them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .schema import EVENT_TYPES, MAX_ID_LENGTH, field_error

#: Limits on untrusted input; documented in the README.
MAX_TEXT_LENGTH = 20_000
TRUNCATION_MARK = "…[truncated]"


class ValidationError(ValueError):
    """An event or envelope that cannot be accepted; ``details`` names the fields."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


@dataclasses.dataclass(slots=True)
class Event:
    """One accepted event. ``seq`` is set by the event thread when it is applied."""

    type: str
    call_id: str
    data: dict[str, Any]
    key: str | None = None
    received_at: float = 0.0
    seq: int = 0


# --------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing numbers, bounded nesting."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValidationError("body is not valid UTF-8") from None
    except ValueError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None
    return value


# ------------------------------------------------------------- sanitising


_SURROGATE = re.compile("[\ud800-\udfff]")
#: In ``json.dumps`` output: an integer of 16+ digits, or a float written with a
#: positive exponent (Python does so from 1e16 up); either may exceed MAX_NUMBER.
_HUGE_NUMBER = re.compile(r"\d{16}|e\+\d")
#: Bigger numbers lose precision as doubles and overflow sums of nano-dollars.
MAX_NUMBER = 2**53


def _clean_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be written as UTF-8 by any reader.
        value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) > MAX_TEXT_LENGTH:
        value = value[: MAX_TEXT_LENGTH - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return value


def _clean_key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return _clean_text(key)[:MAX_ID_LENGTH]
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # what json.dumps itself makes of such a key
    raise ValidationError("unsupported key", [{"field": path, "error": f"keys must be strings, got {type(key).__name__}"}])


def _plain(value: Any) -> Any:
    """json.dumps fallback: Patter's frozen dataclasses become dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(type(value).__name__)


def sanitize(value: Any, *, copy: bool = True) -> Any:
    """``value`` as plain JSON types, cleaned, or raise naming the bad field.

    Dataclasses (Patter's frozen models) become dicts, tuples become lists,
    strings lose NULs and lone surrogates and are capped in length, numbers
    must be finite. The common case (nothing to clean) runs in C through one
    ``json.dumps``; only input that needs cleaning, or is invalid, takes the
    slow walk that names the field. ``copy=False`` keeps already-parsed JSON
    as is when it is clean.
    """
    try:
        text = json.dumps(value, default=_plain, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise ValidationError("nested too deeply", [{"field": "data", "error": "nested too deeply"}]) from None
    except (ValueError, TypeError):
        return _walk(value, "data")  # names the NaN or the unsupported value
    if "\\u0000" in text or len(text) > MAX_TEXT_LENGTH or not _is_utf8(text) or _HUGE_NUMBER.search(text):
        return _walk(value, "data")
    if copy or not isinstance(value, (dict, list)):
        return json.loads(text)
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("numbers must be finite", [{"field": path, "error": "NaN and Infinity are not allowed"}])
        if abs(value) > MAX_NUMBER:
            raise ValidationError("number out of range", [{"field": path, "error": f"must be within ±{MAX_NUMBER}"}])
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = _plain(value)
    if isinstance(value, Mapping):
        # Keys are text from the same caller: cleaned like values (NUL, lone
        # surrogates, length), and a non-string key becomes its JSON spelling.
        return {_clean_key(k, path): _walk(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValidationError("unsupported value", [{"field": path, "error": f"unsupported type {type(value).__name__}"}])


# ------------------------------------------------------------- validation


def _call_id_of(data: Mapping[str, Any]) -> Any:
    call_id = data.get("call_id")
    if call_id is None and isinstance(data.get("metrics"), Mapping):
        call_id = data["metrics"].get("call_id")
    return call_id


def make_event(event_type: Any, data: Any, key: Any = None, *, now: float | None = None, copy: bool = True) -> Event:
    """Validate and normalise one event, or raise :class:`ValidationError`.

    ``copy=False`` is for freshly parsed JSON that nobody else holds.
    """
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ValidationError(
            "unknown event type",
            [{"field": "type", "error": f"must be one of {', '.join(EVENT_TYPES)}"}],
        )
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH):
        raise ValidationError("bad event id", [{"field": "id", "error": f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"}])
    clean = sanitize(data, copy=copy)
    if not isinstance(clean, dict):
        raise ValidationError("data must be an object", [{"field": "data", "error": "must be an object"}])
    call_id = _call_id_of(clean)
    error = field_error(event_type, clean)
    if error is None and (not isinstance(call_id, str) or not call_id):
        error = {"field": "data.call_id", "error": f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"}
    if error is not None:
        raise ValidationError("invalid event data", [error])
    if event_type == "transcript":
        _stamp_from_history(clean)
    return Event(event_type, call_id, clean, key, time.time() if now is None else now)


def _stamp_from_history(data: dict[str, Any]) -> None:
    """Give a Patter line its own timestamp, then drop the history.

    Patter's ``on_transcript`` sends no timestamp but repeats the whole
    conversation, this line last and stamped. The stamp is what tells a line
    delivered twice from a caller who said the same words again; the history
    itself, kept per line, would make a call's memory quadratic in its length.
    """
    history = data.pop("history", None)
    if data.get("timestamp") is None and history:
        last = history[-1]
        if last.get("role") == data["role"] and last.get("text") == data["text"] and last.get("timestamp") is not None:
            data["timestamp"] = last["timestamp"]


def event_from_envelope(envelope: Any, path: str = "") -> Event:
    """An ingest envelope ``{"type", "data", "id"}`` → :class:`Event`."""
    if not isinstance(envelope, Mapping):
        raise ValidationError("event must be a JSON object", [{"field": path or "body", "error": "must be an object with type and data"}])
    try:
        return make_event(envelope.get("type"), envelope.get("data"), envelope.get("id"), copy=False)
    except ValidationError as exc:
        if path:
            for d in exc.details:
                d["field"] = f"{path}.{d['field']}"
        raise


def events_from_body(body: Any) -> list[Event]:
    """One envelope or ``{"events": [...]}``; a batch is validated whole."""
    if isinstance(body, Mapping) and "events" in body:
        batch = body["events"]
        if not isinstance(batch, list) or not batch:
            raise ValidationError("events must be a non-empty list", [{"field": "events", "error": "must be a non-empty list"}])
        events, details = [], []
        for i, envelope in enumerate(batch):
            try:
                events.append(event_from_envelope(envelope, f"events[{i}]"))
            except ValidationError as exc:
                details += exc.details or [{"field": f"events[{i}]", "error": exc.message}]
        if details:
            raise ValidationError("invalid events in batch; none were applied", details)
        return events
    return [event_from_envelope(body)]


def event_from_patter_notify(body: Any) -> Event:
    """The body Patter 0.7.0's ``notify_dashboard`` POSTs, classified its way."""
    if not isinstance(body, Mapping):
        raise ValidationError("body must be a JSON object", [{"field": "body", "error": "must be an object"}])
    if body.get("status") == "initiated":
        event_type = "call_initiated"
    elif body.get("ended_at") is not None:
        event_type = "call_end"
    else:
        event_type = "call_start"
    return make_event(event_type, body, copy=False)


# ------------------------------------------------------ Patter callbacks

Feed = Callable[..., bool]


def patter_callbacks(feed: Feed) -> dict[str, Callable[[Any], Awaitable[None]]]:
    """The four coroutine callbacks Patter's ``serve()`` awaits, wired to ``feed``.

    Patter awaits them on the call's event loop, so they only enqueue.
    """

    async def on_call_start(data: Any) -> None:
        feed("call_start", data)

    async def on_transcript(data: Any) -> None:
        feed("transcript", data)

    async def on_metrics(data: Any) -> None:
        feed("turn", data)

    async def on_call_end(data: Any) -> None:
        feed("call_end", data)

    return {
        "on_call_start": on_call_start,
        "on_transcript": on_transcript,
        "on_metrics": on_metrics,
        "on_call_end": on_call_end,
    }
