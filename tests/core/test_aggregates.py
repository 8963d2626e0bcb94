"""Aggregates (patter_dash/core/aggregates.py): exact totals under add and remove, hour/day buckets, P95.

Calls are built the way the store builds them (``make_event`` → ``CallStore.apply``), then fed to a
bare :class:`Aggregates`. The store-level property test (any interleaving, any date range) is in
tests/core/test_store.py.
"""

from __future__ import annotations

import math
import random

import pytest

from patter_dash.core.aggregates import DAY, HOUR, Aggregates, Totals, latency_bin
from patter_dash.core.store import CallStore
from patter_dash.model.records import Call
from tests.core.test_store import apply

BASE = 1_790_000_000 - 1_790_000_000 % DAY  # a UTC midnight


def make_calls(specs: list[tuple[float, float, float | None]], status: str = "completed") -> list[Call]:
    """(start, total cost, latency ms or None) → finished calls of 60 s, as the store holds them."""
    store = CallStore(max_completed=len(specs) + 1)
    calls = []
    for i, (start, cost, latency) in enumerate(specs):
        metrics = {"duration_seconds": 60.0, "cost": {"stt": cost / 4, "tts": cost / 4, "llm": cost / 4,
                                                      "telephony": cost / 4, "total": cost}}
        if latency is not None:
            metrics["latency_avg"] = {"agent_response_ms": latency}
        if status != "completed":
            apply(store, "call_status", {"call_id": f"C{i}", "status": status}, now=start)
        calls.append(apply(store, "call_end", {"call_id": f"C{i}", "ended_at": start + 60, "metrics": metrics},
                           now=start + 61))
    assert all(c.started_at == start for c, (start, _, _) in zip(calls, specs))
    return calls


def recomputed(calls: list[Call]) -> Totals:
    totals = Totals()
    for call in calls:
        totals.add(call)
    return totals


def test_adding_then_removing_in_any_order_leaves_exactly_nothing() -> None:
    rng = random.Random(7)
    # 0.1, 0.2, 0.3 ... are not exact in binary: float sums would drift; nano-dollar integers do not
    calls = make_calls([(BASE + i * 97.0, round(0.1 * (i % 7 + 1), 6), 300.0 + i) for i in range(60)])
    aggregates = Aggregates()
    for call in calls:
        aggregates.add(call)
    assert aggregates.total.view()["total_cost"] == round(sum(c.cost_value("total") for c in calls), 6)
    version = aggregates.version
    for call in rng.sample(calls, len(calls)):
        aggregates.remove(call)
    assert aggregates.version == version + len(calls)  # every change bumps it (readers cache on it)
    empty = aggregates.total
    assert (empty.calls, empty.duration_ms, empty.cost, empty.latency_us, empty.latency_n, empty.histogram) == (
        0, 0, [0] * 5, 0, 0, {})
    assert aggregates.hours == {} and aggregates.days == {} and dict(aggregates.by_status) == {}
    assert empty.view() == Totals().view()


