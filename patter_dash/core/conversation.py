"""Conversation: the quality figures of the finished calls matching a filter, totalled (``/analytics/quality``).

Over all retained history, as the provider comparison reads it (memory, then
the journal a page at a time; paused every few milliseconds; cached until the
totals change, see :func:`~patter_dash.core.providers.once`). Each call counts
with its summary's ``quality`` block (model/quality.py): from its recording
once measured, else from its events. A mean is over the calls that have the
figure (talk-over only over measured recordings; first word only over calls
that report it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..model import quality
from ..model.records import Call
from .cooperative import Slices
from .providers import once
from .store import CallFilter

if TYPE_CHECKING:
    from .pipeline import Pipeline


def compute(calls: Iterable[list[Call]]) -> dict[str, Any]:
    """Totals, means and counts of the quality figures of ``calls`` (batches)."""
    sums = dict.fromkeys(quality.FIELDS, 0)
    having = dict.fromkeys(quality.FIELDS, 0)
    seen = recorded = with_dead_air = interrupted = with_failures = 0
    slices = Slices()
    for batch in calls:
        for call in batch:
            slices.pause_if_due()
            seen += 1
            figures = quality.figures(call)
            recorded += figures["source"] == "recording"
            for name in quality.FIELDS:
                value = figures[name]
                if value is not None:
                    sums[name] += value
                    having[name] += 1
            with_dead_air += bool(figures["dead_air_count"])
            interrupted += bool(figures["interruptions"])
            with_failures += bool(figures["tool_failures"])
    means = {f"avg_{name}": round(sums[name] / having[name], 1) if having[name] else None for name in quality.FIELDS}
    return {
        "calls_analyzed": seen,
        "from_recordings": recorded,
        "totals": {name: sums[name] for name in quality.FIELDS if name != "first_word_ms"},
        "averages": means,
        "calls_with": {"dead_air": with_dead_air, "interruptions": interrupted, "tool_failures": with_failures},
        "tool_failure_rate": round(sums["tool_failures"] / sums["tool_calls"], 6) if sums["tool_calls"] else None,
        "dead_air_threshold_ms": quality.DEAD_AIR_MS,
    }


def totals(pipeline: Pipeline, flt: CallFilter) -> dict[str, Any]:
    """The ``/analytics/quality`` body's ``data`` for the finished calls matching ``flt``."""

    def make() -> dict[str, Any]:
        return {"period": {"from": flt.start, "to": flt.end}, **compute(pipeline.history.batches(flt))}

    return once(pipeline, "quality", flt, make)
