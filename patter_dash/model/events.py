"""Events: the six event types and the ingest envelope, as typed models (the one schema source).

Every event field that any part of patter-dash reads is declared here, with
Patter's own shapes (``CallMetrics``, ``TurnMetrics``, ``CostBreakdown``,
``LatencyBreakdown``), and checked at ingest by msgspec in C. An event that
does not fit is refused whole, naming the field; fields not declared here
are only kept and given back, never read, so any cleaned JSON is fine there.
The models validate; the :class:`Event` keeps its cleaned dict, so unknown
fields survive as they came (msgspec's structs would drop them).

Why msgspec: the check of Patter's turn payload costs about 1 µs and the
error names the field's path (``bench/experiments/schema_check.py``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union

import msgspec

from .clean import MAX_NUMBER, MAX_TEXT_LENGTH, ValidationError, clean_text, sanitize

#: Limits on untrusted input; documented in the README.
MAX_ID_LENGTH = 256
MAX_SHORT_TEXT = 64

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Short = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT)]
Label = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
#: Free text is cut, not refused (clean.sanitize), so it has no max_length here.
Text = Annotated[
    str,
    msgspec.Meta(description=f"Cut to {MAX_TEXT_LENGTH:,} characters (ending in …[truncated]); NUL removed, lone surrogates become U+FFFD."),
]
# The ±2**53 bound is enforced by clean.sanitize before these models run; it is
# stated here so the generated schema documents it.
#: Milliseconds, seconds, dollars, counts: never negative.
Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_NUMBER)]
#: A cost component of one call, in USD. Far above any call's, and what analytics keep in nano-dollars
#: (64-bit integers in the history, summed per hour) with room to spare.
MAX_COST = 1_000_000
Cost = Annotated[float, msgspec.Meta(ge=0, le=MAX_COST)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_NUMBER)]
#: Epoch seconds; the store judges whether a clock is sane (see store.sane_time).
Time = Annotated[float, msgspec.Meta(ge=-MAX_NUMBER, le=MAX_NUMBER)]


class _Model(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Unknown fields are ignored here and kept by the event's own dict."""


class LatencyBreakdown(_Model):
    """Patter's LatencyBreakdown, in milliseconds; unknown fields are kept."""

    stt_ms: Amount | None = None
    llm_ms: Amount | None = None
    tts_ms: Amount | None = None
    total_ms: Amount | None = None
    user_speech_duration_ms: Amount | None = None
    llm_ttft_ms: Amount | None = None
    llm_total_ms: Amount | None = None
    endpoint_ms: Amount | None = None
    bargein_ms: Amount | None = None
    tts_total_ms: Amount | None = None
    agent_response_ms: Amount | None = None


class CostBreakdown(_Model):
    """Patter's CostBreakdown, in USD; unknown fields are kept."""

    stt: Cost | None = None
    tts: Cost | None = None
    llm: Cost | None = None
    telephony: Cost | None = None
    total: Cost | None = None
    llm_cached_savings: Amount | None = None


class TurnMetrics(_Model):
    """Patter's TurnMetrics: one turn's texts and latencies; unknown fields are kept."""

    turn_index: Count | None = None
    user_text: Text | None = None
    agent_text: Text | None = None
    latency: LatencyBreakdown | None = None
    stt_audio_seconds: Amount | None = None
    tts_characters: Count | None = None
    timestamp: Time | None = None


#: Patter's turn index on a transcript line (Realtime and ConvAI modes): the turn the line belongs to,
#: shared with that turn's ``TurnMetrics.turn_index``. Lines are shown in its order (user before assistant).
TurnIndex = Annotated[
    Count | None,
    msgspec.Meta(description="The turn the line belongs to (Patter's Realtime and ConvAI modes); lines are ordered by it."),
]


class Line(_Model):
    """One transcript line, as Patter's ``conversation_history`` holds it; other fields are kept with the line."""

    role: Short | None = None
    text: Text | None = None
    timestamp: Time | None = None
    turnIndex: TurnIndex = None


class _Providers(_Model):
    """Read from ``CallMetrics`` and, for clients that send them there, from the event's top level."""

    provider_mode: Short | None = None
    stt_provider: Label | None = None
    tts_provider: Label | None = None
    llm_provider: Label | None = None
    telephony_provider: Label | None = None
    stt_model: Label | None = None
    tts_model: Label | None = None
    llm_model: Label | None = None


class CallMetrics(_Providers):
    """Patter's CallMetrics for a finished call; unknown fields (context_tokens, error_code, ...) are kept."""

    call_id: Id | None = None
    duration_seconds: Amount | None = None
    turns: list[TurnMetrics] | None = None
    cost: CostBreakdown | None = None
    latency_avg: LatencyBreakdown | None = None
    latency_p50: LatencyBreakdown | None = None
    latency_p90: LatencyBreakdown | None = None
    latency_p95: LatencyBreakdown | None = None
    latency_p99: LatencyBreakdown | None = None


