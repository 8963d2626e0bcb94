"""The quality filters over both engines: a dashboard holding a few calls in memory over a journal (SQLite,
PostgreSQL) lists what one holding every call in memory lists, before and after the quality columns are
added to a history written by the release before them (SQLite schema 6, PostgreSQL schema 1)."""

from __future__ import annotations

import random
from typing import Any

from patter_dash.model import quality
from tests.test_analytics_providers import _app, _get, _pipeline, _submit
from tests.test_quality import _listed, _stream

from .conftest import query

QUERIES = ["min_interruptions=1", "max_interruptions=0", "min_dead_air=1", "min_dead_air=2400&max_dead_air=4000",
           "min_tool_failures=1", "max_tool_failures=0&min_interruptions=1", "min_talk_over=0",
           "min_interruptions=2&status=completed"]


def _same(app: Any, reference: Any) -> None:
    client, ref = app.test_client(), reference.test_client()
    for q in QUERIES:
        assert _listed(client, q) == _listed(ref, q), q
    assert _get(client, "/api/v1/analytics/quality")["data"] == _get(ref, "/api/v1/analytics/quality")["data"]


def test_quality_filters_from_either_engine_and_after_the_upgrade_that_adds_them(new_db: Any, engine: str) -> None:
    db = new_db()
    events = _stream(random.Random(17), 80)
    reference = _app(None, 10**6)
    app = _app(db, 5)  # type: ignore[arg-type]
    try:
        _submit([_pipeline(app), _pipeline(reference)], events)
        _same(app, reference)
    finally:
        app.extensions["patter_dash"].stop()
    # What the release before wrote: no quality columns, the schema one version back.
    for column in quality.COLUMNS:
        query(db, f"ALTER TABLE calls DROP COLUMN {column}")
    if engine == "sqlite":
        query(db, "PRAGMA user_version=6")
    else:
        query(db, "DELETE FROM patter_dash_schema WHERE version >= 2")  # the later ones run again
    app = _app(db, 5)  # type: ignore[arg-type]
    try:
        _same(app, reference)  # the columns are back, filled from the stored calls
        filled = query(db, "SELECT count(*) FROM calls WHERE interruptions IS NULL OR dead_air_ms IS NULL OR tool_failures IS NULL")
        assert filled == [(0,)]
    finally:
        app.extensions["patter_dash"].stop()
        reference.extensions["patter_dash"].stop()
