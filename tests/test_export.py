"""Streamed CSV / JSON / NDJSON export: complete at 100,000 calls, spreadsheet-safe, strict JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from conftest import post

from patter_dash.model.events import make_event
from patter_dash.run.app import create_app

BASE = 1_780_000_000.0  # 2026-05-28, epoch seconds
COST = {"stt": 0.001234, "tts": 0.00201, "llm": 0.000105, "telephony": 0.0085, "total": 0.011849}


def ended(call_id: str, i: int = 0, **fields: Any) -> dict[str, Any]:
    """A Patter call_end body: started ``BASE + 60 i``, 30.5 s long."""
    metrics = {"duration_seconds": 30.5, "cost": COST, "provider_mode": "pipeline", "stt_provider": "deepgram"}
    metrics.update(fields.pop("metrics", {}))
    return {
        "call_id": call_id,
        "caller": f"+1555{i:07d}",
        "callee": "+15550001234",
        "direction": "inbound",
        "ended_at": BASE + 60 * i + 30.5,
        "metrics": metrics,
        **fields,
    }


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in exported JSON")

    return json.loads(text, parse_constant=refuse)


def csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body, newline="")))


# ------------------------------------------------------------- 100,000 calls

N = 100_000


@pytest.fixture(scope="module")
def big_client():
    app = create_app({"TESTING": True, "PATTER_DASH_MAX_CALLS": N + 10, "PATTER_DASH_QUEUE_SIZE": 20_000})
    dash = app.extensions["patter_dash"]
    events = [make_event("call_end", ended(f"CA{i:06d}", i)) for i in range(N)]
    for start in range(0, N, 10_000):
        dash.pipeline.submit(events[start : start + 10_000], timeout=60)
    assert dash.store.sizes()["completed"] == N
    yield app.test_client()
    dash.stop()


@pytest.mark.checklist(41, 42)
def test_csv_export_of_100k_calls_is_complete_and_parses_back(big_client) -> None:
    response = big_client.get("/api/v1/export/csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Content-Disposition"].endswith('.csv"')
    rows = csv_rows(response.get_data(as_text=True))
    assert len(rows) == N
    assert {r["call_id"] for r in rows} == {f"CA{i:06d}" for i in range(N)}
    assert rows[0]["call_id"] == f"CA{N - 1:06d}"  # newest first, like the list
    last = rows[-1]
    assert last["caller"] == "'+15550000000"  # the documented apostrophe rule
    assert float(last["duration_seconds"]) == 30.5
    assert float(last["cost_total"]) == COST["total"]
    assert last["started_at"] == "2026-05-28T20:26:40.000Z"


@pytest.mark.checklist(42)
def test_json_export_of_100k_calls_is_complete_strict_json(big_client) -> None:
    response = big_client.get("/api/v1/export/json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].endswith('.json"')
    calls = strict_json(response.get_data(as_text=True))
    assert len(calls) == N
    assert len({c["call_id"] for c in calls}) == N
    assert calls[-1]["caller"] == "+15550000000"  # JSON is not a spreadsheet: no apostrophe
    assert calls[-1]["cost"]["total"] == COST["total"]


def test_ndjson_export_of_100k_calls_is_one_call_a_line(big_client) -> None:
    response = big_client.get("/api/v1/export/json?format=ndjson")
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].endswith('.ndjson"')
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == N
    assert strict_json(lines[0])["call_id"] == f"CA{N - 1:06d}"
    assert strict_json(lines[-1])["call_id"] == "CA000000"


def test_export_filters_match_the_list_route(big_client) -> None:
    query = "from=2026-05-28T20:26:40Z&to=1780001200&q=ca00000"  # 20 calls by time, 10 of them by id
    listed = big_client.get(f"/api/v1/calls?{query}&limit=1000").get_json()
    rows = csv_rows(big_client.get(f"/api/v1/export/csv?{query}").get_data(as_text=True))
    assert [r["call_id"] for r in rows] == [c["call_id"] for c in listed["data"]]
    assert [r["call_id"] for r in rows] == [f"CA{i:06d}" for i in range(9, -1, -1)]


# ------------------------------------------------------------ hostile values

HOSTILE_TEXT = {
    "=1+1": "'=1+1",
    "+15551234567": "'+15551234567",
    "-2": "'-2",
    "@x": "'@x",
    "\tcmd": "'\tcmd",
    "\rcmd": "'\rcmd",
    '=HYPERLINK("http://evil.example","x")': '\'=HYPERLINK("http://evil.example","x")',
    'say "hi", then go': 'say "hi", then go',
    "two\nlines": "two\nlines",
    "Zoë 🚀 日本": "Zoë 🚀 日本",
    "plain 1+1": "plain 1+1",
}


@pytest.mark.checklist(41)
def test_hostile_cells_round_trip_safely(client) -> None:
    for i, (text, _) in enumerate(HOSTILE_TEXT.items()):
        post(client, "call_end", ended(f"hostile-{i}", i, caller=text, callee=text, metrics={"provider_mode": text}))
    rows = {r["call_id"]: r for r in csv_rows(client.get("/api/v1/export/csv").get_data(as_text=True))}
    assert len(rows) == len(HOSTILE_TEXT)
    for i, (text, expected) in enumerate(HOSTILE_TEXT.items()):
        row = rows[f"hostile-{i}"]
        assert (row["caller"], row["callee"], row["provider_mode"]) == (expected,) * 3, text
        # Numeric columns stay numbers a spreadsheet can sum.
        assert float(row["cost_total"]) == COST["total"]
        assert float(row["duration_seconds"]) == 30.5
        assert row["turn_count"] == "0"
    exported = {c["call_id"]: c for c in strict_json(client.get("/api/v1/export/json").get_data(as_text=True))}
    for i, text in enumerate(HOSTILE_TEXT):
        assert exported[f"hostile-{i}"]["caller"] == text  # JSON keeps the exact value


@pytest.mark.checklist(41)
def test_negative_numbers_stay_numeric_and_call_ids_are_neutralised_too(client) -> None:
    # Costs are never negative (refused at ingest), so a number cell never starts with "-" ...
    refused = client.post("/api/v1/ingest", json={"type": "call_end", "data": ended("-2", metrics={"cost": {**COST, "total": -0.25}})})
    assert refused.status_code == 422 and refused.get_json()["details"][0]["field"] == "data.metrics.cost.total"
    post(client, "call_end", ended("-1", metrics={"cost": {**COST, "total": 1e-5}}))
    (row,) = csv_rows(client.get("/api/v1/export/csv").get_data(as_text=True))
    assert row["call_id"] == "'-1"  # a text cell: neutralised
    assert row["cost_total"] == "1e-05"  # ... and a number cell is left as a number


@pytest.mark.checklist(28)
def test_unsafe_unicode_and_huge_text_leave_exports_complete(client) -> None:
    # Lone surrogates cannot be encoded as UTF-8 at all; NUL breaks C-based readers.
    raw = (
        '{"type": "call_end", "data": {"call_id": "weird", "caller": "\\ud800x\\u0000y",'
        ' "ended_at": 1780000030.5, "metrics": {"duration_seconds": 30.5},'
        ' "conversation_history": [{"role": "user", "text": "%s"}]}}' % ("z" * 1_000_000)
    )
    assert client.post("/api/v1/ingest", data=raw, content_type="application/json").status_code == 202
    post(client, "call_end", ended("normal", 1))
    csv_response = client.get("/api/v1/export/csv")
    assert csv_response.status_code == 200
    body = csv_response.get_data()  # valid UTF-8 or this raises
    rows = {r["call_id"]: r for r in csv_rows(body.decode("utf-8"))}
    assert set(rows) == {"weird", "normal"}
    # The surrogate became U+FFFD (how many is test_ingest_http's business), the NUL is gone.
    assert rows["weird"]["caller"].startswith("\ufffd")
    assert rows["weird"]["caller"].replace("\ufffd", "") == "xy"
    calls = {c["call_id"]: c for c in strict_json(client.get("/api/v1/export/json").get_data().decode("utf-8"))}
    assert calls["weird"]["caller"] == rows["weird"]["caller"]
    assert len(calls["weird"]["transcript"][0]["text"]) == 20_000
    assert set(calls) == {"weird", "normal"}


def test_absurd_runtime_timestamps_do_not_cut_the_export_short(client) -> None:
    # A runtime with a broken clock: year ~500 million. The arrival time stands in, flagged.
    post(client, "call_end", ended("far-future", ended_at=9e15))
    post(client, "call_end", ended("normal", 1))
    rows = {r["call_id"]: r for r in csv_rows(client.get("/api/v1/export/csv").get_data(as_text=True))}
    assert set(rows) == {"far-future", "normal"}
    assert rows["far-future"]["ended_at"].startswith("20") and "clock_skew" in rows["far-future"]["flags"]
    assert rows["normal"]["ended_at"] == "2026-05-28T20:28:10.500Z"
    calls = strict_json(client.get("/api/v1/export/json").get_data(as_text=True))
    assert {c["call_id"] for c in calls} == {"far-future", "normal"}


def test_export_headers_and_bad_parameters(client) -> None:
    post(client, "call_end", ended("one"))
    for path in ("/api/v1/export/csv", "/api/v1/export/json", "/api/v1/export/json?format=ndjson"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"].startswith('attachment; filename="patter-calls-')
    for path, name in (
        ("/api/v1/export/json?format=xml", "format"),
        ("/api/v1/export/csv?from=yesterday", "from"),
        ("/api/v1/export/csv?direction=sideways", "direction"),
        ("/api/v1/export/json?from=2026-02-01&to=2026-01-01", "to"),
    ):
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.mimetype == "application/json"
        assert f"'{name}'" in response.get_json()["error"]
        assert "Content-Disposition" not in response.headers


def test_empty_exports_are_still_well_formed(client) -> None:
    assert client.get("/api/v1/export/csv").get_data(as_text=True).startswith("call_id,caller,callee,")
    assert csv_rows(client.get("/api/v1/export/csv").get_data(as_text=True)) == []
    assert strict_json(client.get("/api/v1/export/json").get_data(as_text=True)) == []
    assert client.get("/api/v1/export/json?format=ndjson").get_data() == b""