def test_totals_after_any_mix_of_adds_and_removes_equal_a_recomputation() -> None:
    rng = random.Random(11)
    calls = make_calls([(BASE + rng.uniform(0, 3 * DAY), rng.uniform(0, 2), rng.choice([None, rng.uniform(1, 4000)]))
                        for _ in range(80)])
    aggregates = Aggregates()
    held: list[Call] = []
    for step in range(300):
        free = [c for c in calls if c not in held]
        if held and (not free or rng.random() < 0.4):
            aggregates.remove(held.pop(rng.randrange(len(held))))
        else:
            held.append(rng.choice(free))
            aggregates.add(held[-1])
        if step % 50 == 0:
            assert aggregates.total.view() == recomputed(held).view()
    assert aggregates.total.view() == recomputed(held).view()
    assert sum(b.calls for b in aggregates.hours.values()) == len(held)
    assert sum(t.calls for t in aggregates.days.values()) == len(held)
    assert {h: b.members for h, b in aggregates.hours.items()} == {
        h: {c for c in held if int(c.started_at // HOUR) * HOUR == h} for h in aggregates.hours}


def test_buckets_are_utc_hours_and_days_of_the_call_start() -> None:
    starts = [BASE + 10, BASE + HOUR - 1, BASE + HOUR, BASE + DAY + 5 * HOUR + 30]
    calls = make_calls([(s, 1.0, 100.0) for s in starts])
    aggregates = Aggregates()
    for call in calls:
        aggregates.add(call)
    assert {h: b.calls for h, b in aggregates.hours.items()} == {BASE: 2, BASE + HOUR: 1, BASE + DAY + 5 * HOUR: 1}
    assert {d: t.calls for d, t in aggregates.days.items()} == {BASE: 3, BASE + DAY: 1}
    assert aggregates.span() == (BASE, BASE + DAY + 6 * HOUR)
    assert [(t, p.calls) for t, p in aggregates.series(None, None, HOUR)] == [
        (BASE, 2), (BASE + HOUR, 1), (BASE + DAY + 5 * HOUR, 1)]
    assert [(t, p.calls) for t, p in aggregates.series(None, None, DAY)] == [(BASE, 3), (BASE + DAY, 1)]


@pytest.mark.parametrize("start, end", [
    (None, None), (BASE, BASE + DAY), (BASE + 1800, BASE + 3 * HOUR + 1), (BASE + 59, None), (None, BASE + DAY + 1),
    (BASE + HOUR - 1, BASE + HOUR), (BASE + 5 * DAY, BASE + 6 * DAY),
])
def test_a_date_range_equals_a_recomputation_of_the_calls_inside_it(start: float | None, end: float | None) -> None:
    rng = random.Random(3)
    calls = make_calls([(BASE + rng.uniform(0, 2 * DAY), rng.uniform(0, 1), rng.uniform(1, 2000)) for _ in range(200)])
    aggregates = Aggregates()
    for call in calls:
        aggregates.add(call)
    inside = [c for c in calls if (start is None or c.started_at >= start) and (end is None or c.started_at < end)]
    assert aggregates.between(start, end).view() == recomputed(inside).view()
    for width in (HOUR, DAY):
        assert sum(p.calls for _, p in aggregates.series(start, end, width)) == len(inside)
    expected: dict[str, int] = {}
    for call in inside:
        expected[call.status] = expected.get(call.status, 0) + 1
    assert aggregates.status_counts(start, end) == expected


def test_status_counts_follow_each_calls_final_status() -> None:
    aggregates = Aggregates()
    for call in make_calls([(BASE, 0.0, None)] * 2) + make_calls([(BASE + 5, 0.0, None)], status="no-answer"):
        aggregates.add(call)
    assert dict(aggregates.by_status) == {"completed": 2, "no-answer": 1}


def test_p95_is_read_from_1_percent_bins_within_1_percent() -> None:
    latencies = [float(ms) for ms in range(1, 1001)]  # 1..1000 ms: the true P95 is 950 ms
    totals = recomputed(make_calls([(BASE + i, 0.0, ms) for i, ms in enumerate(latencies)]))
    assert totals.latency_n == 1000 and totals.view()["avg_latency_ms"] == 500.5
    assert totals.p95_ms() == pytest.approx(950, rel=0.01)
    rng = random.Random(5)
    skewed = sorted(rng.lognormvariate(6, 1) for _ in range(500))
    true_p95 = skewed[math.ceil(0.95 * len(skewed)) - 1]
    assert recomputed(make_calls([(BASE + i, 0.0, ms) for i, ms in enumerate(skewed)])).p95_ms() == pytest.approx(
        true_p95, rel=0.01)


def test_p95_is_none_without_latencies_and_exact_for_one_call() -> None:
    assert recomputed(make_calls([(BASE, 1.0, None)])).p95_ms() is None
    assert recomputed(make_calls([(BASE, 1.0, 512.6)])).p95_ms() == 512.6


def test_latency_bins_are_1_percent_wide_and_ordered() -> None:
    assert latency_bin(0.5) == 0 and latency_bin(1.0) == 1
    for ms in (1.5, 10.0, 333.3, 12_345.0):
        assert latency_bin(ms) <= latency_bin(ms * 1.0099) <= latency_bin(ms) + 1
        assert latency_bin(ms * 1.0101) >= latency_bin(ms) + 1
