"""Records: how one call is held in memory, and the views read from it.

A call's numbers are packed into ``bytes`` of doubles (NaN standing for
"absent") and its turns and text into tuples of atoms, which the garbage
collector stops tracking, so a stored call costs a few KB instead of the
peer's 23.7 KB of nested dicts. Fields Patter sends that are not modelled here
are kept in ``extra`` / ``meta`` (a call's, a turn's, a transcript line's) and
given back unchanged. The views (:func:`summary`, :func:`detail`,
:func:`line_view`) rebuild Patter's dict shapes for readers.
"""

from __future__ import annotations

import math
import sys
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from . import search
from .events import COST_KEYS, LATENCY_KEYS, PERCENTILE_KEYS
from .jsoncodec import dumpb

NAN = math.nan
TERMINAL_STATUSES = frozenset({"completed", "no-answer", "busy", "failed", "canceled", "cancelled"})
#: What counts as a failed call: the alerts' failure_rate rule and the providers' failure rate read this one set.
FAILED_STATUSES = frozenset({"failed", "no-answer", "busy", "timeout"})
#: Where "what the caller waited" lives in a packed latency block, in order of preference.
_RESPONSE_INDEXES = (LATENCY_KEYS.index("agent_response_ms"), LATENCY_KEYS.index("total_ms"))
PROVIDER_KEYS = ("stt_provider", "tts_provider", "llm_provider", "telephony_provider")
MODEL_KEYS = ("stt_model", "tts_model", "llm_model")


_ONE = struct.Struct("d")
_BLOCKS: dict[int, struct.Struct] = {}


def _block(n: int) -> struct.Struct:
    block = _BLOCKS.get(n)
    if block is None:
        block = _BLOCKS[n] = struct.Struct(f"{n}d")
    return block


def pack(values: Mapping[str, Any] | None, keys: tuple[str, ...]) -> bytes | None:
    """Known numeric keys → packed doubles, NaN for missing or null.

    ``bytes``, not ``array('d')``: an array is tracked by the garbage
    collector and bytes are not, and a stored call holds a dozen such blocks.
    """
    if not values:
        return None
    get = values.get
    return _block(len(keys)).pack(*[NAN if (v := get(k)) is None else v for k in keys])


def unpack(packed: bytes | None, keys: tuple[str, ...]) -> dict[str, float | None] | None:
    if packed is None:
        return None
    return {k: (None if v != v else v) for k, v in zip(keys, _block(len(keys)).unpack(packed))}


def value_at(packed: bytes, index: int) -> float:
    """One number of a packed block (NaN when absent)."""
    return _ONE.unpack_from(packed, index * 8)[0]


def intern(value: Any) -> Any:
    """One shared string object for short repeated text (providers, roles, statuses)."""
    # Providers, roles and statuses repeat across every call.
    return sys.intern(value) if isinstance(value, str) and len(value) < 64 else value


# One turn's metrics (Patter's ``TurnMetrics``) as a plain tuple:
# (turn_index, user_text, agent_text, timestamp, stt_audio_seconds, tts_characters, latency, extra).
# A tuple of strings, numbers and bytes is untracked by the garbage collector
# after its first pass; an object with slots never is, and 100,000 calls hold
# 600,000 turns. ``latency`` is a packed block, ``extra`` the unmodelled fields or None.
Turn = tuple
TURN_INDEX, USER_TEXT, AGENT_TEXT, TIMESTAMP, LATENCY, EXTRA = 0, 1, 2, 3, 6, 7
_TURN_KNOWN = frozenset({"turn_index", "user_text", "agent_text", "timestamp", "stt_audio_seconds", "tts_characters", "latency"})
_LATENCY_KNOWN = frozenset(LATENCY_KEYS)


def make_turn(data: Mapping[str, Any], texts: dict[str, str]) -> Turn:
    """A stored turn from a cleaned ``TurnMetrics`` dict; ``texts`` shares strings with the transcript."""
    get = data.get
    user = get("user_text") or ""
    agent = get("agent_text") or ""
    latency = get("latency") or None
    extra = None
    if data.keys() - _TURN_KNOWN:  # a set difference in C: most turns have nothing unmodelled
        extra = {k: v for k, v in data.items() if k not in _TURN_KNOWN}
    if latency and latency.keys() - _LATENCY_KNOWN:
        extra = {**(extra or {}), "__latency__": {k: v for k, v in latency.items() if k not in _LATENCY_KNOWN}}
    return (
        get("turn_index"), texts.setdefault(user, user), texts.setdefault(agent, agent), get("timestamp"),
        get("stt_audio_seconds"), get("tts_characters"), pack(latency, LATENCY_KEYS), extra,
    )


