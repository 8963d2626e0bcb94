"""Providers: each STT, LLM and TTS provider + model, telephony provider and voice mode, compared over history.

One row per (kind, provider, model) of the finished calls matching a filter,
over all retained history (memory, then the journal a page at a time, through
:meth:`~patter_dash.core.history.History.batches`): calls, minutes, cost per
minute and per call, failure rate, and exact P50/P95/P99 of the stage's
latency and of the response latency.

Percentiles are exact, over calls (each call one value, as the overview's
P95): nearest rank on the sorted values, the definition :meth:`Call.latency_ms`
uses for a call's own turns. A call's value is its mean: for a stage,
:meth:`Call.stage_ms`; for the response, :meth:`Call.latency_ms` (Patter's
agent_response_ms, else total_ms). Money and minutes are summed as integers
(nano-dollars, ms; :func:`~patter_dash.core.aggregates.contribution`), so a
group's figures do not depend on the order calls are read in.

Reading 100,000 calls is seconds of Python: the pass runs outside the store's
lock on references (disk pages are read on a native thread), pauses every
few milliseconds (:class:`~patter_dash.core.cooperative.Slices`) so other requests run, and its answer is cached until the
totals change (the aggregates' ``version``), a call is deleted, or another
filter is asked; requests asking the same thing meanwhile wait for the one pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from ..model.records import FAILED_STATUSES, Call
from .aggregates import COMPONENTS, NANO, contribution
from .cooperative import Slices, let_others_run
from .store import CallFilter

if TYPE_CHECKING:
    from .pipeline import Pipeline

#: Row kinds, in the order rows are given; each with the call fields naming its provider and model,
#: the latency stage it owns (None: no stage of its own) and the cost component it is charged.
KINDS: dict[str, tuple[str, str | None, str | None, str]] = {
    "stt": ("stt_provider", "stt_model", "stt_ms", "stt"),
    "llm": ("llm_provider", "llm_model", "llm_ms", "llm"),
    "tts": ("tts_provider", "tts_model", "tts_ms", "tts"),
    "telephony": ("telephony_provider", None, None, "telephony"),
    "mode": ("provider_mode", None, None, "total"),
}
PERCENTILES = (50, 95, 99)
#: Answers kept per pipeline (a few filters at once: the UI's periods).
CACHED = 16

_COMPONENT = {name: COMPONENTS.index(name) for name in COMPONENTS}


def nearest_rank(ordered: list[float], pct: int) -> float:
    """The ``pct``-th percentile of sorted values, nearest rank (as :meth:`Call.latency_ms`): the ⌈pct·n/100⌉-th.

    In integers: ``pct / 100 * n`` in floats can land a hair above a whole rank (and take the next value).
    """
    return ordered[max(0, -(-pct * len(ordered) // 100) - 1)]


class _Group:
    __slots__ = ("calls", "duration_ms", "cost", "failed", "stage", "response")

    def __init__(self) -> None:
        self.calls = 0
        self.duration_ms = 0
        self.cost = 0  # nano-dollars of the kind's component
        self.failed = 0
        self.stage: list[float] = []
        self.response: list[float] = []


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def compute(calls: Iterable[list[Call]]) -> tuple[list[dict[str, Any]], int]:
    """The rows for every call of ``calls`` (batches), and how many calls were read."""
    groups: dict[tuple[str, str | None, str | None], _Group] = {}
    seen = 0
    slices = Slices()
    for batch in calls:
        for call in batch:
            seen += 1
            slices.pause_if_due()
            duration_ms, cost, response = contribution(call)
            failed = call.status in FAILED_STATUSES
            meta = call.meta_value
            for kind, (provider_key, model_key, stage_key, component) in KINDS.items():
                key = (kind, _label(meta(provider_key)), _label(meta(model_key)) if model_key else None)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group()
                group.calls += 1
                group.duration_ms += duration_ms
                group.cost += cost[_COMPONENT[component]]
                group.failed += failed
                if response is not None and response > 0:
                    group.response.append(response)
                if stage_key is not None and (stage := call.stage_ms(stage_key)) is not None:
                    group.stage.append(stage)
    rows = []
    order = list(KINDS)
    for key in sorted(groups, key=lambda k: (order.index(k[0]), -groups[k].calls, k[1] or "\uffff", k[2] or "")):
        rows.append(_row(key, groups[key]))
        let_others_run()  # a sort of up to every call's value per row
    return rows, seen


def _spread(values: list[float]) -> dict[str, Any]:
    values.sort()
    figures: dict[str, Any] = {f"p{p}_ms": round(nearest_rank(values, p), 1) if values else None for p in PERCENTILES}
    figures["calls"] = len(values)
    return figures


def _row(key: tuple[str, str | None, str | None], group: _Group) -> dict[str, Any]:
    kind, provider, model = key
    minutes = group.duration_ms / 60_000
    return {
        "kind": kind,
        "provider": provider,
        "model": model,
        "calls": group.calls,
        "minutes": round(minutes, 3),
        "cost": round(group.cost / NANO, 6),
        "cost_per_minute": round(group.cost / NANO / minutes, 6) if group.duration_ms else None,
        "cost_per_call": round(group.cost / NANO / group.calls, 6),
        "failed": group.failed,
        "failure_rate": round(group.failed / group.calls, 6),
        "latency": _spread(group.stage) if KINDS[kind][2] is not None else None,
        "response_latency": _spread(group.response),
    }


class _Cache:
    """One pipeline's answers, and the passes under way (so a second request waits instead of reading again)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.running: dict[tuple[Any, ...], threading.Event] = {}


_caches: WeakKeyDictionary[Pipeline, _Cache] = WeakKeyDictionary()
_caches_lock = threading.Lock()


def compare(pipeline: Pipeline, flt: CallFilter) -> dict[str, Any]:
    """The ``/analytics/providers`` body's ``data`` for the finished calls matching ``flt``."""

    def make() -> dict[str, Any]:
        rows, seen = compute(pipeline.history.batches(flt))
        return {"period": {"from": flt.start, "to": flt.end}, "calls_analyzed": seen, "providers": rows}

    return once(pipeline, "providers", flt, make)


def once(pipeline: Pipeline, kind: str, flt: CallFilter, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``'s answer for this ``kind`` of pass and filter, computed once per state of the history.

    Cached until the totals change (the aggregates' ``version``) or a call is
    deleted; a request asking what another is computing waits for that pass.
    """
    with _caches_lock:
        cache = _caches.get(pipeline) or _caches.setdefault(pipeline, _Cache())
    store = pipeline.store
    with store.lock:  # every change counted in this version is whole
        key = (kind, store.aggregates.version, pipeline.deletions, flt)
    while True:
        with cache.lock:
            answer = cache.answers.get(key)
            if answer is not None:
                return answer
            running = cache.running.get(key)
            if running is None:
                running = cache.running[key] = threading.Event()
                break
        running.wait()
        with cache.lock:
            answer = cache.answers.get(key)
        if answer is not None:
            return answer
        # The pass failed for the one that ran it (it answered the error): try ourselves.
    try:
        answer = make()
        with cache.lock:
            if len(cache.answers) >= CACHED:
                cache.answers.clear()
            cache.answers[key] = answer
        return answer
    finally:
        with cache.lock:
            del cache.running[key]
        running.set()
