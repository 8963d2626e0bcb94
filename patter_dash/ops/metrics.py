"""Metrics: one dashboard's numbers in the Prometheus exposition format (``GET /metrics``).

Built with ``prometheus_client``, one :class:`~prometheus_client.CollectorRegistry`
per app (two dashboards in one process never share a series), and custom
collectors that read the pipeline, the store and its aggregates when scraped,
so the ingest path pays nothing for most of them. Two kinds of number:

* ``patter_dash_history_*`` **gauges**: the retained history exactly as the
  Analytics page's "All" period shows it (calls by status, duration, cost by
  component, average and P95 response latency). They go down when calls are
  deleted, purged by retention or (without a journal) evicted from memory,
  and they include history read back at start: gauges, not counters.
* **counters and histograms** of what *this process* saw complete since it
  started: monotonic, reset by a restart (``rate()`` and ``increase()`` handle
  that). A call is counted once, when it *settles*: when its ``call_end`` is
  applied (it carries Patter's ``CallMetrics``: providers, models, final
  turns and cost), or :data:`SETTLE_AFTER` seconds after it completed without
  one (a no-answer, a timeout). Counting is O(1) per call plus O(1) per
  turn (about 20 µs for a call of six turns), on the event thread, under the
  store's lock (:class:`Completions`). Changes after that (a late turn or
  ``call_end``) are not counted again.

Label values that come from callers (status, direction, provider, model,
voice mode) are bounded: each metric keeps at most :data:`LABEL_CAP` label
sets made of caller text, and counts the rest under ``other``; a value is cut
at :data:`MAX_LABEL` characters. Call ids and phone numbers are never labels.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..core.aggregates import COMPONENTS, NANO, contribution
from ..core.pipeline import Pipeline
from ..core.store import IDLE_STATUS
from ..model.events import LATENCY_KEYS
from ..model.records import LATENCY, TERMINAL_STATUSES, Call

log = logging.getLogger("patter_dash")

#: Label sets made of caller text that one metric keeps; later new ones are counted under ``other``.
LABEL_CAP = 50
OTHER = "other"
#: Characters of caller text kept in a label value: real provider and model names are shorter, and
#: each value is repeated on every bucket line of a histogram (256 would make a scrape megabytes).
MAX_LABEL = 64
#: A label the call did not give (no provider named, no direction).
UNKNOWN = "unknown"
#: Seconds a call that completed without its call_end waits for it before it is counted.
#: Twilio's status callback and Patter's call_end for one call arrive within about a second.
SETTLE_AFTER = 10.0
NAMESPACE = "patter_dash"

# Buckets in seconds. Voice agents answer in about 0.3-2 s; a stage takes tens to hundreds of ms.
RESPONSE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
STAGE_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
#: The stages of a turn with a latency of their own: (stage, index in a packed latency block).
STAGES = (("stt", LATENCY_KEYS.index("stt_ms")), ("llm", LATENCY_KEYS.index("llm_ms")), ("tts", LATENCY_KEYS.index("tts_ms")))
_LATENCY = struct.Struct(f"{len(LATENCY_KEYS)}d")  # a turn's packed latency block (records.pack)
_AGENT_RESPONSE, _TOTAL = LATENCY_KEYS.index("agent_response_ms"), LATENCY_KEYS.index("total_ms")
#: Cost components besides the total, in the order of :data:`~patter_dash.core.aggregates.COMPONENTS`.
PARTS = COMPONENTS[:-1]
#: Statuses and directions the code itself gives or Patter sends: they never count against the cap.
_KNOWN_CALLS = frozenset(
    (status, direction)
    for status in (*TERMINAL_STATUSES, IDLE_STATUS, "in-progress")
    for direction in ("inbound", "outbound", UNKNOWN)
)


def _label(value: Any) -> str:
    """A caller's text as a label value: cut to :data:`MAX_LABEL` characters, ``unknown`` when not given."""
    return value[:MAX_LABEL] if isinstance(value, str) and value else UNKNOWN