def response_ms(turn: Turn) -> float | None:
    """What the caller waited: agent_response_ms, else total_ms (Patter's rule)."""
    latency = turn[LATENCY]
    if latency is None:
        return None
    for index in _RESPONSE_INDEXES:
        v = value_at(latency, index)
        if v > 0:  # False for NaN too
            return v
    return None


def turn_view(turn: Turn) -> dict[str, Any]:
    """Patter's ``TurnMetrics`` dict, unknown fields given back."""
    index, user, agent, timestamp, stt_audio, tts_chars, packed, extra = turn
    latency = unpack(packed, LATENCY_KEYS) or {}
    extra = dict(extra or {})
    latency.update(extra.pop("__latency__", {}))
    return {
        "turn_index": index,
        "user_text": user,
        "agent_text": agent,
        "latency": latency,
        "stt_audio_seconds": stt_audio,
        "tts_characters": tts_chars,
        "timestamp": timestamp,
        **extra,
    }


# One transcript line as a plain tuple, for the reason turns are: (role, text, timestamp, extra).
# ``extra`` is every other field sent with the line (Patter's ``turnIndex``, a tool line's
# ``tool_name``, ``tool_args`` and ``tool_result``, ...), or None for a plain line.
Line = tuple
LINE_ROLE, LINE_TEXT, LINE_TIMESTAMP, LINE_EXTRA = 0, 1, 2, 3
#: JSON bytes of unmodelled fields one line keeps; past it, the fields that do not fit are left out
#: (the call is flagged ``extra_truncated``). They also count against the call's transcript budget.
MAX_LINE_EXTRA = 65_536
#: One shared dict for each small extra that recurs ({"turnIndex": 7} on two lines of every turn):
#: a dict costs 184 bytes, a reference 8. Never mutated; only the store's writer adds to it.
_SHARED_EXTRAS: dict[bytes, dict[str, Any]] = {}
_SHARE_BELOW = 64
_SHARED_MAX = 4096
_ROLE_RANK = {"user": 0, "assistant": 1}


def line_extra(fields: Mapping[str, Any], known: frozenset[str]) -> tuple[dict[str, Any] | None, int, bool]:
    """A line's fields that ``known`` leaves out, within :data:`MAX_LINE_EXTRA`.

    Returns the extra (None when there is none), its size in JSON bytes, and
    whether fields were left out to fit. ``fields`` is already cleaned.
    """
    if not fields.keys() - known:  # a set difference in C: most lines have nothing unmodelled
        return None, 0, False
    extra = {k: v for k, v in fields.items() if k not in known}
    encoded = dumpb(extra)
    cut = False
    if len(encoded) > MAX_LINE_EXTRA:
        # Keep the fields that fit, in the order sent: a huge tool_result does not cost the turnIndex.
        kept: dict[str, Any] = {}
        size = 2
        for k, v in extra.items():
            n = len(dumpb({k: v})) - 1  # the field and its comma
            if size + n <= MAX_LINE_EXTRA:
                kept[k] = v
                size += n
            else:
                cut = True
        if not kept:
            return None, 0, True
        extra, encoded = kept, dumpb(kept)
    if len(encoded) < _SHARE_BELOW:
        shared = _SHARED_EXTRAS.get(encoded)
        if shared is not None:
            return shared, len(encoded), cut
        if len(_SHARED_EXTRAS) < _SHARED_MAX:
            _SHARED_EXTRAS[encoded] = extra
    return extra, len(encoded), cut


def line_turn(line: Line) -> int | None:
    """The turn index the line carries (validated at ingest as a count), or None."""
    extra = line[LINE_EXTRA]
    if extra:
        index = extra.get("turnIndex")
        if type(index) is int:
            return index
    return None


