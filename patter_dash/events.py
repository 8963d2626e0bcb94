"""Events: what the voice runtime reports, checked and normalised.

This module owns the event vocabulary (the six types), the ingest envelope
``{"type", "data", "id"}``, and the rules that turn untrusted input (Patter's
frozen dataclasses, its dicts, or JSON from another process) into a clean
:class:`Event`. It never touches the store; :mod:`patter_dash.store` applies
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

EVENT_TYPES: tuple[str, ...] = (
    "call_initiated",
    "call_start",
    "transcript",
    "turn",
    "call_status",
    "call_end",
)

#: Limits on untrusted input; documented in the README.
MAX_ID_LENGTH = 256
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
        return {str(k): _walk(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValidationError("unsupported value", [{"field": path, "error": f"unsupported type {type(value).__name__}"}])


# ------------------------------------------------------------- validation

_NUMBER = (int, float)  # exact types: bool is not a number here


class _Checker:
    """Collects every field error of one event, so the client sees them all."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def fail(self, field: str, error: str) -> None:
        self.details.append({"field": field, "error": error})

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> None:
        if key not in obj or obj[key] is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return
        if not isinstance(obj[key], str):
            self.fail(f"{path}.{key}", "must be a string")

    def number(self, obj: Mapping[str, Any], key: str, path: str) -> None:
        value = obj.get(key)
        if value is not None and type(value) not in _NUMBER:
            self.fail(f"{path}.{key}", "must be a number or null")

    def numbers(self, obj: Mapping[str, Any], path: str, keys: tuple[str, ...] | None = None) -> None:
        """Every value (or every one of ``keys``) a number or null; fast when they are."""
        values = obj.values() if keys is None else (obj.get(k) for k in keys)
        if all(v is None or type(v) in _NUMBER for v in values):
            return
        for key in obj if keys is None else keys:
            self.number(obj, key, path)

    def mapping(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> Mapping[str, Any] | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return None
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", "must be an object")
            return None
        return value

    def lines(self, obj: Mapping[str, Any], key: str, path: str) -> None:
        value = obj.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", "must be a list")
            return
        for i, line in enumerate(value):
            where = f"{path}.{key}[{i}]"
            if not isinstance(line, Mapping):
                self.fail(where, "must be an object")
                continue
            self.string(line, "role", where)
            self.string(line, "text", where)
            self.number(line, "timestamp", where)


COST_KEYS = ("stt", "tts", "llm", "telephony", "total", "llm_cached_savings")
LATENCY_KEYS = (
    "stt_ms",
    "llm_ms",
    "tts_ms",
    "total_ms",
    "user_speech_duration_ms",
    "llm_ttft_ms",
    "llm_total_ms",
    "endpoint_ms",
    "bargein_ms",
    "tts_total_ms",
    "agent_response_ms",
)
PERCENTILE_KEYS = ("latency_avg", "latency_p50", "latency_p90", "latency_p95", "latency_p99")


def _check_turn(c: _Checker, turn: Mapping[str, Any], path: str) -> None:
    for key in ("turn_index", "timestamp", "stt_audio_seconds", "tts_characters"):
        c.number(turn, key, path)
    c.string(turn, "user_text", path)
    c.string(turn, "agent_text", path)
    latency = c.mapping(turn, "latency", path)
    if latency is not None:
        c.numbers(latency, f"{path}.latency")


def _check_metrics(c: _Checker, metrics: Mapping[str, Any], path: str) -> None:
    c.number(metrics, "duration_seconds", path)
    cost = c.mapping(metrics, "cost", path)
    if cost is not None:
        c.numbers(cost, f"{path}.cost", COST_KEYS)
    for name in PERCENTILE_KEYS:
        block = c.mapping(metrics, name, path)
        if block is not None:
            c.numbers(block, f"{path}.{name}")
    turns = metrics.get("turns")
    if turns is not None:
        if not isinstance(turns, list):
            c.fail(f"{path}.turns", "must be a list")
        else:
            for i, turn in enumerate(turns):
                if isinstance(turn, Mapping):
                    _check_turn(c, turn, f"{path}.turns[{i}]")
                else:
                    c.fail(f"{path}.turns[{i}]", "must be an object")
    for key in ("provider_mode", "stt_provider", "tts_provider", "llm_provider", "telephony_provider"):
        c.string(metrics, key, path)


def _check(event_type: str, data: Mapping[str, Any]) -> list[dict[str, str]]:
    c = _Checker()
    for key in ("caller", "callee", "direction", "status"):
        c.string(data, key, "data")
    c.number(data, "timestamp", "data")
    c.number(data, "started_at", "data")
    if event_type == "transcript":
        c.string(data, "role", "data", required=True)
        c.string(data, "text", "data", required=True)
    elif event_type == "turn":
        turn = c.mapping(data, "turn", "data", required=True)
        if turn is not None:
            _check_turn(c, turn, "data.turn")
        cost = c.mapping(data, "cost_so_far", "data")
        if cost is not None:
            c.numbers(cost, "data.cost_so_far", COST_KEYS)
    elif event_type == "call_status":
        c.string(data, "status", "data", required=True)
    elif event_type == "call_end":
        c.number(data, "ended_at", "data")
        c.lines(data, "transcript", "data")
        c.lines(data, "conversation_history", "data")
        metrics = c.mapping(data, "metrics", "data")
        if metrics is not None:
            _check_metrics(c, metrics, "data.metrics")
    return c.details


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
    if event_type == "transcript":
        # Patter repeats the whole conversation on every line; storing it per
        # line would make a call's memory quadratic in its length.
        clean.pop("history", None)
    call_id = _call_id_of(clean)
    details = []
    if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_ID_LENGTH:
        details.append({"field": "data.call_id", "error": f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"})
    details += _check(event_type, clean)
    if details:
        raise ValidationError("invalid event data", details)
    return Event(event_type, call_id, clean, key, time.time() if now is None else now)


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
