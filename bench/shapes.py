"""Synthetic call -> patter-dash events, in the two shapes the benchmarks use.

Imports nothing from patter_dash or the app (the harness process uses it for W1).
"""

from __future__ import annotations


def to_native_metrics(m: dict):
    """The harness's SDK-shaped conversion (as targets/patter_app.py), without importing fastapi."""
    from getpatter.models import (
        CallMetrics,
        CostBreakdown,
        LatencyBreakdown,
        TurnMetrics,
    )

    def turn(t: dict):
        d = dict(t)
        d["latency"] = LatencyBreakdown(**t["latency"])
        return TurnMetrics(**d)

    d = dict(m)
    d["turns"] = tuple(turn(t) for t in m["turns"])
    d["cost"] = CostBreakdown(**m["cost"])
    for k in ("latency_avg", "latency_p95", "latency_p50", "latency_p90", "latency_p99"):
        d[k] = LatencyBreakdown(**m[k])
    return CallMetrics(**d), turn


def sdk_events(call) -> list[tuple[str, object]]:
    from harness.gen import fresh_copy

    metrics, turn = to_native_metrics(call.metrics)
    end = {k: v for k, v in call.end_payload().items() if k != "metrics"}
    end["transcript"] = fresh_copy(end["transcript"])
    end["metrics"] = metrics
    return ([("call_start", call.start_payload())]
            + [("turn", {"call_id": call.call_id, "turn": turn(t)}) for t in call.turns]
            + [("call_end", end)])


def ingest_events(call) -> list[tuple[str, object]]:
    from harness.gen import fresh_copy

    return [("call_start", fresh_copy(call.start_payload())), ("call_end", fresh_copy(call.end_payload()))]