def _line_order(line: Line) -> tuple[int, int]:
    return line_turn(line) or 0, _ROLE_RANK.get(line[LINE_ROLE], 2)


def ordered(lines: Sequence[Line]) -> list[Line]:
    """Lines in reading order: by ``turnIndex`` where Patter gives it, else as they arrived.

    Each run of consecutive lines that carry a turn index is sorted by (turn
    index, user before assistant before any other role), stably; a line
    without one keeps its place and ends the run. So a Realtime caller's line
    that arrives after the agent's answer to it is shown above that answer,
    and nothing moves across a line that says nothing about its turn. It is
    the order a reader gets by placing each new line above the lines just
    before it that belong after it (what the live cards do); the store keeps
    arrival order, which its re-delivery and repeat rules read.
    """
    result = list(lines)
    if not any(line[LINE_EXTRA] for line in result):
        return result
    i, n = 0, len(result)
    while i < n:
        if line_turn(result[i]) is None:
            i += 1
            continue
        j = i + 1
        while j < n and line_turn(result[j]) is not None:
            j += 1
        if j - i > 1:
            result[i:j] = sorted(result[i:j], key=_line_order)
        i = j
    return result


def line_view(line: Line) -> dict[str, Any]:
    """Patter's transcript line dict: role, text, timestamp and every other field sent with it."""
    role, text, timestamp, extra = line
    view = {"role": role, "text": text, "timestamp": timestamp}
    if extra:
        view.update(extra)
    return view


#: What a call is: the slots :mod:`~patter_dash.journal.codec` stores and copies carry.
STATE_SLOTS = (
    "call_id", "caller", "callee", "direction", "status", "started_at", "ended_at",
    "duration", "cost", "percentiles", "meta", "turns", "transcript", "extra",
    "flags", "status_history", "ended_by_end_event", "seq", "turn_mark",
    "text_chars", "dropped_lines", "last_event_at", "done", "tags", "notes", "rating", "quality",
)