class LabelSets:
    """The label sets one metric may use: the first :data:`LABEL_CAP` distinct ones, then ``other``.

    Values come from callers: unbounded, each new provider string would make
    a series (and a hostile client a million). The first ``fixed`` labels of a
    key are the code's own (a stage name) and are kept when the rest folds.
    Sets in ``always`` never count against the cap.
    """

    __slots__ = ("always", "cap", "fixed", "known")

    def __init__(self, cap: int = LABEL_CAP, *, fixed: int = 0, always: frozenset[tuple[str, ...]] = frozenset()) -> None:
        self.cap = cap
        self.fixed = fixed
        self.known: set[tuple[str, ...]] = set()
        self.always = always

    def fold(self, key: tuple[str, ...]) -> tuple[str, ...]:
        if key in self.known or key in self.always:
            return key
        if len(self.known) < self.cap:
            self.known.add(key)
            return key
        return (*key[: self.fixed], *(OTHER,) * (len(key) - self.fixed))


class Histogram:
    """Bucket counts and sums per label set, kept as plain lists (an observation is a bisect and two adds)."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: label set -> [count in bucket 0, ..., count above the last bound, sum]
        self.series: dict[tuple[str, ...], list[float]] = {}

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """The counts of one label set (made at its first use): ``[bucket 0, ..., above the last bound, sum]``."""
        cell = self.series.get(key)
        if cell is None:
            cell = self.series[key] = [0] * (len(self.bounds) + 1) + [0.0]
        return cell

    def observe(self, key: tuple[str, ...], value: float) -> None:
        cell = self.cell(key)
        cell[bisect_left(self.bounds, value)] += 1
        cell[-1] += value

    def drop_empty(self, key: tuple[str, ...]) -> None:
        """Forget a label set that was made but never observed (no empty series in the output)."""
        cell = self.series.get(key)
        if cell is not None and not any(cell):
            del self.series[key]

    def copy(self) -> dict[tuple[str, ...], list[float]]:
        return {key: list(cell) for key, cell in self.series.items()}


class Completions:
    """Counters and histograms of the calls this process saw complete, each counted once.

    :meth:`watch` is the store's watcher (:data:`~patter_dash.core.store.Watcher`):
    it runs on the event thread under the store's lock, so :meth:`snapshot`
    (under the same lock) reads a consistent state.
    """

    def __init__(self, cap: int = LABEL_CAP, settle_after: float = SETTLE_AFTER) -> None:
        self.cap = cap
        self.settle_after = settle_after
        self._pid: int | None = None
        self.reset()

    def reset(self) -> None:
        self.pending: OrderedDict[str, tuple[float, Call]] = OrderedDict()
        self.calls: dict[tuple[str, ...], int] = {}
        self.cost = [0] * len(COMPONENTS)  # nano-dollars: exact sums, as the aggregates keep them
        self.duration = Histogram(DURATION_BUCKETS)
        self.call_latency = Histogram(RESPONSE_BUCKETS)
        self.turn_latency = Histogram(RESPONSE_BUCKETS)
        self.stage_latency = Histogram(STAGE_BUCKETS)
        self.call_labels = LabelSets(self.cap, always=_KNOWN_CALLS)
        self.turn_labels = LabelSets(self.cap)
        self.stage_labels = LabelSets(self.cap, fixed=1)
        self.failures = 0

    def started(self) -> None:
        """The event thread started in this process (``Pipeline.on_start``): a forked child starts from zero."""
        pid = os.getpid()
        if self._pid is not None and self._pid != pid:
            self.reset()
        self._pid = pid

    def watch(self, call: Call, completed: bool, ended: bool) -> None:
        try:
            now = time.monotonic()
            if ended:
                entry = self.pending.pop(call.call_id, None)
                if completed or entry is not None:
                    # Its call_end: providers, final turns and cost are known now. A call_end for a call
                    # settled before (or completed before this process started) is not counted again.
                    self._settle(call)
            elif completed:
                old = self.pending.pop(call.call_id, None)
                if old is not None:  # the id was deleted and used again while the first call waited
                    self._settle(old[1])
                self.pending[call.call_id] = (now, call)
            self.settle_due(now)
        except Exception:  # metrics must never cost an event: count, log once in a while, go on
            self.failures += 1
            if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                log.exception("patter-dash: metrics could not count a call (%d failures so far)", self.failures)

    def settle_due(self, now: float) -> None:
        """Count the calls that completed without a call_end long enough ago (oldest first: O(1) each)."""
        pending = self.pending
        cutoff = now - self.settle_after
        while pending:
            at, call = next(iter(pending.values()))
            if at > cutoff:
                return
            pending.popitem(last=False)
            self._settle(call)

    def _settle(self, call: Call) -> None:
        key = self.call_labels.fold((_label(call.status), _label(call.direction)))
        self.calls[key] = self.calls.get(key, 0) + 1
        duration_ms, cost, latency = contribution(call)  # what the aggregates count for it
        self.cost = [a + b for a, b in zip(self.cost, cost)]
        self.duration.observe((), duration_ms / 1000)
        if latency is not None and latency > 0:
            self.call_latency.observe((), latency / 1000)
        if call.turns:
            self._observe_turns(call)

    def _observe_turns(self, call: Call) -> None:
        """Each turn's response and stage latencies, by provider and model: one unpack and a few adds a turn."""
        meta = call.meta_value
        answer = self.turn_labels.fold((_label(meta("provider_mode")), _label(meta("llm_provider")), _label(meta("llm_model"))))
        stages = [
            (index, self.stage_labels.fold((stage, _label(meta(f"{stage}_provider")), _label(meta(f"{stage}_model")))))
            for stage, index in STAGES
        ]
        answers = self.turn_latency.cell(answer)
        cells: list[list[float] | None] = [None] * len(stages)
        response_bounds, stage_bounds = RESPONSE_BUCKETS, STAGE_BUCKETS
        for turn in call.turns:
            packed = turn[LATENCY]
            if packed is None:
                continue
            values = _LATENCY.unpack(packed)
            # What the caller waited: agent_response_ms, else total_ms (records.response_ms). NaN > 0 is False.
            ms = values[_AGENT_RESPONSE]
            if not ms > 0:
                ms = values[_TOTAL]
            if ms > 0:
                seconds = ms / 1000
                answers[bisect_left(response_bounds, seconds)] += 1
                answers[-1] += seconds
            for n, (index, stage) in enumerate(stages):
                ms = values[index]
                if ms > 0:  # 0 is Patter's "not measured" (the greeting, a Realtime turn's STT/TTS); NaN is absent
                    cell = cells[n]
                    if cell is None:
                        cell = cells[n] = self.stage_latency.cell(stage)
                    seconds = ms / 1000
                    cell[bisect_left(stage_bounds, seconds)] += 1
                    cell[-1] += seconds
        if not answers[-1] and not any(answers[:-1]):
            self.turn_latency.drop_empty(answer)

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": len(self.pending),
            "calls": dict(self.calls),
            "cost": list(self.cost),
            "duration": self.duration.copy(),
            "call_latency": self.call_latency.copy(),
            "turn_latency": self.turn_latency.copy(),
            "stage_latency": self.stage_latency.copy(),
            "failures": self.failures,
        }


