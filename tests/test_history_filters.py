"""The reviewers' filters (issue 13): minimum/maximum duration, cost and response latency; provider and model.

They read the same from memory and from the history file: an app that keeps
a few calls in memory over an SQLite file answers every list what an app
holding every call in memory answers, and both agree with the calls' own
public records (what is listed matches; what is left out does not). They
combine with the older filters and reach the exports; bad values get a 400
naming the parameter; a file written before the ``labels`` column (schema 4)
is filled in when it is opened; the dashboard sets them from a shareable
address in a real Chromium.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
from __future__ import annotations

import csv
import io
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patter_dash.journal.sqlite import SCHEMA_VERSION
from patter_dash.model import quality
from tests.test_analytics_providers import LLM, STT, TELEPHONY, TTS, _app, _details, _get, _pipeline, _stream, _submit

NANO = 10**9
RANGES = {"duration": "duration_seconds", "cost": "cost", "latency": "latency_avg_ms"}


def _value(call: dict[str, Any], name: str) -> float | None:
    """What a call's public record says the range filter ``name`` compares."""
    if name == "cost":
        return call["cost"]["total"]
    return call[RANGES[name]]


def _listed(client: Any, query: str) -> list[str]:
    found: list[str] = []
    while True:
        page = _get(client, f"/api/v1/calls?{query}&limit=1000&offset={len(found)}")
        found += [c["call_id"] for c in page["data"]]
        if len(found) >= page["pagination"]["total"]:
            return found


def _random_query(rng: random.Random, calls: list[dict[str, Any]]) -> tuple[str, dict[str, Any], str]:
    """Some of the new filters: their query, what they ask (for the brute force), and sometimes an older filter.

    A bound is often a listed call's own figure, so "both included" is tried, not only passed by.
    """
    chosen: dict[str, Any] = {}
    for name, top in (("duration", 900.0), ("cost", 0.2), ("latency", 2500.0)):
        if rng.random() < 0.4:
            figures = [f for c in calls if (f := _value(c, name)) is not None]

            def bound(floor: float) -> float | None:
                roll = rng.random()
                if roll < 0.3:
                    return None
                exact = [f for f in figures if f >= floor]
                if roll < 0.7 and exact:
                    return rng.choice(exact)
                # Never below the floor (a call's own figure can pass this filter's top, or round below it).
                return max(floor, round(rng.uniform(floor, max(floor, top)), 3))

            lo = bound(0.0)
            hi = bound(lo or 0.0)
            if lo is not None or hi is not None:
                chosen[name] = (lo, hi)
    if rng.random() < 0.4:
        pick = rng.choice([STT, LLM, TTS])
        chosen["provider"] = rng.choice([p for p, _ in pick if p] + [rng.choice(TELEPHONY[:2])])
    if rng.random() < 0.3:
        chosen["model"] = rng.choice([m for _, m in STT + LLM + TTS if m])
    if not chosen:
        chosen["provider"] = "deepgram"
    parts = []
    for name, value in chosen.items():
        if name in RANGES:
            lo, hi = value
            parts += [f"min_{name}={lo}"] if lo is not None else []
            parts += [f"max_{name}={hi}"] if hi is not None else []
        else:
            parts.append(f"{name}={value}")
    older = rng.choice(["", "", "&status=completed", "&direction=inbound", "&q=refund", "&provider_mode=pipeline"])
    return "&".join(parts), chosen, older


def _margin(name: str) -> float:
    """How far from a bound the brute force trusts a rounded public figure (ms or USD cents are rounded there)."""
    return {"duration": 0.002, "cost": 2e-9, "latency": 0.06}[name]