class Call:
    """One call, live or finished. Mutated only by the store's writer."""

    __slots__ = (*STATE_SLOTS, "_searched")

    def __init__(self, call_id: str, started_at: float) -> None:
        self.call_id = call_id
        self.caller = ""
        self.callee = ""
        self.direction = ""
        self.status = "in-progress"
        self.started_at = started_at
        self.ended_at: float | None = None
        self.duration: float | None = None
        self.cost: bytes | None = None
        self.percentiles: tuple[bytes | None, ...] | None = None
        self.meta: dict[str, Any] | None = None  # CallMetrics' scalar fields
        self.turns: tuple[Turn, ...] = ()
        # Lines (role, text, timestamp, extra) in arrival order (:func:`ordered` gives reading
        # order). Only ever appended to or replaced whole, both atomic for readers on other threads.
        self.transcript: list[Line] = []
        self.extra: dict[str, Any] | None = None
        self.flags: tuple[str, ...] = ()
        self.status_history: tuple[tuple[str, float], ...] = ()
        self.ended_by_end_event = False
        self.seq = 0
        #: Transcript lines before this index belong to turns already recorded.
        self.turn_mark = 0
        # The store's per-call bounds: transcript characters held (text and the lines' own fields), lines refused
        # past the budget, and when the call last had an event (idle eviction).
        self.text_chars = 0
        self.dropped_lines = 0
        self.last_event_at = started_at
        #: Completion order (1, 2, ...; 0 while live): the order history lists calls in, on disk too.
        self.done = 0
        # What an operator said about the call (PATCH /api/v1/calls/{id}; model/annotations.py), not the runtime.
        self.tags: tuple[str, ...] = ()
        self.notes = ""
        self.rating: int | None = None
        #: What the call's recording measured (model/quality.py's RECORDED figures), or None: not measured.
        self.quality: dict[str, Any] | None = None
        # (what the search text was made from, the text), kept once ``q`` first tests the call: memory's
        # search folds each call once, not once a query. Not before: a call nobody searched holds no copy.
        self._searched: tuple[tuple[Any, ...], str] | None = None

    # --------------------------------------------------------- derived values

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags = (*self.flags, sys.intern(name))

    def duration_seconds(self, now: float | None = None) -> float | None:
        if self.duration is not None:
            return self.duration
        end = self.ended_at if self.ended_at is not None else now
        if end is None:
            return None
        return max(0.0, end - self.started_at)

    def cost_value(self, key: str) -> float:
        if self.cost is None:
            return 0.0
        v = value_at(self.cost, COST_KEYS.index(key))
        return 0.0 if math.isnan(v) else v

    def percentile(self, name: str) -> dict[str, float | None] | None:
        if self.percentiles is None:
            return None
        return unpack(self.percentiles[PERCENTILE_KEYS.index(name)], LATENCY_KEYS)

    def latency_ms(self, name: str = "latency_avg") -> float | None:
        """The call's response latency, Patter's way: agent_response_ms or total_ms.

        From CallMetrics when the call ended with metrics; otherwise from the
        turns seen so far (mean, or nearest-rank P95).
        """
        if self.percentiles is not None:
            block = self.percentiles[PERCENTILE_KEYS.index(name)]
            if block is None:
                return None
            for index in _RESPONSE_INDEXES:
                v = value_at(block, index)
                if v and not math.isnan(v):
                    return v
            return None
        values = [v for v in map(response_ms, self.turns) if v is not None]
        if not values:
            return None
        if name == "latency_avg":
            return sum(values) / len(values)  # every turn frame asks: no sort
        values.sort()
        pct = {"latency_p50": 50, "latency_p90": 90, "latency_p95": 95, "latency_p99": 99}[name]
        return values[max(0, math.ceil(pct / 100 * len(values)) - 1)]

    def stage_ms(self, key: str) -> float | None:
        """The call's mean latency of one stage (``stt_ms``, ``llm_ms``, ...), by :meth:`latency_ms`'s rule.

        From CallMetrics' ``latency_avg`` when the call ended with metrics;
        otherwise the mean over the turns seen. A stage of 0 ms (Patter's
        greeting turn has no STT, LLM or TTS) is not a measurement.
        """
        index = LATENCY_KEYS.index(key)
        if self.percentiles is not None:
            block = self.percentiles[PERCENTILE_KEYS.index("latency_avg")]
            v = NAN if block is None else value_at(block, index)
            return v if v > 0 else None  # False for NaN too
        values = [v for turn in self.turns if turn[LATENCY] is not None and (v := value_at(turn[LATENCY], index)) > 0]
        return sum(values) / len(values) if values else None

    def labels(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The providers (STT, LLM, TTS, telephony) and models (STT, LLM, TTS) the call names: the provider and model filters."""
        def named(keys: tuple[str, ...]) -> tuple[str, ...]:
            # A name holding the separator of the history file's label column is not a label anyone types.
            return tuple(v for v in map(self.meta_value, keys) if isinstance(v, str) and v and "\x1f" not in v)

        return named(PROVIDER_KEYS), named(MODEL_KEYS)

    def meta_value(self, key: str) -> Any:
        if self.meta and key in self.meta:
            return self.meta[key]
        if self.extra and key in self.extra:
            return self.extra[key]
        return None

    def searchable(self, found: tuple[str, ...]) -> bool:
        """Whether every search term (:func:`~patter_dash.model.search.terms`) is in one of :meth:`search_fields`."""
        transcript = self.transcript
        # Every change the store makes to a call bumps ``seq``; the rest guards changes made outside it.
        made_of = (self.seq, self.call_id, self.caller, self.callee, len(transcript),
                   transcript[-1] if transcript else None)
        kept = self._searched
        if kept is None or kept[0] != made_of:
            kept = self._searched = (made_of, self.search_text())
        return search.matches(kept[1], found)

    def search_fields(self) -> tuple[str, ...]:
        """What ``q`` looks in, as they are: id, caller, callee, their hashes (redacted numbers), each transcript line."""
        return (self.call_id, self.caller, self.callee, *self.number_hashes(), *(line[LINE_TEXT] for line in self.transcript))

    def number_hashes(self) -> tuple[str, ...]:
        """The keyed hashes of caller and callee that ``PATTER_DASH_REDACT`` keeps in place of the numbers."""
        extra = self.extra
        if not extra:
            return ()
        return tuple(h for name in ("caller_hash", "callee_hash") if isinstance(h := extra.get(name), str))

    def search_text(self) -> str:
        """:meth:`search_fields` as the journal stores and indexes them, one text.

        Fields are a line apart and no term holds a newline, so a term
        found in this text is found inside one field, as in memory.
        """
        # Folded whole, in one pass (case folding maps each character alone): a field at a time costs twice as much.
        return search.fold(search.FIELD_SEPARATOR.join(self.search_fields()))

    # ------------------------------------------------------------------ views

    def cost_dict(self) -> dict[str, float]:
        return {k: round(self.cost_value(k), 6) for k in COST_KEYS[:5]}


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


#: What a history row's ``metrics`` carries (Patter's own UI reads these); the rest is in detail.
_LIGHT_PERCENTILES = ("latency_avg", "latency_p50", "latency_p95")
_LIGHT_META = ("provider_mode", *PROVIDER_KEYS)


def metrics_view(call: Call, *, full: bool) -> dict[str, Any]:
    """Patter's ``CallMetrics`` dict, without ``turns`` (they are the record's own ``turns``).

    ``full`` adds every percentile and every other field Patter sent.
    """
    metrics: dict[str, Any] = {"call_id": call.call_id, "duration_seconds": call.duration_seconds()}
    cost = unpack(call.cost, COST_KEYS)
    metrics["cost"] = cost if cost is not None else {k: 0.0 for k in COST_KEYS}
    for name in PERCENTILE_KEYS if full else _LIGHT_PERCENTILES:
        metrics[name] = call.percentile(name)
    if call.meta:
        metrics.update(call.meta if full else {k: call.meta[k] for k in _LIGHT_META if k in call.meta})
    return metrics


_ZERO_LATENCY = {"total_ms": 0.0}


def patter_metrics(call: Call, turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The call's ``metrics`` exactly as Patter's store holds them: its ``CallMetrics``, ``turns`` included.

    Clients written against Patter read a call's turns in ``metrics.turns``
    (its ``/api/v1/calls/{id}`` and JSON export give ``asdict(CallMetrics)``).
    The turns are rebuilt from the call's own (``turns``, the views of
    ``call.turns``): a finished call's are its final ``CallMetrics.turns``, so
    no second copy is stored. None while the call is live (Patter's live
    record has no metrics) and when it was closed without a ``call_end`` (a
    terminal status, idle timeout: Patter's ``update_call_status`` moves such a
    call to history with ``metrics: None``). A ``call_end`` without CallMetrics
    gets Patter's stand-in (``record_call_end``), with the duration, cost so
    far and turns this dashboard knows.
    """
    if not call.ended_by_end_event:
        return None
    if call.percentiles is None and call.meta is None:
        return {
            "duration_seconds": call.duration_seconds(),
            "turns": turns,
            "cost": unpack(call.cost, COST_KEYS) or {k: 0.0 for k in COST_KEYS[:5]},
            **{name: dict(_ZERO_LATENCY) for name in PERCENTILE_KEYS},
            "provider_mode": "",
        }
    metrics = metrics_view(call, full=True)
    metrics["turns"] = turns
    return metrics


