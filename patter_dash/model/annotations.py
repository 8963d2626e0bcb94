"""Annotations: the tags, notes and rating an operator gives a call (``PATCH /api/v1/calls/{call_id}``).

The body is a typed model (:class:`CallPatch`, documented in the OpenAPI
document like every other shape) checked by msgspec; :func:`parse_patch`
adds what a schema cannot say (tags are trimmed, NFC-normalised and
de-duplicated; notes are cleaned as transcript text is) and names every bad
field. The result is the plain dict the pipeline journals and applies: only
the fields the body set.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .clean import ValidationError, sanitize

MAX_TAGS = 10
MAX_TAG_LENGTH = 32
MAX_NOTES = 2_000
#: Characters a tag may not hold: controls (C0, DEL, C1), the invisible format characters that can
#: reorder or hide text (bidi overrides, zero-width), line separators, and the comma
#: (the separator where tags are written as one cell or one field: CSV, the history filter's display).
#: Escapes, not the characters: the pattern is also the OpenAPI document's, which must be valid UTF-8.
_NOT_IN_TAG = r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb,"
TAG_PATTERN = f"^[^{_NOT_IN_TAG}]+$"

Tag = Annotated[
    str,
    Meta(
        min_length=1, max_length=MAX_TAG_LENGTH, pattern=TAG_PATTERN,
        description="A short label: trimmed, then 1-32 characters, no control or invisible format characters, no comma.",
    ),
]
FIELDS = ("tags", "notes", "rating")


class CallPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """PATCH /api/v1/calls/{call_id}: what to change; a field left out stays as it is (at least one is required).

    tags replaces the call's tags whole ([] clears them; repeats are dropped); notes replaces its
    notes ("" or null clears them; NUL removed, lone surrogates become U+FFFD); rating is 1-5, or
    null to clear it."""

    tags: Annotated[list[Tag], Meta(max_length=MAX_TAGS)] | UnsetType = UNSET
    notes: Annotated[str, Meta(max_length=MAX_NOTES)] | None | UnsetType = UNSET
    rating: Annotated[int, Meta(ge=1, le=5)] | None | UnsetType = UNSET


def parse_patch(body: Any) -> dict[str, Any]:
    """The changes a PATCH body asks for, as ``{field: value}``; raise :class:`ValidationError` naming the fields."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", [{"field": "body", "error": "must be an object"}])
    unknown = sorted(str(k) for k in body if k not in FIELDS)
    if unknown:
        raise ValidationError(
            "unknown field(s)", [{"field": k[:64], "error": f"is not one of {', '.join(FIELDS)}"} for k in unknown[:10]]
        )
    if not body:
        raise ValidationError("nothing to change", [{"field": "body", "error": f"must set at least one of {', '.join(FIELDS)}"}])
    given = sanitize(body)  # strings lose NUL and lone surrogates, as transcript text does
    if isinstance(given.get("tags"), list):
        given["tags"] = [unicodedata.normalize("NFC", t.strip()) if isinstance(t, str) else t for t in given["tags"]]
    try:
        patch = msgspec.convert(given, CallPatch, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        if not message:
            message, where = str(exc), "$"
        if "matching regex" in message:  # the pattern itself says nothing to a person
            message = "must hold no control or invisible format characters and no comma"
        raise ValidationError("invalid annotation", [{"field": where.rstrip("`").removeprefix("$.") or "body", "error": message}]) from None
    changes: dict[str, Any] = {}
    if patch.tags is not UNSET:
        changes["tags"] = list(dict.fromkeys(patch.tags))
    if patch.notes is not UNSET:
        changes["notes"] = patch.notes or ""
    if patch.rating is not UNSET:
        changes["rating"] = patch.rating
    return changes
