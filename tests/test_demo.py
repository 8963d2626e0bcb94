"""The simulated runtime: payload shapes, call timelines, costs, and the replay thread."""

from __future__ import annotations

import json
import random
import re
import statistics
import threading
import time

import pytest
from conftest import PAYLOADS
from hypothesis import given, settings
from hypothesis import strategies as st

from patter_dash.run.demo import LATENCY_KEYS, DemoRuntime, latency_stats, simulate_call

NOW = 1_800_000_000.0
CALL_ID = re.compile(r"^CA[0-9a-f]{32}$")
E164 = re.compile(r"^\+1555\d{7}$")
FAILED = {"no-answer", "busy", "failed", "canceled"}
COST_PARTS = ("stt", "tts", "llm", "telephony")


def check_cost(cost: dict) -> None:
    assert set(cost) == {*COST_PARTS, "total", "llm_cached_savings"}
    assert all(cost[k] >= 0 for k in cost)
    assert cost["total"] == pytest.approx(sum(cost[k] for k in COST_PARTS), abs=1e-6)


def check_call(events: list) -> None:
    """Every invariant a well-formed simulated call must hold."""
    assert events
    offsets = [e[0] for e in events]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    kinds = [e[1] for e in events]
    assert kinds[0] in ("call_initiated", "call_start")
    call_id = events[0][2]["call_id"]
    assert CALL_ID.match(call_id)
    for _, kind, data in events:
        assert data["call_id"] == call_id
        json.dumps(data)  # plain JSON, like asdict() output
    statuses = [d["status"] for _, k, d in events if k == "call_status"]
    if kinds[0] == "call_initiated":
        first = events[0][2]
        assert first["direction"] == "outbound" and first["status"] == "initiated"
        assert E164.match(first["caller"]) and E164.match(first["callee"])
        assert kinds[1] == "call_status" and statuses[0] == "ringing"
    assert kinds.count("call_end") <= 1
    if "call_start" not in kinds:
        # an outbound call that never connected: a failure status, maybe a bare call_end
        assert statuses[-1] in FAILED
        assert not {"transcript", "turn"} & set(kinds)
        if kinds[-1] == "call_end":
            metrics = events[-1][2]["metrics"]
            assert metrics["turns"] == [] and metrics["error_code"] == statuses[-1]
            check_cost(metrics["cost"])
        else:
            assert kinds[-1] == "call_status"
        return

    assert kinds[-1] == "call_end"
    start = events[kinds.index("call_start")]
    if start[2]["direction"] == "inbound":
        assert E164.match(start[2]["caller"]) and E164.match(start[2]["callee"])
    end = events[-1][2]
    metrics = end["metrics"]
    assert end["ended_at"] - metrics["duration_seconds"] == pytest.approx(NOW + start[0], abs=0.01)

    turn_events = [d for _, k, d in events if k == "turn"]
    indexes = [d["turn"]["turn_index"] for d in turn_events]
    assert indexes == list(range(len(indexes))) and 2 <= len(indexes) <= 7
    assert [t["turn_index"] for t in metrics["turns"]] == indexes
    assert [d["turn"] for d in turn_events] == metrics["turns"]

    greeting = metrics["turns"][0]
    assert greeting["user_text"] == ""
    assert [greeting["latency"][k] for k in ("stt_ms", "llm_ms", "tts_ms")] == [0.0, 0.0, 0.0]
    for turn in metrics["turns"][1:]:
        lat = turn["latency"]
        assert set(lat) == set(LATENCY_KEYS)
        assert lat["agent_response_ms"] == pytest.approx(lat["stt_ms"] + lat["llm_ms"] + lat["tts_ms"], abs=5)
        assert lat["total_ms"] >= lat["user_speech_duration_ms"] + lat["agent_response_ms"]
        assert (turn["agent_text"] == "[interrupted]") == (lat["bargein_ms"] is not None)
        assert turn["user_text"] and turn["tts_characters"] > 0

    totals = []
    for d in turn_events:
        check_cost(d["cost_so_far"])
        assert d["cost_so_far"]["stt"] == 0.0  # Patter bills STT at the end
        totals.append(d["cost_so_far"]["total"])
    check_cost(metrics["cost"])
    assert totals == sorted(totals) and metrics["cost"]["total"] >= totals[-1]

    for key in LATENCY_KEYS:
        p = [metrics[f"latency_{q}"][key] for q in ("p50", "p90", "p95", "p99")]
        if p[0] is None:
            assert all(v is None for v in p)
            continue
        assert p == sorted(p)
        values = [t["latency"][key] for t in metrics["turns"] if t["latency"][key] is not None]
        assert min(values) - 0.05 <= metrics["latency_avg"][key] <= max(values) + 0.05
    stats = latency_stats(metrics["turns"])
    assert all(metrics[name] == stats[name] for name in stats)

    history = end["conversation_history"]
    assert [h["text"] for h in history[1:]] == [t["text"] for t in end["transcript"]]
    assert history[0]["text"] == greeting["agent_text"]
    lines = [d for _, k, d in events if k == "transcript"]
    assert [(d["role"], d["text"]) for d in lines] == [(h["role"], h["text"]) for h in history]
    assert all(d["history"][-1]["text"] == d["text"] for d in lines)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_every_simulated_call_is_well_formed(seed: int) -> None:
    check_call(simulate_call(random.Random(seed), NOW))