def summary(call: Call, now: float, *, with_metrics: bool = True) -> dict[str, Any]:
    """The light view: everything the history table shows, no per-turn arrays.

    ``metrics`` (Patter's CallMetrics shape, for Patter clients) is left out of
    live events, where every byte is sent to every subscriber.
    """
    from .quality import figures  # here: quality reads the timeline this module defines

    meta = call.meta_value
    return {
        "call_id": call.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "direction": call.direction,
        "status": call.status,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "duration_seconds": _round(call.duration_seconds(now), 3),
        "cost": call.cost_dict(),
        "latency_avg_ms": _round(call.latency_ms("latency_avg")),
        "latency_p95_ms": _round(call.latency_ms("latency_p95")),
        "provider_mode": meta("provider_mode") or "",
        "providers": {k.removesuffix("_provider"): meta(k) or "" for k in PROVIDER_KEYS},
        "models": {k.removesuffix("_model"): meta(k) or "" for k in MODEL_KEYS},
        "turn_count": len(call.turns),
        "error_code": code if isinstance(code := meta("error_code"), str) else "",
        "flags": list(call.flags),
        "tags": list(call.tags),
        "notes": call.notes,
        "rating": call.rating,
        "quality": figures(call),
        **({"metrics": metrics_view(call, full=False)} if with_metrics else {}),
    }


