"""Aggregates: running totals over completed calls, kept exact under eviction.

Every completed call is added once and subtracted when it is evicted or
changed, so no read scans the store. Money, minutes and latency sums are held
as integers (nano-dollars, milliseconds, microseconds) so that adding and
removing the same call leaves no floating-point residue. P95 latency comes
from a log-scale histogram with 1 % wide bins (reported within 0.5 %).
Hour buckets (UTC, keyed by call start) hold their own totals and their calls,
so a date range sums whole days (kept too), then whole hours, and scans only
the calls of the two partial edge hours.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ..model.records import Call

COMPONENTS = ("stt", "tts", "llm", "telephony", "total")
NANO = 1_000_000_000
HOUR = 3600
DAY = 86_400
_LOG_BASE = math.log(1.01)


def latency_bin(ms: float) -> int:
    return 0 if ms < 1 else int(math.log(ms) / _LOG_BASE) + 1


#: The most one call adds to a total (ms, nano-dollars, latency µs): the history keeps these in 64-bit
#: integers and sums them per hour. Validation keeps real values far below (model/events.py MAX_COST);
#: this bounds what came in before it did, or by another path.
MAX_PER_CALL = 2**53

#: What one call adds: duration in ms, cost components in nano-units, latency in ms (or None).
Numbers = tuple[int, list[int], float | None]


def contribution(call: Call) -> Numbers:
    """What one call adds to a total: duration in ms, cost components in nano-units, latency.

    Computed once per change; the call counts in three totals (all, its hour, its day).
    """
    return (
        min(round((call.duration_seconds() or 0.0) * 1000), MAX_PER_CALL),
        [min(round(call.cost_value(key) * NANO), MAX_PER_CALL) for key in COMPONENTS],
        call.latency_ms(),
    )


class Totals:
    """Additive sums for a set of completed calls."""

    __slots__ = ("calls", "duration_ms", "cost", "latency_us", "latency_n", "histogram")

    def __init__(self) -> None:
        self.calls = 0
        self.duration_ms = 0
        self.cost = [0] * len(COMPONENTS)
        self.latency_us = 0
        self.latency_n = 0
        self.histogram: dict[int, list[int]] = {}  # bin -> [count, sum in µs]

    def add(self, call: Call | None, sign: int = 1, numbers: Numbers | None = None) -> None:
        duration_ms, cost, latency = numbers or contribution(call)  # type: ignore[arg-type]
        self.calls += sign
        self.duration_ms += sign * duration_ms
        self.cost = [a + sign * b for a, b in zip(self.cost, cost)]
        if latency is not None and latency > 0:
            us = round(latency * 1000)
            self.latency_us += sign * us
            self.latency_n += sign
            b = latency_bin(latency)
            cell = self.histogram.setdefault(b, [0, 0])
            cell[0] += sign
            cell[1] += sign * us
            if not cell[0]:
                del self.histogram[b]

    def merge(self, other: Totals) -> None:
        self.calls += other.calls
        self.duration_ms += other.duration_ms
        self.cost = [a + b for a, b in zip(self.cost, other.cost)]
        self.latency_us += other.latency_us
        self.latency_n += other.latency_n
        for b, (n, us) in other.histogram.items():
            cell = self.histogram.setdefault(b, [0, 0])
            cell[0] += n
            cell[1] += us

    def p95_ms(self) -> float | None:
        if not self.latency_n:
            return None
        rank = math.ceil(0.95 * self.latency_n)
        seen = 0
        for b in sorted(self.histogram):
            n, us = self.histogram[b]
            seen += n
            if seen >= rank:
                return round(us / n / 1000, 1)
        return None  # pragma: no cover - counts always reach the rank

    def costs(self) -> dict[str, float]:
        return {k: round(v / NANO, 6) for k, v in zip(COMPONENTS, self.cost)}

    def view(self) -> dict[str, Any]:
        costs = self.costs()
        return {
            "calls": self.calls,
            "minutes": round(self.duration_ms / 60_000, 3),
            "total_cost": costs.pop("total"),
            "cost_breakdown": costs,
            "avg_duration": round(self.duration_ms / 1000 / self.calls, 2) if self.calls else 0.0,
            "avg_latency_ms": round(self.latency_us / 1000 / self.latency_n, 1) if self.latency_n else 0.0,
            "p95_latency_ms": self.p95_ms(),
        }


class Bucket(Totals):
    """An hour's totals, its calls per status, and those of its calls held in memory."""

    __slots__ = ("members", "statuses")

    def __init__(self) -> None:
        super().__init__()
        self.members: set[Call] = set()
        self.statuses: Counter[str] = Counter()