def test_two_hundred_seeds_mix_outcomes_modes_and_directions() -> None:
    calls = [simulate_call(random.Random(seed), NOW) for seed in range(200)]
    for events in calls:
        check_call(events)

    def metrics(events):
        return events[-1][2]["metrics"] if events[-1][1] == "call_end" else None

    failed = [e for e in calls
              if any(d.get("status") in FAILED for _, k, d in e if k == "call_status")
              or (metrics(e) and metrics(e)["error_code"])]
    assert 10 <= len(failed) <= 50  # ~15%
    assert any("call_end" not in [k for _, k, _ in e] for e in calls)  # status-only failures
    assert any(e[-1][1] == "call_end" and not metrics(e)["turns"] for e in calls)  # bare call_end
    directions = {e[0][1] for e in calls}
    assert directions == {"call_initiated", "call_start"}
    modes = {metrics(e)["provider_mode"] for e in calls if metrics(e) and metrics(e)["turns"]}
    assert modes == {"pipeline", "realtime"}
    providers = {metrics(e)["tts_provider"] for e in calls if metrics(e)}
    assert len(providers) >= 3
    interrupted = [t for e in calls if metrics(e) for t in metrics(e)["turns"] if t["agent_text"] == "[interrupted]"]
    assert interrupted
    assert any(d["role"] == "tool" for e in calls for _, k, d in e if k == "transcript")


def test_latencies_and_prices_are_plausible() -> None:
    turns = []
    per_minute = []
    for seed in range(300):
        events = simulate_call(random.Random(seed), NOW)
        m = events[-1][2].get("metrics")
        if not m or not m["turns"] or m["provider_mode"] != "pipeline":
            continue
        turns += m["turns"][1:]
        per_minute.append(m["cost"]["total"] / (m["duration_seconds"] / 60))
    med = {k: statistics.median(t["latency"][k] for t in turns) for k in ("stt_ms", "llm_ttft_ms", "tts_ms")}
    assert 100 <= med["stt_ms"] <= 250
    assert 200 <= med["llm_ttft_ms"] <= 700
    assert 100 <= med["tts_ms"] <= 300
    assert 0.01 <= statistics.median(per_minute) <= 0.2  # a few cents a minute


def test_same_seed_same_call() -> None:
    assert simulate_call(random.Random(7), NOW) == simulate_call(random.Random(7), NOW)
    assert simulate_call(random.Random(7), NOW) != simulate_call(random.Random(8), NOW)


