"""Clean: untrusted input as plain, safe JSON values, or a :class:`ValidationError` naming the field.

Strict JSON (no NaN/Infinity, bounded nesting), text without NUL or lone
surrogates and within :data:`MAX_TEXT_LENGTH`, numbers finite and within
±2**53, object keys cleaned like values, and Patter's frozen dataclasses as
dicts. What an event's fields must *be* is :mod:`patter_dash.model.events`'
business; this module only makes values safe to keep, encode and show.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

#: Limits on untrusted input; documented in the README.
MAX_TEXT_LENGTH = 20_000
#: Object keys are names, not text: cut sooner.
MAX_KEY_LENGTH = 256
TRUNCATION_MARK = "…[truncated]"


class ValidationError(ValueError):
    """An event or envelope that cannot be accepted; ``details`` names the fields."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []



# --------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing numbers, bounded nesting.

    msgspec parses the common case in C. What it refuses (malformed input,
    lone-surrogate escapes, numbers past a double) is parsed again by the
    standard library, whose answers are the documented ones: the error
    message, or a value :func:`sanitize` then cleans or refuses by field.
    """
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValidationError("body is not valid UTF-8") from None
    except ValueError as exc:
        if "int_max_str_digits" in str(exc):  # Python's advice to its programmer, not to this client
            raise ValidationError("malformed JSON: a number has more than 4300 digits") from None
        raise ValidationError(f"malformed JSON: {exc}") from None
    return value


# ------------------------------------------------------------- sanitising


_SURROGATE = re.compile("[\ud800-\udfff]")
#: Bigger numbers lose precision as doubles and overflow sums of nano-dollars.
MAX_NUMBER = 2**53
_encode = msgspec.json.encode
_decode = msgspec.json.decode
_to_plain = msgspec.msgpack.Encoder().encode
_from_plain = msgspec.msgpack.Decoder().decode
#: Digits as "0", so a number of 16+ digits is a run of "0"s found by one C search.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN = b"0" * 16


def clean_text(value: str) -> str:
    """A string as every stored text is: no NUL, lone surrogates as U+FFFD, within :data:`MAX_TEXT_LENGTH`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be written as UTF-8 by any reader.
        value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) > MAX_TEXT_LENGTH:
        value = value[: MAX_TEXT_LENGTH - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return value


def _clean_key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return clean_text(key)[:MAX_KEY_LENGTH]
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # what json.dumps itself makes of such a key
    raise ValidationError("unsupported key", [{"field": path, "error": f"keys must be strings, got {type(key).__name__}"}])


def _plain(value: Any) -> dict[str, Any]:
    """A Patter frozen dataclass as a dict of its fields."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def sanitize(value: Any, *, copy: bool = True) -> Any:
    """``value`` as plain JSON types, cleaned, or raise naming the bad field.

    Dataclasses (Patter's frozen models) become dicts, tuples become lists,
    strings lose NULs and lone surrogates and are capped in length, numbers
    must be finite and within ±2**53. The common case (nothing to clean) is
    one msgspec encode and decode in C plus byte searches over the encoding
    that can only err towards suspicion; only input they flag, or that
    msgspec refuses, takes the slow walk that cleans and names the field.
    ``copy=False`` keeps already-parsed JSON as is when it is clean.
    """
    try:
        raw = _encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        # Lone surrogates (not UTF-8), unsupported types or keys, deep nesting.
        return _walk_top(value)
    if b"\\u0000" in raw or _suspect_numbers_or_lengths(raw):
        return _walk_top(value)
    if not copy and isinstance(value, (dict, list)):
        # Parsed JSON: only a number past a double (parsed as Infinity) can have become null.
        return value if b"null" not in raw or value == _decode(raw) else _walk_top(value)
    clean = _decode(raw)
    if not _same_as_plain(value, clean):
        return _walk_top(value)
    return clean


def _walk_top(value: Any) -> Any:
    try:
        return _walk(value, "data")
    except RecursionError:
        raise ValidationError("nested too deeply", [{"field": "data", "error": "nested too deeply"}]) from None


def _suspect_numbers_or_lengths(raw: bytes) -> bool:
    """Whether the JSON ``raw`` may hold a number past ±2**53, a text past its cap or a key past its own.

    Only what lies outside strings is searched for numbers, so ids and text
    full of digits stay on the fast path. Escaped backslashes and quotes are
    first masked with two bytes each, which keeps every string's length and
    its quotes the real ones. A byte count is never below a character count,
    so a string this judges short is short.
    """
    masked = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__") if b"\\" in raw else raw
    parts = masked.split(b'"')
    if len(raw) > MAX_KEY_LENGTH:
        longest = max(map(len, parts[1::2]), default=0)
        if longest > MAX_TEXT_LENGTH:
            return True
        # A key is a string followed by ':' (the encoding is compact); keys are cut sooner than texts.
        if longest > MAX_KEY_LENGTH and any(
            len(parts[i]) > MAX_KEY_LENGTH and parts[i + 1][:1] == b":" for i in range(1, len(parts) - 1, 2)
        ):
            return True
    # Outside strings: msgspec writes a float from 1e16 up with an exponent, and
    # an integer as its digits, so 16 digits in a row or "e<digit>" may be too big.
    numbers = b" ".join(parts[::2]).translate(_DIGITS)
    return _SIXTEEN in numbers or b"e0" in numbers


def _same_as_plain(value: Any, clean: Any) -> bool:
    """Whether ``clean`` is ``value`` as plain data: nothing became null or text on the way.

    msgspec writes NaN and Infinity as null and bytes, datetimes and the
    like as text; msgpack gives them back as they are (dataclasses as dicts,
    tuples as lists), so any difference sends the value to the walk, which
    names the field.
    """
    try:
        return bool(_from_plain(_to_plain(value)) == clean)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False


def _walk(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("numbers must be finite", [{"field": path, "error": "NaN and Infinity are not allowed"}])
        if abs(value) > MAX_NUMBER:
            raise ValidationError("number out of range", [{"field": path, "error": f"must be within ±{MAX_NUMBER}"}])
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = _plain(value)
    if isinstance(value, Mapping):
        # Keys are text from the same caller: cleaned like values (NUL, lone
        # surrogates, length), and a non-string key becomes its JSON spelling.
        return {_clean_key(k, path): _walk(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValidationError("unsupported value", [{"field": path, "error": f"unsupported type {type(value).__name__}"}])