def _verdict(call: dict[str, Any], chosen: dict[str, Any]) -> bool | None:
    """Whether the call matches by its public record; None when a figure sits too near a bound to say."""
    unsure = False
    for name, value in chosen.items():
        if name == "provider" and value not in call["providers"].values():
            return False
        if name == "model" and value not in call["models"].values():
            return False
        if name in RANGES:
            lo, hi = value
            figure = _value(call, name)
            if figure is None:
                return False
            margin = _margin(name)
            if (lo is not None and figure < lo - margin) or (hi is not None and figure > hi + margin):
                return False
            if (lo is not None and abs(figure - lo) <= margin) or (hi is not None and abs(figure - hi) <= margin):
                unsure = True
    return None if unsure else True


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), calls=st.integers(1, 300), max_calls=st.sampled_from([1, 9, 1000]))
@example(seed=7, calls=300, max_calls=9)
def test_the_new_filters_read_alike_from_memory_and_file_and_match_each_calls_record(
    tmp_path_factory: Any, seed: int, calls: int, max_calls: int
) -> None:
    rng = random.Random(seed)
    app = _app(tmp_path_factory.mktemp("filters") / "history.db", max_calls)
    reference = _app(None, 10**6)
    try:
        _submit([_pipeline(app), _pipeline(reference)], _stream(rng, calls))
        client, ref = app.test_client(), reference.test_client()
        everything = {c["call_id"]: c for c in _details(ref, "")}
        for _ in range(12):
            query, chosen, older = _random_query(rng, list(everything.values()))
            listed = _listed(client, query + older)
            assert listed == _listed(ref, query + older), query + older  # same calls, same order
            narrowed = set(_listed(ref, query))
            for call_id, call in everything.items():
                verdict = _verdict(call, chosen)
                if verdict is not None:
                    assert (call_id in narrowed) == verdict, (query, call_id, verdict)
            assert set(listed) <= narrowed  # an older filter only narrows
    finally:
        for a in (app, reference):
            a.extensions["patter_dash"].stop()


@pytest.fixture
def filtered_app(tmp_path: Path) -> Any:
    app = _app(tmp_path / "history.db", 2)
    _submit([_pipeline(app)], _known_calls())
    yield app
    app.extensions["patter_dash"].stop()


def _known_calls() -> list[tuple[str, dict[str, Any], str]]:
    """Four finished calls with set figures: (duration s, total $, response ms, STT provider, LLM model)."""
    rows = [("F1", 30, 0.01, 400.0, "deepgram", "gpt-4o-mini"), ("F2", 300, 0.10, 1200.0, "whisper", "gpt-4o-mini"),
            ("F3", 600, 0.50, None, "deepgram", "claude-3-5-haiku"), ("F4", 5, 0.0, 2000.0, None, None)]
    events = []
    for n, (call_id, seconds, total, response, stt, llm) in enumerate(rows):
        metrics: dict[str, Any] = {"call_id": call_id, "duration_seconds": seconds,
                                   "cost": {"stt": 0, "tts": 0, "llm": 0, "telephony": total, "total": total}}
        if response is not None:
            metrics["latency_avg"] = {"agent_response_ms": response}
        if stt:
            metrics["stt_provider"] = stt
        if llm:
            metrics["llm_model"] = llm
        events.append(("call_end", {"call_id": call_id, "ended_at": 1_800_000_000 + n, "status": "completed",
                                    "metrics": metrics}, f"{call_id}-e"))
    return events


@pytest.mark.parametrize(("query", "expected"), [
    ("min_duration=30", ["F3", "F2", "F1"]),
    ("min_duration=30&max_duration=300", ["F2", "F1"]),
    ("max_cost=0.01", ["F4", "F1"]),
    ("min_cost=0.1", ["F3", "F2"]),
    ("min_latency=1000", ["F4", "F2"]),  # F3 reported no latency: a latency bound leaves it out
    ("max_latency=5000", ["F4", "F2", "F1"]),
    ("provider=deepgram", ["F3", "F1"]),
    ("provider=deep", []),  # exact, never a substring
    ("model=gpt-4o-mini&max_duration=100", ["F1"]),
    ("provider=deepgram&min_cost=0.2&min_duration=600&max_duration=600", ["F3"]),
])
def test_bounds_are_inclusive_and_combine(filtered_app: Any, query: str, expected: list[str]) -> None:
    client = filtered_app.test_client()
    assert _listed(client, query) == expected
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/export/csv?{query}").get_data(as_text=True))))
    assert [r["call_id"] for r in rows] == expected  # the export takes the same filters
    exported = client.get(f"/api/v1/export/json?{query}").get_json()
    assert [c["call_id"] for c in exported] == expected


