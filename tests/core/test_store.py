"""Store rules: ordering, duplicates, late events, retention, and exact aggregates."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patter_dash.core.aggregates import Totals
from patter_dash.core.store import CallFilter, CallStore
from patter_dash.model.events import make_event
from tests.conftest import payload

_seq = 0


def apply(store: CallStore, event_type: str, data: dict, now: float | None = None):
    global _seq
    _seq += 1
    event = make_event(event_type, data, now=now)
    event.seq = _seq
    call = store.apply(event).call
    return call


def end_data(call_id: str, duration: float = 30.0, total: float = 0.02, ended_at: float | None = None, latency: float = 500.0) -> dict:
    return {
        "call_id": call_id,
        "ended_at": ended_at if ended_at is not None else time.time(),
        "metrics": {
            "duration_seconds": duration,
            "cost": {"stt": total / 4, "tts": total / 4, "llm": total / 4, "telephony": total / 4, "total": total},
            "latency_avg": {"agent_response_ms": latency, "total_ms": latency * 2},
            "latency_p95": {"agent_response_ms": latency * 1.5},
            "provider_mode": "pipeline",
        },
    }


def test_real_payloads_build_one_complete_call():
    store = CallStore()
    apply(store, "call_start", payload("call_start.json"))
    apply(store, "transcript", payload("transcript_user.json"))
    apply(store, "turn", payload("turn_metrics.json"))
    live = store.get("CA941522e75e5447c05b6ca6d201f13845")
    assert live.active and live.status == "in-progress"
    assert live.cost_value("total") == 0.016431  # cost_so_far while live
    assert [line[1] for line in live.transcript][:1] == ["Hi, I'd like to book a teeth cleaning next week."]
    apply(store, "call_end", payload("call_end.json"))
    call = store.get("CA941522e75e5447c05b6ca6d201f13845")
    assert not call.active and call.status == "completed"
    assert call.duration == 37.78 and math.isclose(call.ended_at - call.started_at, 37.78)
    assert call.cost_value("total") == 0.025489 and len(call.turns) == 4
    assert len(call.transcript) == 7  # conversation_history keeps the greeting
    assert call.meta["context_tokens"] == 204 and call.meta["llm_model"] == "gpt-4o-mini"
    assert call.extra["custom_params"] == {"caller": "+15553891776", "callee": "+15550001234"}
    assert call.latency_ms() == 501.1 and call.latency_ms("latency_p95") == 512.6


def test_a_line_a_followed_log_already_gave_is_not_added_again_by_the_callbacks():
    """The log first (its lines carry the turn's index), the runtime's callbacks after: each utterance once.

    The same words said again in a later turn stay: they come after the turn that already holds them.
    """
    store = CallStore()
    t0 = time.time() - 60
    apply(store, "call_start", {"call_id": "CA-order", "started_at": t0})
    apply(store, "transcript", {"call_id": "CA-order", "role": "user", "text": "Yes.", "timestamp": t0 + 2, "turnIndex": 0})
    apply(store, "turn", {"call_id": "CA-order", "turn": {"turn_index": 0, "user_text": "Yes.", "agent_text": "Great.", "timestamp": t0 + 4}})
    # The callbacks' copies, stamped when they were said (the agent's a moment after the turn closed).
    apply(store, "transcript", {"call_id": "CA-order", "role": "user", "text": "Yes.", "timestamp": t0 + 1.5})
    apply(store, "transcript", {"call_id": "CA-order", "role": "assistant", "text": "Great.", "timestamp": t0 + 4.01})
    # The next turn: the caller says it again.
    apply(store, "transcript", {"call_id": "CA-order", "role": "user", "text": "Yes.", "timestamp": t0 + 9})
    apply(store, "turn", {"call_id": "CA-order", "turn": {"turn_index": 1, "user_text": "Yes.", "agent_text": "Sure.", "timestamp": t0 + 11}})
    call = store.get("CA-order")
    assert [(line[0], line[1]) for line in call.transcript] == [
        ("user", "Yes."), ("assistant", "Great."), ("user", "Yes."), ("assistant", "Sure.")]


@pytest.mark.checklist(30)
def test_end_without_start_derives_start_from_duration():
    store = CallStore()
    call = apply(store, "call_end", end_data("A", duration=40.0, ended_at=1_700_000_100.0))
    assert call.status == "completed" and call.started_at == 1_700_000_060.0
    assert "no_start" in call.flags


@pytest.mark.checklist(30)
def test_duplicate_end_is_a_noop_and_late_turn_does_not_revive():
    store = CallStore()
    apply(store, "call_start", {"call_id": "A", "caller": "+1"})
    apply(store, "call_end", end_data("A", total=0.5))
    before = store.overview(None, None)
    apply(store, "call_end", end_data("A", total=9.0))
    assert store.overview(None, None) == before
    turn = payload("turn_metrics.json") | {"call_id": "A"}
    call = apply(store, "turn", turn)
    assert not call.active and "A" not in store.active and len(call.turns) == 1
    assert "late_turn" in call.flags


@pytest.mark.checklist(30)
def test_turn_before_start_creates_a_flagged_active_call():
    store = CallStore()
    call = apply(store, "turn", payload("turn_metrics.json"))
    assert call.active and "no_start" in call.flags
    apply(store, "call_start", payload("call_start.json"))
    assert call.caller == "+15553891776" and call.status == "in-progress"


@pytest.mark.checklist(30)
def test_terminal_status_ends_call_and_later_status_is_recorded_not_applied():
    store = CallStore()
    apply(store, "call_initiated", {"call_id": "B", "callee": "+1555"})
    apply(store, "call_status", {"call_id": "B", "status": "ringing"})
    call = apply(store, "call_status", {"call_id": "B", "status": "no-answer"})
    assert not call.active and call.status == "no-answer"
    apply(store, "call_status", {"call_id": "B", "status": "ringing"})
    assert call.status == "no-answer" and call.status_history[-1][0] == "ringing"
    assert "late_status" in call.flags
    # the SDK's call_end that follows keeps the more precise status
    apply(store, "call_end", {"call_id": "B", "ended_at": time.time()})
    assert call.status == "no-answer"


@pytest.mark.checklist(31)
def test_clock_skew_is_accepted_and_flagged():
    store = CallStore()
    now = time.time()
    future = apply(store, "call_end", {"call_id": "S", "ended_at": now + 3600}, now=now)
    assert "clock_skew" in future.flags and future.duration_seconds() >= 0
    assert future.ended_at == now  # the arrival time stands in for a clock an hour ahead
    apply(store, "call_start", {"call_id": "B"}, now=now)
    before = apply(store, "call_end", {"call_id": "B", "ended_at": now - 60}, now=now + 1)  # ends before it started
    assert "clock_skew" in before.flags and before.duration_seconds() == 0 and before.status == "completed"


@pytest.mark.parametrize("field", ["ended_at", "started_at", "status_at", "line_at"])
@pytest.mark.parametrize("when", [9e15, 1e9 * 100, -5.0, 0.0, 100.0])
def test_absurd_clocks_never_reach_durations_or_averages(field: str, when: float) -> None:
    store = CallStore()
    now = 1_800_000_000.0
    apply(store, "transcript", {"call_id": "A", "role": "user", "text": "hi", **({"timestamp": when} if field == "line_at" else {})}, now=now)
    if field == "status_at":
        apply(store, "call_status", {"call_id": "A", "status": "completed", "timestamp": when}, now=now + 10)
    end = {"ended_at": when} if field == "ended_at" else {"started_at": when} if field == "started_at" else {}
    call = apply(store, "call_end", {"call_id": "A", **end}, now=now + 10)
    assert "clock_skew" in call.flags
    assert now <= call.started_at <= call.ended_at <= now + 10
    assert 0 <= call.duration_seconds() <= 10
    assert all(now <= line[2] <= now + 10 for line in call.transcript)
    overview = store.overview(None, None)
    assert overview["avg_duration"] <= 10 and overview["total_minutes"] <= 0.17
    assert store.costs(None, None, None)["series"][0]["t"] >= now - 86400


@pytest.mark.parametrize("duration", [86400 * 365 * 40, 1e12])
def test_a_duration_reaching_before_2000_is_not_believed(duration: float) -> None:
    store = CallStore()
    now = 1_800_000_000.0
    apply(store, "call_start", {"call_id": "D"}, now=now)
    call = apply(store, "call_end", {"call_id": "D", "ended_at": now + 5, "metrics": {"duration_seconds": duration}}, now=now + 5)
    assert "clock_skew" in call.flags and call.duration_seconds() == 5


def test_retention_evicts_oldest_and_aggregates_follow():
    store = CallStore(max_completed=3)
    for i in range(5):
        apply(store, "call_end", end_data(f"C{i}", total=float(i + 1)))
    assert list(store.completed) == ["C2", "C3", "C4"]
    assert store.overview(None, None)["total_cost"] == 3 + 4 + 5
    page, total = store.page(CallFilter(), 2, 0)
    assert [c.call_id for c in page] == ["C4", "C3"] and total == 3


def test_date_range_sums_whole_hours_and_edges_exactly():
    store = CallStore()
    base = 1_790_000_000 - 1_790_000_000 % 3600
    for i in range(10):  # one call every 30 minutes
        apply(store, "call_end", end_data(f"D{i}", duration=60, total=1.0, ended_at=base + i * 1800 + 60))
    got = store.overview(base + 1800, base + 4 * 3600 + 1)["total_calls"]
    assert got == sum(1 for i in range(10) if base + 1800 <= base + i * 1800 < base + 4 * 3600 + 1)
    series = store.costs(None, None, "hour")["series"]
    assert [p["calls"] for p in series] == [2] * 5 and series[0]["t"] == base


# ------------------------------------------------------------ property test

@dataclass
class Model:
    events: list = field(default_factory=list)


call_ids = st.sampled_from(["a", "b", "c", "d", "e", "f"])
statuses = st.sampled_from(["ringing", "in-progress", "no-answer", "busy", "failed", "completed"])
event_strategy = st.one_of(
    st.builds(lambda c: ("call_start", {"call_id": c, "caller": "+1" + c}), call_ids),
    st.builds(lambda c, t: ("transcript", {"call_id": c, "role": "user", "text": t}), call_ids, st.text(max_size=5)),
    st.builds(
        lambda c, i, lat: ("turn", {"call_id": c, "turn": {"turn_index": i, "user_text": "u", "agent_text": "a", "latency": {"total_ms": lat}}}),
        call_ids, st.integers(0, 4), st.floats(0, 5000),
    ),
    st.builds(lambda c, s: ("call_status", {"call_id": c, "status": s}), call_ids, statuses),
    st.builds(
        lambda c, d, cost, lat, off: ("call_end", end_data(c, duration=d, total=cost, latency=lat, ended_at=1_790_000_000 + off)),
        call_ids, st.floats(0, 3600), st.floats(0, 5), st.floats(0, 5000), st.integers(-100_000, 100_000),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event_strategy, max_size=40), st.integers(1, 4), st.integers(-200_000, 200_000), st.integers(0, 400_000))
def test_invariants_hold_for_any_interleaving(events, retention, range_start, range_length):
    store = CallStore(max_completed=retention)
    for event_type, data in events:
        apply(store, event_type, data)
        apply(store, event_type, data)  # every event may arrive twice
    assert not set(store.active) & set(store.completed), "a call is never both active and completed"
    assert len(store.completed) <= retention
    assert all(c.active for c in store.active.values()) and not any(c.active for c in store.completed.values())
    recomputed = Totals()
    for call in store.completed.values():
        recomputed.add(call)
    assert store.aggregates.total.view() == recomputed.view()
    assert sum(store.aggregates.by_status.values()) == len(store.completed)
    assert sum(b.calls for b in store.aggregates.hours.values()) == len(store.completed)
    assert sum(t.calls for t in store.aggregates.days.values()) == len(store.completed)
    assert store.costs(None, None, "hour")["calls_analyzed"] == len(store.completed)
    # any date range (whole days, whole hours, edge hours) equals a recomputation
    start = 1_790_000_000 + range_start
    end = start + range_length
    in_range = Totals()
    for call in store.completed.values():
        if start <= call.started_at < end:
            in_range.add(call)
    assert store.aggregates.between(start, end).view() == in_range.view()
    for width in ("hour", "day"):
        series = store.costs(start, end, width)["series"]
        assert sum(p["calls"] for p in series) == in_range.calls
    for call in store.completed.values():
        assert call.duration_seconds() >= 0


_words = st.sampled_from(["Refund", "card", "STRASSE", "+1555", "ok", "account", ""])
_store_events = st.lists(st.one_of(
    st.tuples(st.just("transcript"), st.builds(lambda r, t: {"role": r, "text": t}, st.sampled_from(["user", "assistant"]), _words)),
    st.tuples(st.just("call_start"), st.builds(lambda c: {"caller": c, "callee": c[::-1]}, _words)),
    st.tuples(st.just("call_end"), st.builds(
        lambda lines: {"ended_at": time.time(), "conversation_history": [{"role": "user", "text": t} for t in lines]},
        st.lists(_words, max_size=3))),
), min_size=1, max_size=12)


_terms = [("refund",), ("card",), ("strasse",), ("+1555",), ("ok",), ("account",), ("refund", "card")]


@settings(max_examples=60, deadline=None)
@given(_store_events)
def test_memorys_search_follows_every_change_the_store_makes(events) -> None:
    """``q`` in memory tests a call's folded text, kept between queries: never the text of an earlier state."""
    store = CallStore()
    for kind, data in events:
        call = apply(store, kind, {"call_id": "CA-SEARCH", **data})
        now = "\n".join(call.search_fields()).casefold()
        assert [call.searchable(t) for t in _terms] == [all(w in now for w in t) for t in _terms]
