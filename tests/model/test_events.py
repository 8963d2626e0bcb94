"""Events (patter_dash/model/events.py): the six types' required fields, field paths in errors, limits.

Unit tests of ``make_event`` and the envelope readers; the same answers over HTTP (status codes,
``{"error", "details"}``) are in tests/test_ingest_http.py, and any-JSON property tests in
tests/test_hostile_events.py. Error texts come from the schema library: only the field path
(the API's contract) is checked exactly.
"""

from __future__ import annotations

from typing import Any

import pytest

from patter_dash.model.clean import ValidationError
from patter_dash.model.events import (
    EVENT_TYPES,
    MAX_ID_LENGTH,
    MAX_SHORT_TEXT,
    events_from_body,
    make_event,
)
from tests.conftest import payload

#: The least each type accepts, and what it requires besides ``call_id``.
MINIMAL: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "call_initiated": ({"call_id": "A"}, ()),
    "call_start": ({"call_id": "A"}, ()),
    "transcript": ({"call_id": "A", "role": "user", "text": "hi"}, ("role", "text")),
    "turn": ({"call_id": "A", "turn": {}}, ("turn",)),
    "call_status": ({"call_id": "A", "status": "ringing"}, ("status",)),
    "call_end": ({"call_id": "A"}, ()),
}


def refusal(event_type: Any, data: Any, key: Any = None) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        make_event(event_type, data, key)
    assert caught.value.details, caught.value.message
    return caught.value.details


def test_the_six_types_are_the_vocabulary() -> None:
    assert EVENT_TYPES == ("call_initiated", "call_start", "transcript", "turn", "call_status", "call_end")
    assert set(MINIMAL) == set(EVENT_TYPES)
    (detail,) = refusal("call_ended", {"call_id": "A"})
    assert detail["field"] == "type" and all(t in detail["error"] for t in EVENT_TYPES)
    assert refusal(None, {"call_id": "A"})[0]["field"] == "type"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_each_type_accepts_its_minimum_and_names_each_missing_field(event_type: str) -> None:
    data, required = MINIMAL[event_type]
    event = make_event(event_type, data, now=1_800_000_000.0)
    assert (event.type, event.call_id, event.received_at, event.seq) == (event_type, "A", 1_800_000_000.0, 0)
    for name in required:
        (detail,) = refusal(event_type, {k: v for k, v in data.items() if k != name})
        assert detail["field"] == f"data.{name}" and "required" in detail["error"]
    (detail,) = refusal(event_type, {k: v for k, v in data.items() if k != "call_id"})
    assert detail["field"] == "data.call_id"


@pytest.mark.parametrize("event_type, data, field", [
    ("call_end", {"call_id": "A", "metrics": {"turns": [{}, {}, {"latency": {"stt_ms": -1}}]}},
     "data.metrics.turns[2].latency.stt_ms"),
    ("call_end", {"call_id": "A", "metrics": {"cost": {"total": "cheap"}}}, "data.metrics.cost.total"),
    ("call_end", {"call_id": "A", "transcript": [{"role": "user", "text": 5}]}, "data.transcript[0].text"),
    ("call_end", {"call_id": "A", "conversation_history": "hello"}, "data.conversation_history"),
    ("turn", {"call_id": "A", "turn": {"turn_index": "first"}}, "data.turn.turn_index"),
    ("turn", {"call_id": "A", "turn": {"turn_index": -1}}, "data.turn.turn_index"),
    ("transcript", {"call_id": "A", "role": "user", "text": "hi", "turnIndex": -1}, "data.turnIndex"),
    ("transcript", {"call_id": "A", "role": "user", "text": "hi", "turnIndex": "3"}, "data.turnIndex"),
    ("call_end", {"call_id": "A", "conversation_history": [{"role": "user", "text": "hi", "turnIndex": 1.5}]},
     "data.conversation_history[0].turnIndex"),
    ("turn", {"call_id": "A", "turn": {}, "cost_so_far": {"llm": -0.5}}, "data.cost_so_far.llm"),
    ("transcript", {"call_id": "A", "role": "user", "text": "hi", "history": [{"timestamp": "noon"}]},
     "data.history[0].timestamp"),
    ("call_start", {"call_id": 42}, "data.call_id"),
    ("call_start", {"call_id": "A", "caller": ["+1555"]}, "data.caller"),
    ("turn", {"call_id": "A", "turn": "not an object"}, "data.turn"),
])
def test_a_bad_field_is_named_by_its_full_path(event_type: str, data: dict[str, Any], field: str) -> None:
    assert [d["field"] for d in refusal(event_type, data)] == [field]


