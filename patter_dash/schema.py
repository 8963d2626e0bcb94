"""Schema: the declared type of every event field that any part of patter-dash reads.

One typed model per event type (and Patter's ``CallMetrics``, ``TurnMetrics``,
``CostBreakdown``, ``LatencyBreakdown``), checked at ingest by msgspec in C.
An event that does not fit is refused whole, naming the field; fields not
declared here are only kept and given back, never read, so any cleaned JSON
is fine there. The models validate; the event keeps its cleaned dict, so
unknown fields survive as they came (msgspec's structs would drop them).

Why msgspec: the check of Patter's turn payload costs about 1 µs and the
error names the field's path (``bench/experiments/schema_check.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

#: Limits on untrusted input; documented in the README.
MAX_ID_LENGTH = 256
MAX_SHORT_TEXT = 64

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Short = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT)]
Label = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
#: Milliseconds, seconds, dollars, counts: never negative.
Amount = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
#: Epoch seconds; the store judges whether a clock is sane (see store.sane_time).
Time = float


class _Model(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Unknown fields are ignored here and kept by the event's own dict."""


class LatencyBreakdown(_Model):
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
    stt: Amount | None = None
    tts: Amount | None = None
    llm: Amount | None = None
    telephony: Amount | None = None
    total: Amount | None = None
    llm_cached_savings: Amount | None = None


class TurnMetrics(_Model):
    turn_index: Count | None = None
    user_text: str | None = None
    agent_text: str | None = None
    latency: LatencyBreakdown | None = None
    stt_audio_seconds: Amount | None = None
    tts_characters: Count | None = None
    timestamp: Time | None = None


class Line(_Model):
    """One transcript line, as Patter's ``conversation_history`` holds it."""

    role: Short | None = None
    text: str | None = None
    timestamp: Time | None = None


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
    pass


class CallStart(_Common):
    pass


class Transcript(_Common, kw_only=True):
    role: Short
    text: str
    history: list[Line] | None = None


class Turn(_Common, kw_only=True):
    turn: TurnMetrics
    cost_so_far: CostBreakdown | None = None
    llm_ttft_ms: Amount | None = None


class CallStatus(_Common, kw_only=True):
    status: Short


class CallEnd(_Common):
    ended_at: Time | None = None
    transcript: list[Line] | None = None
    conversation_history: list[Line] | None = None
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
