"""Transcript lines keep what Patter sends with them, read in Patter's turn order, within the call's bounds.

Fed Patter 0.7.0's own payloads: the pipeline-mode captures and a Realtime call produced by Patter's own
stream handler (tests/fixtures/patter-payloads/realtime_call.json).
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from patter_dash.core.store import CallStore
from patter_dash.model import jsoncodec, records
from patter_dash.model.events import make_event
from tests.conftest import payload

REALTIME = "CArealtime0000000000000000000000001"
_seq = 0


def apply(store: CallStore, event_type: str, data: dict[str, Any]) -> records.Call:
    global _seq
    _seq += 1
    event = make_event(event_type, data)
    event.seq = _seq
    return store.apply(event).call


def lines(call: records.Call) -> list[dict[str, Any]]:
    return records.transcript_view(call)


def patter_line(data: dict[str, Any]) -> dict[str, Any]:
    """The line Patter's own store keeps for an ``on_transcript`` payload: the line and every field sent with it,
    stamped (as this dashboard stamps it) with the last ``history`` entry's timestamp."""
    stamp = data["history"][-1]["timestamp"] if data.get("history") else None
    return {"role": data["role"], "text": data["text"], "timestamp": stamp,
            **{k: v for k, v in data.items() if k not in ("role", "text", "call_id", "history")}}


def test_realtime_lines_keep_turn_index_and_tool_fields_and_read_in_turn_order() -> None:
    store = CallStore()
    events = payload("realtime_call.json")
    *live, end = events
    began = time.time()
    for e in live:
        call = apply(store, e["type"], e["data"])
    sent = [patter_line(e["data"]) for e in live if e["type"] == "transcript"]
    held = lines(call)
    # Patter's tool lines carry no history, so no sender's stamp: they take their arrival time.
    assert [line["timestamp"] for line in sent[4:]] == [None, None]
    assert all(began <= line["timestamp"] <= time.time() for line in held[4:])
    sent[4]["timestamp"], sent[5]["timestamp"] = held[4]["timestamp"], held[5]["timestamp"]
    # Field by field Patter's line, in reading order: turn 1's user line arrived after the agent's
    # answer to it, and is read above it.
    assert held == [sent[0], sent[1], sent[3], sent[2], sent[4], sent[5]]
    assert [(line["role"], line.get("turnIndex")) for line in held] == [
        ("user", 0), ("assistant", 0), ("user", 1), ("assistant", 1), ("tool", None), ("tool", None)]
    assert held[4] | {"timestamp": 0} == {
        "role": "tool", "text": 'check_availability({"day": "Friday"})', "timestamp": 0,
        "tool_name": "check_availability", "tool_args": {"day": "Friday"}, "tool_result": None}
    assert held[5]["tool_result"] == '{"slots": ["09:00", "14:00"]}'
    # The store itself keeps arrival order (its re-delivery and repeat rules read it).
    assert [line[records.LINE_TEXT] for line in call.transcript][2:4] == ["Friday at nine it is.", "Morning, please."]
    # Turns arrived with their lines already held: nothing mirrored.
    assert len(call.transcript) == 6

    call = apply(store, "call_end", end["data"])
    final = lines(call)
    history = end["data"]["conversation_history"]
    # Patter's conversation_history has role, text and timestamp only; each line keeps the fields its
    # live line came with, and reads in turn order.
    assert [(line["role"], line["text"], line["timestamp"]) for line in final] == [
        (h["role"], h["text"], h["timestamp"]) for h in (history[0], history[1], history[3], history[2], history[4], history[5])]
    assert [line.get("turnIndex") for line in final] == [0, 0, 1, 1, None, None]
    assert [line.get("tool_name") for line in final] == [None] * 4 + ["check_availability"] * 2
    assert final[5]["tool_result"] == '{"slots": ["09:00", "14:00"]}'
    assert "extra_truncated" not in call.flags and "transcript_truncated" not in call.flags


def test_a_turn_with_no_live_line_is_mirrored_stamped_with_its_turn_index() -> None:
    store = CallStore()
    apply(store, "call_start", payload("call_start.json"))
    metrics = payload("turn_metrics.json")
    call = apply(store, "turn", metrics)
    turn = metrics["turn"]
    # As Patter's record_turn mirrors it: role, text, the turn's timestamp, its turnIndex.
    assert lines(call) == [
        {"role": "user", "text": turn["user_text"], "timestamp": turn["timestamp"], "turnIndex": turn["turn_index"]},
        {"role": "assistant", "text": turn["agent_text"], "timestamp": turn["timestamp"], "turnIndex": turn["turn_index"]},
    ]
    # The same turn again updates its metrics and adds no line.
    assert len(apply(store, "turn", metrics).transcript) == 2