def test_shapes_match_the_captured_patter_payloads() -> None:
    real = {name: json.loads((PAYLOADS / f"{name}.json").read_text())
            for name in ("call_start", "transcript_user", "turn_metrics", "call_end")}
    events = next(e for seed in range(100) if (e := simulate_call(random.Random(seed), NOW))[0][1] == "call_start")
    first = {k: d for _, k, d in reversed(events)}  # the first event of each kind
    assert set(first["call_start"]) == set(real["call_start"])
    assert set(first["transcript"]) == set(real["transcript_user"])
    assert set(first["turn"]) == set(real["turn_metrics"])
    assert set(first["turn"]["turn"]) == set(real["turn_metrics"]["turn"])
    assert set(first["turn"]["turn"]["latency"]) == set(real["turn_metrics"]["turn"]["latency"])
    assert list(first["call_end"]) == list(real["call_end"])
    assert list(first["call_end"]["metrics"]) == list(real["call_end"]["metrics"])
    assert set(first["call_end"]["conversation_history"][0]) == {"role", "text", "timestamp"}


def test_latency_stats_reproduce_patters_own_figures() -> None:
    metrics = json.loads((PAYLOADS / "call_end.json").read_text())["metrics"]
    stats = latency_stats(metrics["turns"])
    for name in ("latency_avg", "latency_p50", "latency_p90", "latency_p95", "latency_p99"):
        for key, value in metrics[name].items():
            assert stats[name][key] == pytest.approx(value, abs=0.051), (name, key)


class Collector:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, data: dict, *, id: str | None = None) -> bool:
        with self.lock:
            self.events.append((kind, data))
        return True

    def wait_for(self, predicate, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.events)):
                    return True
            time.sleep(0.01)
        return False


def test_runtime_feeds_whole_calls_quickly_and_stops_cleanly() -> None:
    feed = Collector()
    runtime = DemoRuntime(feed, calls_per_minute=600, max_concurrent=4, seed=1, speed=500)
    runtime.start()
    try:
        assert feed.wait_for(lambda ev: sum(k == "call_end" for k, _ in ev) >= 3)
    finally:
        runtime.stop()
    assert not runtime.running
    count = len(feed.events)
    time.sleep(0.1)
    assert len(feed.events) == count  # nothing after stop
    assert runtime.events_fed == count and runtime.events_dropped == 0
    assert {k for k, _ in feed.events} >= {"call_start", "transcript", "turn", "call_end"}


def test_runtime_respects_max_concurrent() -> None:
    feed = Collector()
    runtime = DemoRuntime(feed, calls_per_minute=6000, max_concurrent=1, seed=3, speed=1000)
    runtime.start()
    try:
        assert feed.wait_for(lambda ev: len({d["call_id"] for _, d in ev}) >= 6)
    finally:
        runtime.stop()
    order = [d["call_id"] for _, d in feed.events]
    blocks = [cid for i, cid in enumerate(order) if i == 0 or order[i - 1] != cid]
    assert len(blocks) == len(set(blocks))  # one call at a time: no interleaving


def test_runtime_survives_a_feed_that_raises_or_drops() -> None:
    calls = []

    def bad_feed(kind: str, data: dict, *, id: str | None = None) -> bool:
        calls.append(kind)
        if len(calls) % 3 == 0:
            raise RuntimeError("boom")
        return len(calls) % 3 == 1

    runtime = DemoRuntime(bad_feed, calls_per_minute=600, seed=2, speed=500)
    runtime.start()
    try:
        deadline = time.monotonic() + 3
        while len(calls) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runtime.running
    finally:
        runtime.stop()
    assert len(calls) >= 60
    assert runtime.events_dropped >= 2 * runtime.events_fed - 2


def test_runtime_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        DemoRuntime(Collector(), speed=0)
