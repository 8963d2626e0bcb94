"""Quality: a call's conversation-quality figures, from its recording when measured, else from its events.

The figures (the summary's ``quality`` block, the exports' columns, the
quality filters and the analytics' averages):

- ``talk_over_ms``: both channels speaking at once (recording only; null from events);
- ``dead_air_ms`` / ``dead_air_count``: silences longer than :data:`DEAD_AIR_MS`;
- ``interruptions``: the caller barging in on the agent;
- ``first_word_ms``: the agent's time to its first word;
- ``tool_calls`` / ``tool_failures``: tool invocations and those that failed (always from events).

From events (every call): interruptions are the barge-ins of
:func:`~patter_dash.model.records.timeline` (a turn whose agent text is
``[interrupted]`` or that carries ``latency.bargein_ms``); dead air is a turn
whose response latency (``agent_response_ms``, else ``total_ms``) passes the
threshold, counted for its whole wait; the first word is the first turn's
response latency (the greeting's, when the agent speaks first).

From a recording (``Call.quality``, measured by :mod:`patter_dash.core.speech`
and stored in the call), the five figures it can measure replace those.

A tool call failed when its result is an object with a non-empty ``error``
(Patter returns ``{"error": "...", "fallback": true}`` as the result's JSON
text for a handler that raised or timed out, an unknown tool, a webhook that
failed, an open circuit breaker); a line with only Patter's text (``call_end``'s
transcript) failed when the text after ``→`` is such an object.
"""

from __future__ import annotations

import json
from typing import Any

from .records import LATENCY, TURN_INDEX, Call, response_ms, timeline

#: A silence longer than this (ms) is dead air: in a recording, both channels quiet; from events, a response this slow.
DEAD_AIR_MS = 1500
#: The figures, in the order the exports' columns give them.
FIELDS = ("talk_over_ms", "dead_air_ms", "dead_air_count", "interruptions", "first_word_ms", "tool_calls", "tool_failures")
#: What a recording measures (the rest come from events either way).
RECORDED = ("talk_over_ms", "dead_air_ms", "dead_air_count", "interruptions", "first_word_ms")
#: The quality range filters: name → (the figure, highest value accepted, unit); ``min_<name>``/``max_<name>``.
FILTERS = {
    "interruptions": ("interruptions", 1_000_000.0, "count"),
    "dead_air": ("dead_air_ms", 864_000_000.0, "ms"),
    "talk_over": ("talk_over_ms", 864_000_000.0, "ms"),
    "tool_failures": ("tool_failures", 1_000_000.0, "count"),
}
#: The history file's columns for those filters (journal/sqlite.py, journal/postgres.py), in this order.
COLUMNS = tuple(figure for figure, _, _ in FILTERS.values())
_ARROW = "→ "


def _error_object(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("error"))
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("{") and '"error"' in text):
            return False  # most results are not objects naming an error: no parse
        try:
            parsed = json.loads(text)
        except ValueError:
            return False
        return isinstance(parsed, dict) and bool(parsed.get("error"))
    return False


def tool_failed(entry: dict[str, Any]) -> bool:
    """Whether a timeline ``tool_call`` entry failed (see the module's docstring)."""
    if entry.get("result") is not None:
        return _error_object(entry["result"])
    text = entry.get("text") or ""
    if entry.get("name") is None and _ARROW in text:
        shown = text.split(_ARROW, 1)[1].strip()
        # Patter shows 200 characters of the result: a cut object no longer parses, but begins with its error.
        return _error_object(shown) or (shown.startswith('{"error": "') and not shown.startswith('{"error": ""'))
    return False


def from_events(call: Call) -> dict[str, Any]:
    """The figures the call's turns and tool lines give (talk-over: null, events cannot tell)."""
    entries = timeline(call)
    tools = [e for e in entries if e["kind"] == "tool_call"]
    slow = [ms for ms in map(response_ms, call.turns) if ms is not None and ms > DEAD_AIR_MS]
    first_word = None
    timed = [t for t in call.turns if t[LATENCY] is not None]
    if timed:
        first = min(timed, key=lambda t: (t[TURN_INDEX] is None, t[TURN_INDEX] if isinstance(t[TURN_INDEX], int) else 0))
        first_word = response_ms(first)
    return {
        "talk_over_ms": None,
        "dead_air_ms": round(sum(slow)),
        "dead_air_count": len(slow),
        "interruptions": sum(1 for e in entries if e["kind"] == "barge_in"),
        "first_word_ms": None if first_word is None else round(first_word),
        "tool_calls": len(tools),
        "tool_failures": sum(1 for e in tools if tool_failed(e)),
        "source": "events",
    }


def figures(call: Call) -> dict[str, Any]:
    """The summary's ``quality`` block: the recording's figures where it was measured, the events' otherwise."""
    view = from_events(call)
    measured = call.quality
    if measured:
        for key in RECORDED:
            view[key] = measured.get(key)
        view["source"] = "recording"
    return view


def columns(call: Call) -> tuple[Any, ...]:
    """The filter columns' values (:data:`COLUMNS`), None where the figure is unknown."""
    view = figures(call)
    return tuple(view[name] for name in COLUMNS)


def measured(figures: dict[str, Any]) -> dict[str, Any]:
    """What a recording's analysis keeps in the call: its five figures and how it was measured, nothing else."""
    kept = {k: figures.get(k) for k in RECORDED}
    for key in ("method", "duration_ms"):
        if key in figures:
            kept[key] = figures[key]
    return kept
