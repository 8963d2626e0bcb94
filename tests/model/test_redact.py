"""Redaction at ingest: the patterns, the number masks and hashes, the modes, and the time bound."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patter_dash.model.events import field_error, make_event
from patter_dash.model.redact import Redactor, hash_query, luhn, mask_number, number_hash, redact_text

KEY = b"k" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("mail john.doe+x@example.co.uk now", "mail [email] now"),
    ("card 4111 1111 1111 1111 please", "card [card] please"),
    ("card 5500-0000-0000-0004.", "card [card]."),
    ("call +1 (555) 123-4567 or 555.123.4567", "call [phone] or [phone]"),
    ("+44 20 7946 0958", "[phone]"),
    ("account 12345678", "account [number]"),
    ("order A123456B", "order A[number]B"),
    ("at 10:30 for $45.99, 3 items, room 12345", "at 10:30 for $45.99, 3 items, room 12345"),
])
def test_patterns_and_tokens(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_a_card_number_failing_luhn_is_still_a_number() -> None:
    assert not luhn("4111111111111112")
    assert redact_text("4111 1111 1111 1112") == "[number]"


def test_masks_keep_the_first_five_and_last_four() -> None:
    assert mask_number("+15551234567") == "+1555•••4567"
    assert mask_number("+1 (555) 123-4567") == "+1555•••4567"
    assert mask_number("1234") == "•••"
    assert mask_number("") == ""


def test_hash_is_keyed_stable_and_ignores_spacing() -> None:
    assert number_hash(KEY, "+15551234567") == number_hash(KEY, "+1 555-123-4567")
    assert number_hash(KEY, "+15551234567") != number_hash(b"other" * 8, "+15551234567")
    assert len(number_hash(KEY, "+15551234567")) == 16
    redactor = Redactor("numbers", KEY)
    assert hash_query(redactor, "+1 555 123 4567") == number_hash(KEY, "+15551234567")
    assert hash_query(redactor, "4567") == "4567"  # a part of a number is searched as typed (the mask's digits)


def _call_end(text: str) -> dict:
    return {
        "call_id": "c1", "caller": "+15551234567", "callee": "+15557654321", "ended_at": 1_700_000_100.0,
        "custom_params": {"From": "+15551234567", "note": text},
        "transcript": [{"role": "user", "text": text, "timestamp": 1_700_000_000.0, "tool_result": {"email": text}}],
        "metrics": {"call_id": "c1", "duration_seconds": 60.0, "stt_provider": "deepgram", "llm_model": "gpt-4o-2024-08-06",
                    "turns": [{"turn_index": 0, "user_text": text, "agent_text": text, "latency": {"total_ms": 800.0}}],
                    "cost": {"total": 0.5}, "account": 4111111111111111},
    }


def _events(text: str) -> list[tuple[str, dict]]:
    return [
        ("call_start", {"call_id": "c1", "caller": "+15551234567", "callee": "+15557654321", "from": "+15551234567"}),
        ("transcript", {"call_id": "c1", "role": "user", "text": text, "turnIndex": 0, "tool_args": {"q": text}, text: 1}),
        ("turn", {"call_id": "c1", "turn": {"turn_index": 0, "user_text": text, "agent_text": text}, "cost_so_far": {"total": 0.1}}),
        ("call_end", _call_end(text)),
    ]


PII = "reach me at jane.roe@example.org, card 4111 1111 1111 1111, phone +1 (555) 123-4567, ssn 123456789"
RAW = ["jane.roe@example.org", "4111 1111 1111 1111", "(555) 123-4567", "123456789", "15551234567", "5551234567"]


@pytest.mark.parametrize("mode", ["pii", "metadata"])
def test_every_text_field_is_redacted_and_the_event_stays_valid(mode: str) -> None:
    redactor = Redactor(mode, KEY)
    for kind, data in _events(PII):
        event = make_event(kind, data)
        redactor.event(event.type, event.data)
        encoded = json.dumps(event.data, ensure_ascii=False)
        for raw in RAW:
            assert raw not in encoded, (kind, raw, encoded)
        assert field_error(kind, event.data) is None
        assert event.call_id == "c1" and event.data.get("call_id", "c1") == "c1"
        if mode == "metadata":
            assert "reach me" not in encoded
        elif kind != "call_start":
            assert "reach me at [email], card [card], phone [phone], ssn [number]" in encoded
    end = make_event("call_end", _call_end(PII))
    redactor.event(end.type, end.data)
    assert end.data["caller"] == "+1555•••4567"
    assert end.data["caller_hash"] == number_hash(KEY, "+15551234567")
    assert end.data["custom_params"]["From"] == "+1555•••4567"
    assert end.data["metrics"]["llm_model"] == "gpt-4o-2024-08-06"  # labels are not caller text
    assert end.data["metrics"]["cost"] == {"total": 0.5}
    assert end.data["metrics"]["turns"][0]["latency"] == {"total_ms": 800.0}
    if mode == "metadata":
        assert "transcript" not in end.data
        assert end.data["metrics"]["turns"][0]["user_text"] == ""


def test_numbers_mode_masks_numbers_and_leaves_words() -> None:
    redactor = Redactor("numbers", KEY)
    event = make_event("call_start", {"call_id": "c1", "caller": "+15551234567", "callee": "", "to": "+15557654321"})
    redactor.event(event.type, event.data)
    assert event.data == {"call_id": "c1", "caller": "+1555•••4567", "callee": "", "to": "+1555•••4321",
                          "caller_hash": number_hash(KEY, "+15551234567")}
    line = make_event("transcript", {"call_id": "c1", "role": "user", "text": "my card is 4111 1111 1111 1111"})
    redactor.event(line.type, line.data)
    assert line.data["text"] == "my card is 4111 1111 1111 1111"


def test_off_changes_nothing() -> None:
    for kind, data in _events(PII):
        event = make_event(kind, data)
        before = json.dumps(event.data)
        Redactor("off", KEY).event(event.type, event.data)
        assert json.dumps(event.data) == before


# ------------------------------------------------------------- generated

_filler = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="@"), max_size=40)
_email = st.from_regex(r"[a-z][a-z0-9._]{0,15}@[a-z]{1,10}\.(com|org|co\.uk)", fullmatch=True)
_phone = st.sampled_from(["+{}{}", "({}) {}-{}", "{}-{}-{}", "{}.{}.{}", "+{} {} {}"]).flatmap(
    lambda shape: st.tuples(*[st.integers(100, 999) for _ in range(shape.count("{}"))]).map(
        lambda parts: shape.format(*parts) + "4567"))


def _card() -> st.SearchStrategy[str]:
    def make(body: str) -> str:
        for check in "0123456789":
            if luhn(body + check):
                return body + check
        raise AssertionError

    return st.from_regex(r"4[0-9]{14}", fullmatch=True).map(make).flatmap(
        lambda digits: st.sampled_from([" ", "-", ""]).map(lambda sep: sep.join(digits[i:i + 4] for i in range(0, 16, 4))))


_secret = st.one_of(_email, _phone, _card(), st.from_regex(r"[0-9]{6,12}", fullmatch=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_filler, _secret), min_size=1, max_size=5), _filler)
def test_generated_transcripts_never_keep_the_pii(parts: list[tuple[str, str]], tail: str) -> None:
    text = "".join(f"{before} {secret} " for before, secret in parts) + tail
    redacted = redact_text(text)
    for _, secret in parts:
        assert secret not in redacted
        digits = "".join(c for c in secret if c.isdigit())
        assert digits not in "".join(c for c in redacted if c.isdigit()) or len(digits) < 6 and "@" in secret


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_has_no_run_of_six_digits_left(text: str) -> None:
    redacted = redact_text(text)
    run = 0
    for ch in redacted:
        run = run + 1 if ch.isdigit() else 0
        assert run < 6, redacted


@pytest.mark.parametrize("unit", ["1 ", "1-", "1", "a", "a@", "a.@", "@a.", "1 (", "(1", "+1 ", "a@b.", "1  ", "1 - ", "4111 "])
def test_twenty_thousand_adversarial_characters_redact_fast(unit: str) -> None:
    text = (unit * (20_000 // len(unit) + 1))[:20_000]
    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < 0.25  # linear: milliseconds; a quadratic pattern takes seconds
