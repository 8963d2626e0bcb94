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
from collections.abc import Iterable
from typing import Any

from ..model.records import Call

COMPONENTS = ("stt", "tts", "llm", "telephony", "total")
NANO = 1_000_000_000
HOUR = 3600
DAY = 86_400
_LOG_BASE = math.log(1.01)


def latency_bin(ms: float) -> int:
    return 0 if ms < 1 else int(math.log(ms) / _LOG_BASE) + 1


def contribution(call: Call) -> tuple[int, list[int], float | None]:
    """What one call adds to a total: duration in ms, cost components in nano-units, latency.

    Computed once per change; the call counts in three totals (all, its hour, its day).
    """
    return (
        round((call.duration_seconds() or 0.0) * 1000),
        [round(call.cost_value(key) * NANO) for key in COMPONENTS],
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

    def add(self, call: Call, sign: int = 1, numbers: tuple[int, list[int], float | None] | None = None) -> None:
        duration_ms, cost, latency = numbers or contribution(call)
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
    __slots__ = ("members",)

    def __init__(self) -> None:
        super().__init__()
        self.members: set[Call] = set()


class Aggregates:
    """Totals for the whole store, per status, and per UTC hour and day of call start."""

    def __init__(self) -> None:
        self.total = Totals()
        self.by_status: Counter[str] = Counter()
        self.hours: dict[int, Bucket] = {}
        self.days: dict[int, Totals] = {}
        #: Bumped on every change, so readers can cache what they derive from these totals.
        self.version = 0

    def add(self, call: Call) -> None:
        self._apply(call, 1)

    def remove(self, call: Call) -> None:
        self._apply(call, -1)

    def _apply(self, call: Call, sign: int) -> None:
        self.version += 1
        numbers = contribution(call)
        self.total.add(call, sign, numbers)
        self.by_status[call.status] += sign
        if not self.by_status[call.status]:
            del self.by_status[call.status]
        hour = int(call.started_at // HOUR) * HOUR
        bucket = self.hours.get(hour)
        if bucket is None:
            bucket = self.hours[hour] = Bucket()
        bucket.add(call, sign, numbers)
        if sign > 0:
            bucket.members.add(call)
        else:
            bucket.members.discard(call)
            if not bucket.calls:
                del self.hours[hour]
        day = hour - hour % DAY
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = Totals()
        totals.add(call, sign, numbers)
        if not totals.calls:
            del self.days[day]

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
            for call in bucket.members:
                if (start is None or call.started_at >= start) and (end is None or call.started_at < end):
                    partial.add(call)
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
            for call in bucket.members:
                if (start is None or call.started_at >= start) and (end is None or call.started_at < end):
                    counts[call.status] += 1
        return dict(counts)

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