class _Common(_Providers):
    """Fields every event type may carry."""

    call_id: Id | None = None
    caller: Label | None = None
    callee: Label | None = None
    direction: Short | None = None
    status: Short | None = None
    timestamp: Time | None = None
    started_at: Time | None = None


class CallInitiated(_Common):
    """``data`` of ``call_initiated``: an outbound call is being placed."""


class CallStart(_Common):
    """``data`` of ``call_start`` (Patter's ``on_call_start``). It carries no timestamp: it is stamped on arrival."""


class Transcript(_Common, kw_only=True):
    """``data`` of ``transcript`` (Patter's ``on_transcript``): one line; ``history`` only lends the line its timestamp.

    Every other field (``turnIndex``, a tool line's ``tool_name``, ``tool_args``, ``tool_result``, ...) is kept with the line.
    """

    role: Short
    text: Text
    turnIndex: TurnIndex = None
    history: list[Line] | None = None


class Turn(_Common, kw_only=True):
    """``data`` of ``turn`` (Patter's ``on_metrics``): one turn's metrics and the cost so far."""

    turn: TurnMetrics
    cost_so_far: CostBreakdown | None = None
    llm_ttft_ms: Amount | None = None


class CallStatus(_Common, kw_only=True):
    """``data`` of ``call_status``: ringing, no-answer, busy, failed, canceled, completed, ..."""

    status: Short


class CallEnd(_Common):
    """``data`` of ``call_end`` (Patter's ``on_call_end``): the final transcript and CallMetrics.

    ``call_id`` may come from ``metrics.call_id`` instead.
    """

    ended_at: Time | None = None
    transcript: list[Line] | None = None
    conversation_history: Annotated[list[Line] | None, msgspec.Meta(description="Preferred over transcript.")] = None
    metrics: CallMetrics | None = None


EVENT_MODELS: dict[str, type[_Model]] = {
    "call_initiated": CallInitiated,
    "call_start": CallStart,
    "transcript": Transcript,
    "turn": Turn,
    "call_status": CallStatus,
    "call_end": CallEnd,
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)


def _envelope(event_type: str, model: type[_Model]) -> type[msgspec.Struct]:
    envelope = msgspec.defstruct(
        f"{model.__name__}Envelope",
        [
            ("data", model),
            ("id", Annotated[Id | None, msgspec.Meta(description="Optional idempotency key: a replayed id is acknowledged, not applied again.")], None),
        ],
        tag_field="type",
        tag=event_type,
        kw_only=True,
        module=__name__,
    )
    envelope.__doc__ = f"One {event_type} event."
    return envelope


#: The ingest envelope ``{"type", "data", "id"}``, one model per type. Only
#: documents: :func:`event_from_envelope` reads envelopes by hand, naming the field.
ENVELOPES: tuple[type[msgspec.Struct], ...] = tuple(_envelope(t, m) for t, m in EVENT_MODELS.items())
Envelope = Union[ENVELOPES]  # noqa: UP007 - a union built from a tuple


class Batch(msgspec.Struct):
    """Validated whole: one bad event refuses the batch and none of it is applied."""

    events: Annotated[list[Envelope], msgspec.Meta(min_length=1)]  # type: ignore[valid-type]

COST_KEYS: tuple[str, ...] = CostBreakdown.__struct_fields__
LATENCY_KEYS: tuple[str, ...] = LatencyBreakdown.__struct_fields__
PERCENTILE_KEYS: tuple[str, ...] = tuple(f for f in CallMetrics.__struct_fields__ if f.startswith("latency_"))


def field_error(event_type: str, data: Mapping[str, Any]) -> dict[str, str] | None:
    """The first field of ``data`` that does not fit its declared type, or None.

    ``data`` is already cleaned JSON (see events.sanitize).
    """
    try:
        msgspec.convert(data, EVENT_MODELS[event_type], strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        if not message:
            message, where = str(exc), "$"
        field = "data" + where.rstrip("`").removeprefix("$")
        missing = _MISSING.fullmatch(message)
        if missing:
            return {"field": f"{field}.{missing[1]}", "error": "is required"}
        return {"field": field, "error": message}
    return None


_MISSING = re.compile(r"Object missing required field `(.+)`")


# ------------------------------------------------------------- the event


@dataclass(slots=True)
class Event:
    """One accepted event. ``seq`` is set by the event thread when it is applied."""

    type: str
    call_id: str
    data: dict[str, Any]
    key: str | None = None
    received_at: float = 0.0
    seq: int = 0


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
    if key is not None:
        # Cleaned as every text is (a lone surrogate cannot even be written to the history).
        key = clean_text(key) if isinstance(key, str) else key
        if not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH:
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


def events_from_body(body: Any, pause: Callable[[], object] | None = None) -> list[Event]:
    """One envelope or ``{"events": [...]}``; a batch is validated whole.

    ``pause`` runs after each event of a batch: a server lets other requests
    in while it checks thousands (see ``core.cooperative.Slices``).
    """
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
            if pause is not None:
                pause()
        if details:
            raise ValidationError("invalid events in batch; none were applied", details)
        return events
    return [event_from_envelope(body)]