@pytest.mark.parametrize(("query", "name"), [
    ("min_duration=abc", "min_duration"),
    ("max_cost=NaN", "max_cost"),
    ("min_latency=-1", "min_latency"),
    ("max_duration=inf", "max_duration"),
    ("min_cost=1e400", "min_cost"),
    ("min_latency= 5", "min_latency"),
    ("min_duration=10&max_duration=5", "max_duration"),
    ("provider=" + "x" * 65, "provider"),
    ("model=" + "m" * 129, "model"),
])
def test_bad_bounds_get_a_400_naming_the_parameter(filtered_app: Any, query: str, name: str) -> None:
    client = filtered_app.test_client()
    for route in ("/api/v1/calls", "/api/v1/export/csv", "/api/v1/analytics/providers"):
        response = client.get(f"{route}?{query}")
        assert response.status_code == 400, (route, query)
        assert name in response.get_json()["error"]


def test_a_schema_4_file_gets_its_labels_filled_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    app = _app(path, 1)
    _submit([_pipeline(app)], _known_calls())
    app.extensions["patter_dash"].stop()
    # What a file written by the release before the labels column holds: the column and the search index gone,
    # the version 4.
    with closing(sqlite3.connect(path)) as db:
        for statement in ("DROP TRIGGER calls_fts_insert", "DROP TRIGGER calls_fts_delete", "DROP TABLE calls_fts",
                          "ALTER TABLE calls DROP COLUMN labels", *(f"ALTER TABLE calls DROP COLUMN {c}" for c in quality.COLUMNS)):
            db.execute(statement)
        db.execute("PRAGMA user_version=4")
        db.commit()
    app = _app(path, 1)
    try:
        client = app.test_client()
        assert _listed(client, "provider=deepgram") == ["F3", "F1"]
        assert _listed(client, "model=gpt-4o-mini") == ["F2", "F1"]
        assert _listed(client, "q=F3") == ["F3"]  # and its search index built
    finally:
        app.extensions["patter_dash"].stop()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# ------------------------------------------------------------------ the browser

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.test_ui_browser import browser, history_rows, open_page  # noqa: E402,F401


@pytest.mark.timeout(240)
def test_the_history_form_sets_the_filters_and_shares_them_in_the_address(live_server: Any, open_page: Any) -> None:
    server = live_server(PATTER_DASH_MAX_CALLS="2")
    server.post_events([{"type": kind, "data": data, "id": key} for kind, data, key in _known_calls()])
    page, guard = open_page()
    page.goto(f"{server.url}/dashboard#history")
    expect(history_rows(page)).to_have_count(4)
    form = page.locator("#pd-filters")
    form.get_by_label("Provider").fill("deepgram")
    expect(history_rows(page)).to_have_count(2)
    form.get_by_label("Duration at least (s)").fill("300")
    expect(history_rows(page)).to_have_count(1)
    expect(history_rows(page).first).to_have_attribute("data-call-id", "F3")
    page.wait_for_function("location.hash.includes('min_duration=300') && location.hash.includes('provider=deepgram')")
    shared = page.url
    assert "min_duration=300" in page.locator("#pd-export-csv").get_attribute("href")

    other, other_guard = open_page()
    other.goto(shared)
    expect(history_rows(other)).to_have_count(1)
    expect(other.locator("#pd-filters").get_by_label("Provider")).to_have_value("deepgram")
    expect(other.locator("#pd-filters").get_by_label("Duration at least (s)")).to_have_value("300")
    other.locator("#pd-filters").get_by_label("Response latency at least (ms)").fill("1000")
    expect(history_rows(other)).to_have_count(0)
    guard.check()
    other_guard.check()