def test_a_turn_claims_its_own_lines_by_turn_index() -> None:
    store = CallStore()
    cid = "CA-claims"

    def line(role: str, text: str, index: int, at: float) -> None:
        apply(store, "transcript", {"call_id": cid, "role": role, "text": text, "turnIndex": index,
                                    "history": [{"role": role, "text": text, "timestamp": at}]})

    def turn(index: int, user: str, agent: str) -> records.Call:
        return apply(store, "turn", {"call_id": cid, "turn": {"turn_index": index, "user_text": user, "agent_text": agent,
                                                              "timestamp": 1_795_000_000.0 + index}})

    base = 1_795_000_000.0
    line("user", "yes", 3, base + 1)  # the live line's words differ from the turn's ("Yes.")
    line("assistant", "Booked.", 3, base + 2)
    call = turn(3, "Yes.", "Booked.")
    assert [(r["text"], r["turnIndex"]) for r in lines(call)] == [("yes", 3), ("Booked.", 3)]  # claimed, not doubled
    # Turn 5's "Yes." arrives before turn 4's metrics, whose own user line never came live: turn 4 must not
    # take turn 5's line as its own.
    line("user", "Yes.", 5, base + 3)
    call = turn(4, "Yes.", "Anything else?")
    assert [(r["role"], r["text"], r["turnIndex"]) for r in lines(call)][2:] == [
        ("user", "Yes.", 4), ("assistant", "Anything else?", 4), ("user", "Yes.", 5)]
    call = turn(5, "Yes.", "Bye.")
    assert [(r["role"], r["text"], r["turnIndex"]) for r in lines(call)][2:] == [
        ("user", "Yes.", 4), ("assistant", "Anything else?", 4), ("user", "Yes.", 5), ("assistant", "Bye.", 5)]


def test_repeats_are_kept_and_re_deliveries_are_not_with_turn_indexes() -> None:
    store = CallStore()
    cid = "CA-yes"
    at = 1_795_000_000.0
    for index in range(3):
        data = {"call_id": cid, "role": "user", "text": "Yes.", "turnIndex": index,
                "history": [{"role": "user", "text": "Yes.", "timestamp": at + index}]}
        event = make_event("transcript", data)
        event.seq = 100 + index
        assert store.apply(event).changed
    again = make_event("transcript", data)  # the third line delivered twice
    again.seq = 200
    applied = store.apply(again)
    assert not applied.changed and not applied.lines
    assert [(r["text"], r["turnIndex"]) for r in lines(applied.call)] == [("Yes.", 0), ("Yes.", 1), ("Yes.", 2)]


def test_line_fields_are_cleaned_and_bounded() -> None:
    store = CallStore(max_call_text=300_000)
    cid = "CA-fields"
    big = "r" * 30_000  # cut to 20,000 characters by ingest, like any text
    data = {"call_id": cid, "role": "tool", "text": "lookup()", "turnIndex": 2, "tool_name": "lookup\x00",
            "k" * 300: "long key", "r1": big, "r2": big, "r3": big, "r4": big}
    call = apply(store, "transcript", data)
    (line,) = lines(call)
    assert line["tool_name"] == "lookup" and "k" * 256 in line and "k" * 257 not in line
    assert line["turnIndex"] == 2 and len(line["r1"]) == 20_000 and line["r1"].endswith("…[truncated]")
    # Past 65,536 bytes of fields: those that fit, in the order sent, and the call says so.
    assert ("r3" in line, "r4" in line) == (True, False) and "extra_truncated" in call.flags
    # The fields count against the call's transcript budget like its text does.
    assert 60_000 < call.text_chars <= 65_536 + len("lookup()")
    for n in range(15):
        apply(store, "transcript", {"call_id": cid, "role": "tool", "text": f"call {n}", "result": "x" * 57_000})
    assert call.text_chars <= 300_000 and call.dropped_lines > 0 and "transcript_truncated" in call.flags
    assert len(jsoncodec.dumpb(lines(call))) < 310_000


def test_small_recurring_fields_share_one_dict() -> None:
    store = CallStore()
    for cid in ("CA-a", "CA-b"):
        apply(store, "transcript", {"call_id": cid, "role": "user", "text": "hi", "turnIndex": 7})
    a, b = store.get("CA-a").transcript[0], store.get("CA-b").transcript[0]
    assert a[records.LINE_EXTRA] == {"turnIndex": 7} and a[records.LINE_EXTRA] is b[records.LINE_EXTRA]


# ---------------------------------------------------------------- reading order


def placed(arrivals: list[records.Line]) -> list[records.Line]:
    """What a reader that places each line as it arrives shows (the live cards' rule, static/js/calls.js placeLine)."""
    rank = {"user": 0, "assistant": 1}
    shown: list[records.Line] = []
    for line in arrivals:
        at = len(shown)
        index = records.line_turn(line)
        if index is not None:
            while at > 0:
                prev = records.line_turn(shown[at - 1])
                if prev is None or (prev, rank.get(shown[at - 1][0], 2)) <= (index, rank.get(line[0], 2)):
                    break
                at -= 1
        shown.insert(at, line)
    return shown


LINES = st.lists(
    st.tuples(
        st.sampled_from(["user", "assistant", "tool", "system"]),
        st.text(max_size=3),
        st.none() | st.floats(1e9, 2e9),
        st.none() | st.integers(0, 6).map(lambda i: {"turnIndex": i}) | st.just({"tool_name": "t"}),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_reading_order_is_what_a_live_reader_builds_line_by_line(arrivals: list[records.Line]) -> None:
    assert records.ordered(arrivals) == placed(arrivals)
    assert sorted(map(repr, records.ordered(arrivals))) == sorted(map(repr, arrivals))  # nothing lost or added


def test_reading_order_leaves_plain_transcripts_alone() -> None:
    plain = [("assistant", "Hello", 1.0, None), ("user", "Hi", 2.0, None), ("assistant", "How can I help?", 3.0, None)]
    assert records.ordered(plain) == plain
    assert records.line_view(plain[0]) == {"role": "assistant", "text": "Hello", "timestamp": 1.0}
