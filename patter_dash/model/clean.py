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
    """Strict JSON: no NaN/Infinity, no overflowing numbers, bounded nesting."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValidationError("body is not valid UTF-8") from None
    except ValueError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None
    return value


# ------------------------------------------------------------- sanitising


_SURROGATE = re.compile("[\ud800-\udfff]")
#: In ``json.dumps`` output: an integer of 16+ digits, or a float written with a
#: positive exponent (Python does so from 1e16 up); either may exceed MAX_NUMBER.
_HUGE_NUMBER = re.compile(r"\d{16}|e\+\d")
#: Bigger numbers lose precision as doubles and overflow sums of nano-dollars.
MAX_NUMBER = 2**53


def _clean_text(value: str) -> str:
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
        return _clean_text(key)[:MAX_KEY_LENGTH]
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # what json.dumps itself makes of such a key
    raise ValidationError("unsupported key", [{"field": path, "error": f"keys must be strings, got {type(key).__name__}"}])


def _plain(value: Any) -> Any:
    """json.dumps fallback: Patter's frozen dataclasses become dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(type(value).__name__)


def sanitize(value: Any, *, copy: bool = True) -> Any:
    """``value`` as plain JSON types, cleaned, or raise naming the bad field.

    Dataclasses (Patter's frozen models) become dicts, tuples become lists,
    strings lose NULs and lone surrogates and are capped in length, numbers
    must be finite. The common case (nothing to clean) runs in C through one
    ``json.dumps``; only input that needs cleaning, or is invalid, takes the
    slow walk that names the field. ``copy=False`` keeps already-parsed JSON
    as is when it is clean.
    """
    try:
        text = json.dumps(value, default=_plain, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise ValidationError("nested too deeply", [{"field": "data", "error": "nested too deeply"}]) from None
    except (ValueError, TypeError):
        return _walk(value, "data")  # names the NaN or the unsupported value
    if "\\u0000" in text or len(text) > MAX_TEXT_LENGTH or not _is_utf8(text) or _HUGE_NUMBER.search(text):
        return _walk(value, "data")
    if copy or not isinstance(value, (dict, list)):
        return json.loads(text)
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
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
