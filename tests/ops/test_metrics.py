"""Metrics in-process: each call counted once when it settles, counters that never go down, bounded labels, one registry per app."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from patter_dash.core.store import CallStore
from patter_dash.model.events import make_event
from patter_dash.ops.metrics import LABEL_CAP, OTHER, SETTLE_AFTER, Completions, LabelSets
from patter_dash.run.app import create_app
from tests.conftest import payload, post, wait_for

_seq = 0


def apply(store: CallStore, event_type: str, data: dict[str, Any]) -> None:
    global _seq
    _seq += 1
    event = make_event(event_type, data)
    event.seq = _seq
    store.apply(event)


def watched() -> tuple[CallStore, Completions]:
    completions = Completions()
    return CallStore(watchers=[completions.watch]), completions


def end(call_id: str, *, total: float = 0.04, stt: str = "deepgram", **extra: Any) -> dict[str, Any]:
    turn = {"turn_index": 1, "user_text": "hi", "agent_text": "hello",
            "latency": {"stt_ms": 100.0, "llm_ms": 200.0, "tts_ms": 0.0, "agent_response_ms": 600.0}}
    return {
        "call_id": call_id, "ended_at": time.time(), **extra,
        "metrics": {
            "duration_seconds": 30.0, "cost": {"stt": total / 4, "tts": total / 4, "llm": total / 4, "telephony": total / 4, "total": total},
            "turns": [turn], "provider_mode": "pipeline", "stt_provider": stt, "stt_model": "nova-3",
            "llm_provider": "openai", "llm_model": "gpt-4o-mini",
        },
    }


def test_a_call_ended_by_its_call_end_is_counted_at_once_with_its_providers() -> None:
    store, seen = watched()
    apply(store, "call_start", {"call_id": "a", "direction": "inbound"})
    apply(store, "call_end", end("a"))
    snap = seen.snapshot()
    assert snap["calls"] == {("completed", "inbound"): 1} and snap["pending"] == 0
    assert snap["cost"][-1] == 40_000_000  # nano-dollars, exactly
    assert sum(snap["stage_latency"][("stt", "deepgram", "nova-3")][:-1]) == 1
    assert sum(snap["stage_latency"][("llm", "openai", "gpt-4o-mini")][:-1]) == 1
    assert not any(key[0] == "tts" for key in snap["stage_latency"])  # 0 ms is Patter's "not measured"
    assert snap["turn_latency"][("pipeline", "openai", "gpt-4o-mini")][-1] == 0.6


def test_an_outbound_call_completed_by_its_status_waits_for_its_call_end() -> None:
    """Twilio's 'completed' comes first; the call_end after it names the providers and carries the cost."""
    store, seen = watched()
    apply(store, "call_initiated", {"call_id": "b", "callee": "+15550001111"})
    apply(store, "call_status", {"call_id": "b", "status": "completed"})
    assert seen.snapshot()["pending"] == 1 and seen.snapshot()["calls"] == {}
    apply(store, "call_end", end("b", total=0.08))
    snap = seen.snapshot()
    assert snap["pending"] == 0 and snap["calls"] == {("completed", "outbound"): 1}
    assert snap["cost"][-1] == 80_000_000 and ("stt", "deepgram", "nova-3") in snap["stage_latency"]
    apply(store, "call_end", end("b", total=0.5))  # a repeat changes nothing
    assert seen.snapshot()["calls"] == {("completed", "outbound"): 1}


def test_a_call_with_no_call_end_is_counted_after_the_grace_and_only_once() -> None:
    store, seen = watched()
    apply(store, "call_status", {"call_id": "c", "status": "no-answer", "direction": "outbound"})
    seen.settle_due(time.monotonic())
    assert seen.snapshot()["calls"] == {}
    seen.settle_due(time.monotonic() + SETTLE_AFTER + 1)
    assert seen.snapshot()["calls"] == {("no-answer", "outbound"): 1}
    # A call_end long after: the call was counted; the history gauges (aggregates) carry the change.
    apply(store, "call_end", end("c", total=1.0))
    snap = seen.snapshot()
    assert snap["calls"] == {("no-answer", "outbound"): 1} and snap["cost"][-1] == 0


