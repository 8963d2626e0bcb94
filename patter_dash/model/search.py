"""Search: the ``q`` query language, and the one folding both search paths compare with.

A query is terms separated by white space; a call matches when every term is
found, in any order, inside one of its fields (id, caller, callee, a redacted
number's hash, one transcript line): ``refund card`` finds a call with
"Refund" in one line and "card" in another. ``"quoted words"`` is one term, its
characters as they are (spaces included). A ``*`` ending a word is dropped: a
term already matches inside a word, so ``refund*`` is ``refund`` and ``+1555``
finds every number it starts. Every other character (punctuation, ``:``,
``^``, ``-``, ``AND``, ``NEAR``) is itself, literally; an unbalanced quote runs
to the end; a quote never is a character searched for.

Case is folded (:func:`fold`, Python's ``casefold``: ``STRASSE`` finds
``Straße``) by this module for both paths: memory's substring test and the
journal's trigram index, which folds nothing itself, so the two answer the
same question by construction.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: Between fields in the stored search text: no term holds one, so no match spans two fields.
FIELD_SEPARATOR = "\n"
#: The index splits text into three-character pieces: a shorter term is looked for by a scan.
INDEXED_LENGTH = 3
#: At most this many terms in one query (each is one more pass over the index).
MAX_TERMS = 16
#: A ``q``'s matches on disk are counted up to this many: past it, the count stops (a common word in a
#: million calls would take longer to count than to list) and a page says its total is a lower bound.
COUNT_LIMIT = 10_000
#: A row's ``match.text``: the matching line, cut to about this many characters around the first hit.
MATCH_CHARS = 160

_QUOTED = re.compile(r'"([^"]*)"?|(\S+)')


class BadQuery(ValueError):
    """A ``q`` that has nothing to search for, or too much."""


def fold(text: str) -> str:
    """A field as search compares it: case folded (``ß`` is ``ss``); nothing else changes, so offsets stay near."""
    return text.casefold()


def _fold_term(term: str) -> str:
    # No newline (the stored text's field separator: no term spans two fields) and no NUL
    # (FTS5 reads one as the query's end; stored text has none, cleaned at ingest).
    return term.replace("\x00", "").replace(FIELD_SEPARATOR, " ").casefold()


@lru_cache(maxsize=256)
def terms(query: str) -> tuple[str, ...]:
    """The folded terms of ``q``, longest first (the rarest usually: the index narrows fastest by it).

    Raises :class:`BadQuery` when nothing is left to search for (``""``,
    ``*``) or past :data:`MAX_TERMS`.
    """
    found: list[str] = []
    for quoted, word in _QUOTED.findall(query):
        term = _fold_term(quoted if quoted or not word else word.replace('"', ""))
        if word:
            term = term.rstrip("*")
        if term and term not in found:
            found.append(term)
    if not found:
        raise BadQuery("q has nothing to search for: give a word, a number, or a \"quoted phrase\"")
    if len(found) > MAX_TERMS:
        raise BadQuery(f"q has more than {MAX_TERMS} terms")
    return tuple(sorted(found, key=len, reverse=True))


def fts_query(found: tuple[str, ...]) -> str | None:
    """The FTS5 ``MATCH`` text for the terms the trigram index can answer (None: none can).

    Each is a quoted string, its quotes doubled: FTS5 reads nothing in it as
    syntax (``NEAR``, ``AND``, ``:``, ``^``, ``*`` are characters).
    """
    long = [t for t in found if len(t) >= INDEXED_LENGTH]
    if not long:
        return None
    return " ".join('"' + t.replace('"', '""') + '"' for t in long)


def short_terms(found: tuple[str, ...]) -> list[str]:
    """The terms the index cannot answer (under three characters): looked for in the stored text."""
    return [t for t in found if len(t) < INDEXED_LENGTH]


def matches(text: str, found: tuple[str, ...]) -> bool:
    """Whether every term is inside the folded fields (one text, a line apart: no term spans two)."""
    return all(term in text for term in found)


def first_match(lines: Any, found: tuple[str, ...], text_at: int, role_at: int) -> dict[str, Any] | None:
    """The first transcript line holding a term: ``{"index", "role", "text", "spans"}``, plain text.

    ``text`` is the line, cut to about :data:`MATCH_CHARS` around the first hit
    (``…`` marks a cut); ``spans`` the ``[start, end)`` character ranges of the
    terms in it, for the table to mark (the page builds text nodes, never HTML).
    """
    for index, line in enumerate(lines):
        text = line[text_at]
        spans = _spans(text, found)
        if spans:
            text, spans = _window(text, spans)
            return {"index": index, "role": line[role_at], "text": text, "spans": spans}
    return None


def _spans(text: str, found: tuple[str, ...]) -> list[list[int]]:
    """Where the terms are in ``text``, as ranges of ``text`` itself (folding may change lengths)."""
    folded, origin = _fold_mapped(text)
    ranges: list[list[int]] = []
    for term in found:
        at = folded.find(term)
        while at >= 0:
            ranges.append([origin[at], origin[at + len(term) - 1] + 1])
            at = folded.find(term, at + 1)
    ranges.sort()
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _fold_mapped(text: str) -> tuple[str, list[int]]:
    """:func:`fold` of ``text`` and, for each folded character, the index of the character it came from."""
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for piece in ch.casefold():
            out.append(piece)
            origin.append(i)
    return "".join(out), origin


def _window(text: str, spans: list[list[int]]) -> tuple[str, list[list[int]]]:
    """``text`` cut to about :data:`MATCH_CHARS` around the first span, spans shifted to the cut."""
    if len(text) <= MATCH_CHARS:
        return text, spans
    first = spans[0][0]
    start = max(0, min(first - MATCH_CHARS // 4, len(text) - MATCH_CHARS))
    end = start + MATCH_CHARS
    head = "…" if start else ""
    tail = "…" if end < len(text) else ""
    shift = len(head) - start
    kept = [[max(s, start) + shift, min(e, end) + shift] for s, e in spans if s < end and e > start]
    return head + text[start:end] + tail, kept