class Aggregates:
    """Totals for the whole store, per status, and per UTC hour and day of call start."""

    def __init__(self) -> None:
        self.total = Totals()
        self.by_status: Counter[str] = Counter()
        self.hours: dict[int, Bucket] = {}
        self.days: dict[int, Totals] = {}
        #: Bumped on every change, so readers can cache what they derive from these totals.
        self.version = 0
        #: (lo, hi) -> (started_at, status, numbers) of the counted calls started in [lo, hi) that are not
        #: members (not held in memory): set when history is kept beyond memory, for the edge hours of a range.
        self.cold_rows: Callable[[float, float], list[tuple[float, str, Numbers]]] | None = None

    def add(self, call: Call) -> None:
        self._apply(call, 1)

    def remove(self, call: Call) -> None:
        self._apply(call, -1)

    def _apply(self, call: Call, sign: int) -> None:
        bucket = self.count(call.started_at, call.status, contribution(call), sign)
        if sign > 0:
            bucket.members.add(call)
        else:
            bucket.members.discard(call)

    def count(self, started_at: float, status: str, numbers: Numbers, sign: int = 1) -> Bucket:
        """Add (or with ``sign=-1`` take away) one call's numbers; its hour bucket.

        A call counted without being made a member (history on disk, not in
        memory) makes its hour "cold": a range that cuts that hour asks the
        journal (:attr:`cold_rows`) for the calls inside.
        """
        self.version += 1
        self.total.add(None, sign, numbers)
        self.by_status[status] += sign
        if not self.by_status[status]:
            del self.by_status[status]
        hour = int(started_at // HOUR) * HOUR
        bucket = self.hours.get(hour)
        if bucket is None:
            bucket = self.hours[hour] = Bucket()
        bucket.add(None, sign, numbers)
        bucket.statuses[status] += sign
        if not bucket.calls:
            del self.hours[hour]
        day = hour - hour % DAY
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = Totals()
        totals.add(None, sign, numbers)
        if not totals.calls:
            del self.days[day]
        return bucket

    def load(self, hours: Iterable[tuple[Any, ...]], latencies: Iterable[tuple[Any, ...]]) -> None:
        """Start from stored sums: per (hour, status) count, duration, costs; per (hour, bin) count, µs.

        Sums of integers, so the totals equal adding the calls one by one;
        O(hours), not O(calls), at start.
        """
        self.version += 1
        for hour, status, calls, duration_ms, *cost in hours:
            bucket = self.hours.get(hour) or self.hours.setdefault(hour, Bucket())
            bucket.calls += calls
            bucket.duration_ms += duration_ms
            bucket.cost = [a + b for a, b in zip(bucket.cost, cost)]
            bucket.statuses[status] += calls
            self.by_status[status] += calls
        for hour, bin_, n, us in latencies:
            bucket = self.hours[hour]
            bucket.latency_n += n
            bucket.latency_us += us
            bucket.histogram[bin_] = [n, us]
        for hour, bucket in self.hours.items():
            self.total.merge(bucket)
            day = hour - hour % DAY
            (self.days.get(day) or self.days.setdefault(day, Totals())).merge(bucket)

    def forget(self, call: Call) -> None:
        """Stop holding ``call`` (it left memory) while it still counts (it is kept on disk)."""
        bucket = self.hours.get(int(call.started_at // HOUR) * HOUR)
        if bucket is not None:
            bucket.members.discard(call)

    def adopt(self, call: Call) -> None:
        """Hold ``call`` again for edge-hour sums; its numbers were counted already (:meth:`count`)."""
        bucket = self.hours.get(int(call.started_at // HOUR) * HOUR)
        if bucket is not None:
            bucket.members.add(call)

    def _members(self, hour: int, bucket: Bucket, start: float | None, end: float | None) -> Iterable[tuple[float, str, Numbers]]:
        """(started_at, status, numbers) of the bucket's calls in [start, end): those held, and the others'."""
        held = [
            (c.started_at, c.status, contribution(c)) for c in bucket.members
            if (start is None or c.started_at >= start) and (end is None or c.started_at < end)
        ]
        if bucket.statuses.total() > len(bucket.members) and self.cold_rows is not None:
            lo = hour if start is None else max(hour, start)
            hi = hour + HOUR if end is None else min(hour + HOUR, end)
            held += self.cold_rows(lo, hi)
        return held

    # ---------------------------------------------------------------- queries

    def _hour_totals(self, start: float | None, end: float | None) -> Iterable[tuple[int, Totals]]:
        """Per-hour totals for calls with start <= started_at < end."""
        for hour in sorted(self.hours):
            bucket = self.hours[hour]
            if (start is not None and hour + HOUR <= start) or (end is not None and hour >= end):
                continue
            if (start is None or hour >= start) and (end is None or hour + HOUR <= end):
                yield hour, bucket
                continue
            partial = Totals()  # an edge hour: count only its calls inside the range
            for _, _, numbers in self._members(hour, bucket, start, end):
                partial.add(None, 1, numbers)
            if partial.calls:
                yield hour, partial

    def between(self, start: float | None, end: float | None) -> Totals:
        if start is None and end is None:
            return self.total
        result = Totals()
        for _, totals in self.series(start, end, DAY):
            result.merge(totals)
        return result

    def status_counts(self, start: float | None, end: float | None) -> dict[str, int]:
        if start is None and end is None:
            return dict(self.by_status)
        counts: Counter[str] = Counter()
        for hour, bucket in self.hours.items():
            if (start is not None and hour + HOUR <= start) or (end is not None and hour >= end):
                continue
            if (start is None or hour >= start) and (end is None or hour + HOUR <= end):
                counts.update(bucket.statuses)
                continue
            for _, status, _ in self._members(hour, bucket, start, end):
                counts[status] += 1
        return {k: v for k, v in counts.items() if v}

    def series(self, start: float | None, end: float | None, width: int) -> list[tuple[int, Totals]]:
        """Totals per ``width``-second bucket (HOUR or DAY, UTC), oldest first.

        Whole days come from the day totals; only days cut by the range are
        summed from their hours (and their edge hours from their calls).
        """
        if width == HOUR:
            return list(self._hour_totals(start, end))
        points = []
        for day in sorted(self.days):
            if (start is not None and day + DAY <= start) or (end is not None and day >= end):
                continue
            if (start is None or day >= start) and (end is None or day + DAY <= end):
                points.append((day, self.days[day]))
                continue
            partial = Totals()
            lo = day if start is None else max(day, start)
            hi = day + DAY if end is None else min(day + DAY, end)
            for _, totals in self._hour_totals(lo, hi):
                partial.merge(totals)
            if partial.calls:
                points.append((day, partial))
        return points

    def span(self) -> tuple[int, int] | None:
        if not self.hours:
            return None
        return min(self.hours), max(self.hours) + HOUR
