"""Clean (patter_dash/model/clean.py): untrusted values made safe to keep, encode and show.

The README's rules on untrusted input, one by one, on ``sanitize`` and ``parse_json``: NUL bytes
dropped, lone surrogates replaced, texts cut at 20,000 characters with a mark (keys at 256), numbers
finite and within ±2**53, keys cleaned like values, Patter's dataclasses as dicts. Over HTTP the
same rules are in tests/test_ingest_http.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from patter_dash.model.clean import (
    MAX_KEY_LENGTH,
    MAX_NUMBER,
    MAX_TEXT_LENGTH,
    TRUNCATION_MARK,
    ValidationError,
    parse_json,
    sanitize,
)


def refused(value) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        sanitize(value)
    (detail,) = caught.value.details
    return detail


def test_clean_values_come_back_equal_as_plain_json() -> None:
    value = {"call_id": "A", "n": 3, "x": 1.5, "ok": True, "none": None, "list": [1, "two", {"three": 3.0}],
             "text": "Grüße, 東京 😀"}
    assert sanitize(value) == value and sanitize(value) is not value
    assert sanitize(value, copy=False) is value  # freshly parsed JSON that needs nothing is kept as is


def test_nul_bytes_are_dropped_from_values_and_keys_at_any_depth() -> None:
    got = sanitize({"a\x00b": ["x\x00y", {"deep": "\x00\x00z"}]})
    assert got == {"ab": ["xy", {"deep": "z"}]}


def test_each_lone_surrogate_becomes_one_replacement_character() -> None:
    got = sanitize({"text": "a\ud800b\udfffc", "k\udc00": "ok", "pair": "😀"})
    assert got == {"text": "a\ufffdb\ufffdc", "k\ufffd": "ok", "pair": "😀"}
    json.dumps(got, ensure_ascii=False).encode("utf-8")  # writable as UTF-8 now


def test_texts_are_cut_at_the_limit_with_a_mark_and_keys_at_theirs() -> None:
    exact = "x" * MAX_TEXT_LENGTH
    assert sanitize({"t": exact})["t"] == exact
    cut = sanitize({"t": "y" * (MAX_TEXT_LENGTH + 1)})["t"]
    assert len(cut) == MAX_TEXT_LENGTH and cut.endswith(TRUNCATION_MARK) and cut.startswith("y" * 100)
    assert MAX_TEXT_LENGTH == 20_000 and TRUNCATION_MARK == "…[truncated]"
    key = "k" * (MAX_KEY_LENGTH + 50)
    assert list(sanitize({key: "v" * MAX_TEXT_LENGTH})) == ["k" * MAX_KEY_LENGTH]


def test_a_long_key_is_cut_in_a_small_event_too() -> None:
    assert list(sanitize({"k" * (MAX_KEY_LENGTH + 50): 1})) == ["k" * MAX_KEY_LENGTH]


@pytest.mark.parametrize("number", [MAX_NUMBER, -MAX_NUMBER, 9.0e15, 0, -0.0, 1e-300])
def test_numbers_within_2_53_are_kept(number: float) -> None:
    assert sanitize({"n": number}) == {"n": number}


@pytest.mark.parametrize("number", [MAX_NUMBER + 1, -MAX_NUMBER - 1, 1e16, -1e300, 10**30])
def test_numbers_beyond_2_53_are_refused_naming_the_field(number: float) -> None:
    detail = refused({"metrics": {"cost": {"total": number}}})
    assert detail["field"] == "data.metrics.cost.total" and str(MAX_NUMBER) in detail["error"]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_naming_the_field(number: float) -> None:
    assert refused({"turns": [{}, {"latency": number}]})["field"] == "data.turns[1].latency"


def test_keys_are_strings_or_what_json_makes_of_a_scalar_key() -> None:
    assert sanitize({1: "a", None: "b", 2.5: "d"}) == {"1": "a", "null": "b", "2.5": "d"}
    assert sanitize({True: "c", "x\x00": {False: 0}}) == {"true": "c", "x": {"false": 0}}
    detail = refused({"outer": {(1, 2): "x"}})
    assert detail["field"] == "data.outer" and "keys must be strings" in detail["error"]


def test_patters_dataclasses_become_dicts_and_tuples_lists() -> None:
    @dataclass(frozen=True)
    class Latency:
        stt_ms: float

    @dataclass(frozen=True)
    class Turn:
        turn_index: int
        latency: Latency
        words: tuple[str, ...]

    assert sanitize({"turn": Turn(2, Latency(120.5), ("a", "b\x00"))}) == {
        "turn": {"turn_index": 2, "latency": {"stt_ms": 120.5}, "words": ["a", "b"]}}


def test_values_no_json_can_hold_are_refused_naming_the_field() -> None:
    assert refused({"a": [1, object()]})["field"] == "data.a[1]"
    # What has a JSON form (a set, a UUID, a Decimal) is taken in that form.
    assert sorted(sanitize({"a": {1, 2}})["a"]) == [1, 2]


def test_parse_json_is_strict() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for raw, message in ((b'{"a": NaN}', "malformed JSON"), (b'{"a": -Infinity}', "malformed JSON"),
                         (b'{"a": ', "malformed JSON"), (b'{"a": "\xff"}', "UTF-8"),
                         (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                         (b'{"a": ' + b"7" * 5_000 + b"}", "a number has more than 4300 digits")):
        with pytest.raises(ValidationError, match=message) as refused:
            parse_json(raw)
        assert "sys." not in refused.value.message  # Python's advice to its programmer is not the client's


def test_nesting_too_deep_to_encode_is_refused_not_a_crash() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValidationError, match="nested too deeply"):
        sanitize({"a": deep})