@pytest.mark.parametrize("field, limit", [
    ("call_id", MAX_ID_LENGTH), ("caller", MAX_ID_LENGTH), ("callee", MAX_ID_LENGTH), ("stt_provider", MAX_ID_LENGTH),
    ("status", MAX_SHORT_TEXT), ("direction", MAX_SHORT_TEXT), ("provider_mode", MAX_SHORT_TEXT),
])
def test_ids_names_and_short_texts_have_length_limits(field: str, limit: int) -> None:
    base = {"call_id": "A"}
    assert make_event("call_start", {**base, field: "x" * limit}).data[field] == "x" * limit
    (detail,) = refusal("call_start", {**base, field: "x" * (limit + 1)})
    assert detail["field"] == f"data.{field}" and str(limit) in detail["error"]


def test_the_role_of_a_line_is_a_short_text_and_the_event_id_an_id() -> None:
    assert refusal("transcript", {"call_id": "A", "role": "r" * 65, "text": "hi"})[0]["field"] == "data.role"
    assert make_event("call_start", {"call_id": "A"}, "k" * MAX_ID_LENGTH).key == "k" * MAX_ID_LENGTH
    for key in ("", "k" * (MAX_ID_LENGTH + 1), 7):
        assert refusal("call_start", {"call_id": "A"}, key)[0]["field"] == "id"


def test_an_empty_call_id_is_refused_and_call_end_may_carry_it_in_its_metrics() -> None:
    assert refusal("call_start", {"call_id": ""})[0]["field"] == "data.call_id"
    assert make_event("call_end", {"metrics": {"call_id": "M"}}).call_id == "M"


def test_data_must_be_an_object() -> None:
    for data in (None, [], "call", 5):
        assert refusal("call_start", data)[0]["field"] == "data"


def test_unknown_fields_are_kept_as_they_came_at_every_level() -> None:
    data = {"call_id": "A", "custom": {"crm_id": 7}, "metrics": {"duration_seconds": 3.0, "context_tokens": 204,
                                                                "cost": {"total": 0.1, "carbon": 0.2}}}
    event = make_event("call_end", data)
    assert event.data == data and event.data is not data  # a clean copy, nothing dropped


def test_the_real_patter_payloads_are_accepted() -> None:
    for event_type, name in (("call_start", "call_start.json"), ("transcript", "transcript_user.json"),
                             ("turn", "turn_metrics.json"), ("call_end", "call_end.json")):
        assert make_event(event_type, payload(name)).call_id == "CA941522e75e5447c05b6ca6d201f13845"


def test_a_line_without_its_own_stamp_takes_the_stamp_its_history_gives_it() -> None:
    history = [{"role": "assistant", "text": "Hello?", "timestamp": 10.0}, {"role": "user", "text": "Hi", "timestamp": 12.5}]
    event = make_event("transcript", {"call_id": "A", "role": "user", "text": "Hi", "history": history})
    assert event.data == {"call_id": "A", "role": "user", "text": "Hi", "timestamp": 12.5}  # history dropped
    other = make_event("transcript", {"call_id": "A", "role": "user", "text": "Bye", "history": history})
    assert "timestamp" not in other.data  # the last entry is another line: no stamp to take
    own = make_event("transcript", {"call_id": "A", "role": "user", "text": "Hi", "timestamp": 1.0, "history": history})
    assert own.data["timestamp"] == 1.0


def test_a_batch_is_checked_whole_and_every_bad_envelope_is_named() -> None:
    good = {"type": "call_start", "data": {"call_id": "A"}}
    assert [e.call_id for e in events_from_body({"events": [good, good | {"id": "x"}]})] == ["A", "A"]
    assert events_from_body(good | {"id": "k1"})[0].key == "k1"
    with pytest.raises(ValidationError) as caught:
        events_from_body({"events": [good, {"type": "turn", "data": {"call_id": "A"}}, "nope", {"type": "x", "data": {}}]})
    assert [d["field"] for d in caught.value.details] == ["events[1].data.turn", "events[2]", "events[3].type"]
    for body in ({"events": []}, {"events": {"type": "call_start"}}):
        with pytest.raises(ValidationError) as caught:
            events_from_body(body)
        assert caught.value.details[0]["field"] == "events"
    with pytest.raises(ValidationError) as caught:
        events_from_body(["not", "an", "envelope"])
    assert caught.value.details[0]["field"] == "body"