def card_fields(call: Call, *, turns: bool) -> dict[str, Any]:
    """What a line or a turn can change on a live call's card: a fraction of :func:`summary`.

    A line can change the status only through flags (``transcript_truncated``,
    ``clock_skew``); a turn also moves the turn count, the latency and the cost.
    """
    fields: dict[str, Any] = {"call_id": call.call_id, "status": call.status, "flags": list(call.flags)}
    if turns:
        fields["turn_count"] = len(call.turns)
        fields["latency_avg_ms"] = _round(call.latency_ms("latency_avg"))
        fields["cost"] = call.cost_dict()
    return fields


def transcript_view(call: Call) -> list[dict[str, Any]]:
    return [line_view(line) for line in ordered(call.transcript)]


_BARGEIN_INDEX = LATENCY_KEYS.index("bargein_ms")
#: Patter's marker of a turn the caller interrupted (TurnMetrics.agent_text).
INTERRUPTED = "[interrupted]"


def _tool_entry(line: Line) -> dict[str, Any]:
    extra = line[LINE_EXTRA] or {}
    return {
        "kind": "tool_call", "at": line[LINE_TIMESTAMP], "name": extra.get("tool_name"),
        "arguments": extra.get("tool_args"), "result": extra.get("tool_result"), "text": line[LINE_TEXT],
    }


def timeline(call: Call) -> list[dict[str, Any]]:
    """What happened besides speech, in time order: tool calls, barge-ins, the error code.

    Read from what every path stores (callbacks' tool lines and turns, notify's
    call_end, imported logs), so it is the same whichever way the call came.
    Patter sends a tool invocation twice (the call with ``tool_result`` null, then
    the result): the result completes the call of the same tool still open, else
    stands alone. A tool line without Patter's fields (``call_end``'s transcript
    holds role and text only) is an entry with its text and no name.
    """
    entries: list[dict[str, Any]] = []
    open_calls: dict[Any, list[dict[str, Any]]] = {}
    for line in call.transcript:
        if line[LINE_ROLE] != "tool":
            continue
        entry = _tool_entry(line)
        name = entry["name"]
        if entry["result"] is not None and name is not None:
            waiting = open_calls.get(name)
            if waiting:
                first = waiting.pop(0)
                first["result"] = entry["result"]
                first["result_at"] = entry["at"]
                continue
        entries.append(entry)
        if entry["result"] is None and name is not None:
            open_calls.setdefault(name, []).append(entry)
    for turn in call.turns:
        latency = turn[LATENCY]
        bargein = None if latency is None else value_at(latency, _BARGEIN_INDEX)
        bargein = None if bargein is None or math.isnan(bargein) else bargein
        if turn[AGENT_TEXT] == INTERRUPTED or bargein is not None:
            entries.append({"kind": "barge_in", "at": turn[TIMESTAMP], "turn_index": turn[TURN_INDEX], "bargein_ms": bargein})
    code = call.meta_value("error_code")
    if isinstance(code, str) and code:
        entries.append({"kind": "error", "at": call.ended_at, "error_code": code})
    entries.sort(key=lambda e: (e["at"] is None, e["at"] or 0.0))  # stable: a tool's call stays before its result
    return entries


def search_match(call: Call, query: str) -> dict[str, Any] | None:
    """A ``q`` row's first transcript line (reading order, as the detail lists it) that holds a term, or None."""
    return search.first_match(ordered(call.transcript), search.terms(query), LINE_TEXT, LINE_ROLE)


def detail(call: Call, now: float) -> dict[str, Any]:
    """The full record: transcript, every turn, unknown fields, and ``metrics`` as Patter gives them (:func:`patter_metrics`)."""
    view = summary(call, now, with_metrics=False)
    turns = [turn_view(t) for t in call.turns]
    view["metrics"] = patter_metrics(call, turns)  # Patter's readers find the turns there; ours at the top
    view["transcript"] = transcript_view(call)
    view["turns"] = turns
    view["status_history"] = [{"status": s, "at": at} for s, at in call.status_history]
    view["dropped_lines"] = call.dropped_lines
    view["timeline"] = timeline(call)
    if call.extra:
        view["extra"] = call.extra
    return view