def test_a_stale_call_closed_as_timeout_is_counted() -> None:
    store, seen = watched()
    apply(store, "call_start", {"call_id": "d"})
    store.close_stale(time.time() + 1)
    seen.settle_due(time.monotonic() + SETTLE_AFTER + 1)
    assert seen.snapshot()["calls"] == {("timeout", "unknown"): 1}


def test_label_sets_fold_past_the_cap_keeping_the_code_given_labels() -> None:
    labels = LabelSets(3, fixed=1, always=frozenset({("stt", "known", "x")}))
    assert [labels.fold(("stt", f"p{i}", "m")) for i in range(5)][-2:] == [("stt", OTHER, OTHER)] * 2
    assert labels.fold(("stt", "p0", "m")) == ("stt", "p0", "m")  # a kept one stays itself
    assert labels.fold(("stt", "known", "x")) == ("stt", "known", "x")  # never folded
    assert len(labels.known) == 3


def scrape(client: Any) -> dict[str, Any]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.data
    return {f.name: f for f in text_string_to_metric_families(response.data.decode())}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    family_name = name.removesuffix("_total")
    samples = [s for s in families[family_name].samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(s.value for s in samples)


def test_two_apps_in_one_process_keep_their_own_metrics() -> None:
    one, two = create_app({"TESTING": True, "PATTER_DASH_DB": ":memory:"}), create_app({"TESTING": True, "PATTER_DASH_DB": ":memory:"})
    try:
        first, second = one.test_client(), two.test_client()
        post(first, "call_start", payload("call_start.json"))
        post(first, "call_end", payload("call_end.json"))
        assert value(scrape(first), "patter_dash_calls_completed_total") == 1
        assert value(scrape(first), "patter_dash_ingest_events_total", outcome="accepted") == 2
        assert value(scrape(second), "patter_dash_calls_completed_total") == 0
        assert value(scrape(second), "patter_dash_ingest_events_total", outcome="accepted") == 0
        assert one.extensions["patter_dash"].metrics.registry is not two.extensions["patter_dash"].metrics.registry
    finally:
        one.extensions["patter_dash"].stop()
        two.extensions["patter_dash"].stop()


def test_deleting_a_call_lowers_the_history_gauges_never_the_counters() -> None:
    app = create_app({"TESTING": True, "PATTER_DASH_DB": ":memory:"})
    dash = app.extensions["patter_dash"]
    try:
        client = app.test_client()
        for call_id in ("x1", "x2"):
            post(client, "call_end", end(call_id))
        before = scrape(client)
        assert value(before, "patter_dash_history_calls") == 2 and value(before, "patter_dash_calls_completed_total") == 2
        assert dash.pipeline.delete(["x1"]) == ["x1"]
        after = scrape(client)
        assert value(after, "patter_dash_history_calls") == 1
        assert abs(value(after, "patter_dash_history_cost_usd") - 0.04) < 1e-9
        assert value(after, "patter_dash_calls_completed_total") == 2
        assert abs(value(after, "patter_dash_call_cost_usd_total") - 0.08) < 1e-9
    finally:
        dash.stop()


def test_a_failing_count_never_costs_the_event() -> None:
    app = create_app({"TESTING": True, "PATTER_DASH_DB": ":memory:"})
    dash = app.extensions["patter_dash"]
    try:
        def broken(call: Any) -> None:
            raise RuntimeError("boom")

        dash.metrics.completions._settle = broken
        client = app.test_client()
        post(client, "call_end", end("y"))  # 202: applied
        wait_for(lambda: dash.store.get("y"))
        assert value(scrape(client), "patter_dash_metrics_failures_total") == 1
    finally:
        dash.stop()


def test_hostile_directions_stay_within_the_cap() -> None:
    store, seen = watched()
    for i in range(LABEL_CAP * 3):
        apply(store, "call_end", end(f"h{i}", direction=f"dir-{i}"))
    assert len(seen.snapshot()["calls"]) <= LABEL_CAP + 1
    assert sum(seen.snapshot()["calls"].values()) == LABEL_CAP * 3