def _histogram(name: str, doc: str, labels: list[str], bounds: tuple[float, ...],
               series: dict[tuple[str, ...], list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key in sorted(series):
        cell = series[key]
        buckets, total = [], 0
        for bound, n in zip((*map(floatToGoString, bounds), "+Inf"), cell[:-1]):
            total += n
            buckets.append((bound, total))
        family.add_metric(list(key), buckets, cell[-1])
    return family


def _counter(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(f"{NAMESPACE}_{name}", doc, value=value, labels=labels)


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, value=value, labels=labels)


def _fold_counts(counts: dict[str, int], cap: int) -> dict[str, int]:
    """The ``cap`` largest counts by name, the rest summed under ``other`` (a gauge may regroup between scrapes)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:cap])
    rest = sum(n for _, n in ranked[cap:])
    if rest:
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return kept


class Metrics:
    """One dashboard's registry: what ``GET /metrics`` serves."""

    def __init__(self, pipeline: Pipeline, *, cap: int = LABEL_CAP, process: bool = True) -> None:
        self.pipeline = pipeline
        self.cap = cap
        self.completions = Completions(cap)
        pipeline.watchers.append(self.completions.watch)
        pipeline.on_start.append(self.completions.started)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.collect))
        if process:  # process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux /proc)
            ProcessCollector(registry=self.registry)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type, in the format the scraper's ``Accept`` asks for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # ---------------------------------------------------------------- collect

    def collect(self) -> Iterator[Any]:
        pipeline = self.pipeline
        store = pipeline.store
        with store.lock:  # the event thread counts under it: one consistent reading
            self.completions.settle_due(time.monotonic())
            seen = self.completions.snapshot()
            totals = store.aggregates.total
            history = {
                "calls": totals.calls, "duration_ms": totals.duration_ms, "cost": list(totals.cost),
                "latency_us": totals.latency_us, "latency_n": totals.latency_n, "p95_ms": totals.p95_ms(),
                "by_status": dict(store.aggregates.by_status),
            }
        health = pipeline.health()
        yield from self._history(history)
        yield from self._seen(seen)
        yield from self._state(health)

    def _history(self, h: dict[str, Any]) -> Iterator[Any]:
        calls = _gauge("history_calls", "Completed calls in retained history by status (the Analytics page's All period; "
                       "goes down when calls are deleted, purged or evicted from memory).", labels=["status"])
        for status, n in sorted(_fold_counts(h["by_status"], self.cap).items()):
            calls.add_metric([status], n)
        yield calls
        yield _gauge("history_duration_seconds", "Summed duration of the calls in retained history.", h["duration_ms"] / 1000)
        yield _gauge("history_cost_usd", "Total cost of the calls in retained history (Patter's cost.total).", h["cost"][-1] / NANO)
        parts = _gauge("history_component_cost_usd", "Cost of the calls in retained history by component.", labels=["component"])
        for name, nano in zip(PARTS, h["cost"]):
            parts.add_metric([name], nano / NANO)
        yield parts
        n = h["latency_n"]
        yield _gauge("history_calls_with_latency", "Calls in retained history with a measured response latency.", n)
        yield _gauge("history_avg_response_latency_seconds",
                     "Mean over retained calls of each call's average response latency (agent_response_ms, else total_ms).",
                     h["latency_us"] / n / 1e6 if n else 0.0)
        p95 = _gauge("history_p95_response_latency_seconds",
                     "P95 over retained calls of each call's average response latency (within 1 %; no sample before one).")
        if h["p95_ms"] is not None:
            p95.add_metric([], h["p95_ms"] / 1000)
        yield p95

    def _seen(self, s: dict[str, Any]) -> Iterator[Any]:
        calls = _counter("calls_completed_total", "Calls this process saw complete, by status and direction, counted once "
                         "when settled (at call_end, or 10 s after completing without one).", labels=["status", "direction"])
        for key in sorted(s["calls"]):
            calls.add_metric(list(key), s["calls"][key])
        yield calls
        yield _gauge("calls_settling", "Calls completed without a call_end yet, waiting up to 10 s for it before they are counted.",
                     s["pending"])
        yield _counter("call_cost_usd_total", "Total cost (Patter's cost.total) of the calls counted in calls_completed_total.",
                       s["cost"][-1] / NANO)
        parts = _counter("call_component_cost_usd_total", "Cost by component of the calls counted in calls_completed_total.",
                         labels=["component"])
        for name, nano in zip(PARTS, s["cost"]):
            parts.add_metric([name], nano / NANO)
        yield parts
        yield _histogram(f"{NAMESPACE}_call_duration_seconds", "Duration of the calls counted in calls_completed_total.",
                         [], DURATION_BUCKETS, s["duration"])
        yield _histogram(f"{NAMESPACE}_call_response_latency_seconds",
                         "Each counted call's average response latency, as the Analytics page averages it "
                         "(agent_response_ms, else total_ms).", [], RESPONSE_BUCKETS, s["call_latency"])
        yield _histogram(f"{NAMESPACE}_turn_response_latency_seconds",
                         "Response latency of each turn of the counted calls (agent_response_ms, else total_ms), "
                         "by voice mode and LLM.", ["mode", "provider", "model"], RESPONSE_BUCKETS, s["turn_latency"])
        yield _histogram(f"{NAMESPACE}_turn_stage_latency_seconds",
                         "Latency of each turn's STT, LLM and TTS stage (stt_ms, llm_ms, tts_ms; 0 = not measured, "
                         "left out) by the stage's provider and model.", ["stage", "provider", "model"], STAGE_BUCKETS,
                         s["stage_latency"])
        yield _counter("metrics_failures_total", "Calls the metrics could not count (a bug; logged).", s["failures"])

    def _state(self, health: dict[str, Any]) -> Iterator[Any]:
        pipeline = self.pipeline
        events = health["events"]
        outcomes = _counter("ingest_events_total", "Events by outcome: accepted (applied), duplicate (an id or content "
                            "already held), rejected (invalid; a refused HTTP body or WebSocket message counts once), "
                            "dropped (the in-process queue was full), error (failed to apply; a bug).", labels=["outcome"])
        for outcome, key in (("accepted", "accepted"), ("duplicate", "duplicates"), ("rejected", "rejected"),
                             ("dropped", "dropped"), ("error", "errors")):
            outcomes.add_metric([outcome], events[key])
        yield outcomes
        yield _counter("ingest_busy_total", "Ingest requests refused with 503 (queue full, or history not writable).", events["busy"])
        queue = health["queue"]
        yield _gauge("ingest_queue_depth", "Events waiting for the event thread.", queue["depth"])
        yield _gauge("ingest_queue_capacity", "Events the queue holds at most (PATTER_DASH_QUEUE_SIZE).", queue["capacity"])
        store = health["store"]
        yield _gauge("active_calls", "Live calls.", store["active"])
        yield _gauge("calls_in_memory", "Completed calls held in memory.", store["completed"])
        yield _gauge("calls_in_memory_max", "Completed calls held in memory at most (PATTER_DASH_MAX_CALLS).", store["max_completed"])
        yield _counter("calls_evicted_total", "Completed calls that left memory for newer ones (with a journal they stay "
                       "on disk and in history; without, they leave history).", store["evicted"])
        yield _counter("idle_calls_closed_total", "Live calls closed as timeout to make room (PATTER_DASH_MAX_ACTIVE_CALLS).",
                       store["evicted_idle"])
        subscribers = health["subscribers"]
        yield _gauge("live_subscribers", "SSE and WebSocket readers of live events.", subscribers["count"])
        yield _gauge("live_subscribers_max", "Live readers allowed at most (PATTER_DASH_MAX_SUBSCRIBERS).", subscribers["max"])
        yield _counter("live_subscriber_overflows_total", "Live readers cut off for falling too far behind.", subscribers["overflows"])
        yield _gauge("start_time_seconds", "When this dashboard's pipeline was made (Unix time).", pipeline.started_at)
        history = health["history"]
        info = _gauge("history_info", "Where history is kept: memory, or sqlite (PATTER_DASH_DB).", labels=["mode"])
        info.add_metric([history["mode"]], 1)
        yield info
        state = _gauge("history_status", "1 for the current state of history writing: ok, or degraded (the journal "
                       "cannot write; ingest answers 503).", labels=["status"])
        current = history.get("status") or "ok"
        for status in ("ok", "degraded"):
            state.add_metric([status], 1 if status == current else 0)
        yield state
        if history["mode"] == "memory":
            return
        yield _gauge("journal_lag_events", "Events fed in-process and not yet on disk.", history["lag"])
        yield _gauge("journal_size_bytes", "The history file and its write-ahead log.", history["bytes"])
        yield _counter("journal_commits_total", "Transactions written.", history["commits"])
        yield _counter("journal_events_written_total", "Events written.", history["events"])
        yield _counter("journal_write_failures_total", "Writes that failed (disk full, read-only).", history["failures"])
        yield _gauge("journal_last_commit_seconds", "How long the last transaction took.", history["last_commit_ms"] / 1000)
        yield _gauge("journal_restore_seconds", "How long reading history back took at start.", history["restore_seconds"])


class _Collector(Collector):
    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        return self._collect()
