"""History beyond memory, in-process: a dashboard holding 100 calls in memory answers like one holding them all.

Two apps are fed the same random event stream with the same clocks: one keeps
``PATTER_DASH_MAX_CALLS`` calls in memory over a journal (SQLite, PostgreSQL), the other keeps
every call in memory and no file. Every page of every filter, every detail,
every export and the analytics of the first equal the second's, and the
analytics equal a plain sum over the calls; deletions and a retention purge
happen in between, the same calls gone from both.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patter_dash.core.aggregates import DAY, HOUR, Totals
from patter_dash.core.pipeline import Pipeline
from patter_dash.core.store import CallFilter
from patter_dash.journal.sqlite import MIGRATIONS, SQLiteJournal
from patter_dash.journal.codec import freeze
from patter_dash.model.events import make_event
from patter_dash.model.records import Call
from patter_dash.run.app import create_app

from .conftest import query

NOW = time.time()
#: Events arrive one a second up to now; calls start in two periods with a gap between (the
#: retention cutoff falls in it, so which calls a purge takes does not depend on when it runs).
ARRIVAL = NOW - 20_000
OLD = (NOW - 12 * DAY, NOW - 8.5 * DAY)
RECENT = (NOW - 5.5 * DAY, NOW - 2 * HOUR)
RETENTION_DAYS = 7
WORDS = ["refund", "Refund", "REFUND please", "Ärger", "ärger", "straße", "STRASSE", "İstanbul", "yes", "No.", "100%", "a_b"]
STATUSES = ["completed", "completed", "busy", "no-answer", "failed"]
MODES = ["pipeline", "openai_realtime", None]
Stream = list[tuple[str, dict[str, Any], str | None]]


def _app(db: str | None, max_calls: int) -> Flask:
    return create_app(
        {"TESTING": True}, db=db or ":memory:", max_calls=max_calls, call_timeout=0, retention_days=0,
    )


def _pipeline(app: Flask) -> Pipeline:
    return app.extensions["patter_dash"].pipeline


def _stream(rng: random.Random, calls: int) -> Stream:
    """Calls in random interleavings: some never end, some events come twice, some after the end."""
    events: Stream = []
    for n in range(calls):
        call_id = f"CA{n:04d}-{rng.choice(WORDS)}"
        period = OLD if rng.random() < 0.3 else RECENT
        start = rng.uniform(*period)
        direction = rng.choice(["inbound", "outbound"])
        script: Stream = [("call_start", {"call_id": call_id, "caller": f"+1555{n:07d}", "callee": "+15550000000",
                                          "direction": direction}, f"{call_id}-s")]
        for t in range(rng.randint(0, 3)):
            script.append(("transcript", {"call_id": call_id, "role": "user", "text": rng.choice(WORDS)}, None))
            script.append(("turn", {"call_id": call_id, "turn": {
                "turn_index": t, "user_text": rng.choice(WORDS), "agent_text": f"answer {t}", "timestamp": start + t,
                "latency": {"agent_response_ms": rng.uniform(150, 2500)}}}, f"{call_id}-t{t}"))
        if rng.random() < 0.9:
            duration = rng.uniform(1, 900)
            cost = {k: round(rng.uniform(0, 0.05), 6) for k in ("stt", "tts", "llm", "telephony")}
            cost["total"] = round(sum(cost.values()), 6)
            metrics: dict[str, Any] = {"call_id": call_id, "duration_seconds": duration, "cost": cost}
            if mode := rng.choice(MODES):
                metrics["provider_mode"] = mode
            if rng.random() < 0.7:
                metrics["latency_avg"] = {"agent_response_ms": rng.uniform(150, 2500)}
            end: dict[str, Any] = {"call_id": call_id, "ended_at": start + duration, "status": rng.choice(STATUSES),
                                   "metrics": metrics}
            script.append(("call_end", end, f"{call_id}-e"))
            if rng.random() < 0.15:  # after the end: recorded, or a late line
                script.append(rng.choice([("call_status", {"call_id": call_id, "status": "failed"}, None),
                                          ("transcript", {"call_id": call_id, "role": "agent", "text": "late REFUND"}, None)]))
        if rng.random() < 0.2:
            script.append(rng.choice(script))  # a re-delivery
        events.extend(script)
    rng.shuffle(events)  # calls interleave; a call's own order is mostly kept below
    events.sort(key=lambda e: (e[0] == "call_end", rng.random() < 0.9))
    return events


def _submit(pipelines: list[Pipeline], events: Stream, first: int) -> None:
    for pipeline in pipelines:
        batch = [make_event(kind, dict(data), key, now=ARRIVAL + first + n) for n, (kind, data, key) in enumerate(events)]
        pipeline.submit(batch)


def _settle(pipelines: list[Pipeline]) -> None:
    """Every event before applied and every finished call written (a transaction takes them all).

    The same event for both apps, once new and then a duplicate: their states stay equal.
    """
    for pipeline in pipelines:
        pipeline.submit([make_event("call_status", {"call_id": "settle", "status": "in-progress"}, "settle", now=ARRIVAL)])


def _purge(app: Flask, reference: Flask) -> None:
    """Turn retention on in the journaled app, wait for its pass, and delete the same calls from the reference."""
    pipeline = _pipeline(app)
    journal = pipeline.journal
    assert journal is not None
    _settle([pipeline, _pipeline(reference)])
    cutoff = NOW - RETENTION_DAYS * DAY
    pipeline.retention_days = RETENTION_DAYS
    pipeline._last_purge = 0.0  # the next pass runs at the writer's next tick (about a second)
    deadline = time.monotonic() + 20
    while journal.started_before(cutoff, 1):
        assert time.monotonic() < deadline, "the retention pass did not run"
        time.sleep(0.05)
    _settle([pipeline])  # after the pass: its memory and totals part is done too
    pipeline.retention_days = 0
    old = [c.call_id for c in _pipeline(reference).history.page(CallFilter(end=cutoff), 10**6, 0)[0]]
    if old:
        _pipeline(reference).delete(old)


def _get(client: Any, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
    return response


def _filters(rng: random.Random) -> list[str]:
    hour_cut = rng.uniform(*RECENT)
    return [
        "", "status=busy", "direction=outbound", "provider_mode=openai_realtime", "q=refund", "q=%C3%A4rger",
        "q=STRASSE", "q=i%CC%87stanbul", "q=100%25", "q=a_b", "q=CA00", "q=%2B15550000",
        "q=%22refund+please%22", "q=ref*+answer", "q=no.+answer+1", "q=%22answer+1%22+CA00", "q=ye", "q=r",
        "q=NEAR%28a+b%29", "q=%22a+b", "q=late+refund",
        f"from={hour_cut}", f"to={hour_cut}", f"from={OLD[0] + rng.uniform(0, DAY)}&to={hour_cut}&status=completed",
        f"from={RECENT[0]}&to={RECENT[0] + rng.uniform(HOUR, 3 * HOUR)}&q=yes&direction=inbound",
    ]


def _brute_force(calls: list[Call], start: float | None, end: float | None, width: int) -> dict[str, Any]:
    """Overview and cost series by summing the calls one by one (no buckets, no edges, no disk)."""
    inside = [c for c in calls if (start is None or c.started_at >= start) and (end is None or c.started_at < end)]
    total = Totals()
    points: dict[int, Totals] = {}
    for call in inside:
        total.add(call)
        points.setdefault(int(call.started_at // width) * width, Totals()).add(call)
    return {
        "total": total.view(),
        "by_status": dict(Counter(c.status for c in inside)),
        "series": [(t, points[t].view()) for t in sorted(points)],
    }


def _compare(app: Flask, reference: Flask, rng: random.Random, limit: int) -> int:
    """Every read of ``app`` equals ``reference``'s; the analytics equal a plain sum. The number of calls."""
    client, ref = app.test_client(), reference.test_client()
    everything = _get(ref, "/api/v1/calls?limit=1").get_json()["pagination"]["total"]
    for query in _filters(rng):
        first = _get(ref, f"/api/v1/calls?{query}&limit={limit}").get_json()
        total = first["pagination"]["total"]
        offsets = [*range(0, total + limit, limit), rng.randrange(0, total + 3)]
        for offset in offsets:
            url = f"/api/v1/calls?{query}&limit={limit}&offset={offset}"
            assert _get(client, url).get_json() == _get(ref, url).get_json(), url
        full = f"/api/v1/calls?{query}&full=1&limit=50&offset={rng.randrange(0, total + 1)}"
        assert _get(client, full).get_json() == _get(ref, full).get_json(), full
        for export in ("csv", "json", "json?format=ndjson"):
            url = f"/api/v1/export/{export}{'&' if '?' in export else '?'}{query}"
            assert _get(client, url).data == _get(ref, url).data, url
    ids = [c["call_id"] for c in _get(ref, "/api/v1/calls?limit=1000").get_json()["data"]]
    ids += [c["call_id"] for c in _get(ref, "/api/v1/calls?limit=1000&offset=1000").get_json()["data"]]
    for call_id in ids:
        url = f"/api/v1/calls/{quote(call_id, safe='')}"
        assert _get(client, url).get_json() == _get(ref, url).get_json(), url

    calls = _pipeline(reference).history.page(CallFilter(), 10**6, 0)[0]
    assert len(calls) == everything
    cut = rng.uniform(*RECENT)
    for start, end in [(None, None), (cut, None), (None, cut), (OLD[0] + rng.uniform(0, DAY), cut),
                       (cut, cut + rng.uniform(60, 2 * HOUR))]:
        period = "&".join(f"{k}={v}" for k, v in (("from", start), ("to", end)) if v is not None)
        overview = _get(client, f"/api/v1/analytics/overview?{period}").get_json()["data"]
        assert overview == _get(ref, f"/api/v1/analytics/overview?{period}").get_json()["data"], period
        brute = _brute_force(calls, start, end, HOUR)
        assert overview["total_calls"] == brute["total"]["calls"]
        assert overview["total_cost"] == brute["total"]["total_cost"]
        assert overview["cost_breakdown"] == brute["total"]["cost_breakdown"]
        assert overview["total_minutes"] == brute["total"]["minutes"]
        assert overview["avg_latency_ms"] == brute["total"]["avg_latency_ms"]
        assert overview["p95_latency_ms"] == brute["total"]["p95_latency_ms"]
        assert overview["calls_by_status"] == brute["by_status"]
        for bucket, width in (("hour", HOUR), ("day", DAY)):
            url = f"/api/v1/analytics/costs?bucket={bucket}&{period}"
            costs = _get(client, url).get_json()["data"]
            assert costs == _get(ref, url).get_json()["data"], url
            series = [(p["t"], p["calls"], p["cost"]["total"], p["minutes"], p["p95_latency_ms"]) for p in costs["series"]]
            expected = [(t, v["calls"], v["total_cost"], v["minutes"], v["p95_latency_ms"])
                        for t, v in _brute_force(calls, start, end, width)["series"]]
            assert series == expected, url
    return everything


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), calls=st.integers(1, 1000), max_calls=st.sampled_from([1, 7, 100]),
       limit=st.sampled_from([9, 100, 1000]), cuts=st.lists(st.floats(0, 1), min_size=1, max_size=4))
@example(seed=12, calls=1000, max_calls=100, limit=100, cuts=[0.3, 0.6, 0.9])
def test_history_beyond_memory_reads_like_all_in_memory(
    new_db: Any, seed: int, calls: int, max_calls: int, limit: int, cuts: list[float]
) -> None:
    rng = random.Random(seed)
    events = _stream(rng, calls)
    db = new_db()
    app = _app(db, max_calls)
    reference = _app(None, 10**6)
    pipelines = [_pipeline(app), _pipeline(reference)]
    try:
        marks = sorted({int(len(events) * c) for c in cuts}) + [len(events)]
        done = 0
        for n, mark in enumerate(marks):
            for at in range(done, mark, 25):
                _submit(pipelines, events[at : min(at + 25, mark)], at)
            done = mark
            if n == len(marks) // 2:
                _purge(app, reference)
            # Deletions: ids that exist (finished or live) and some that do not.
            named = sorted({e[1]["call_id"] for e in events[:mark]})
            doomed = rng.sample(named, k=min(3, len(named))) + ["CA-none"]
            deleted = [p.delete(doomed) for p in pipelines]
            assert sorted(deleted[0]) == sorted(deleted[1]), (doomed, deleted)
        stored = _compare(app, reference, rng, limit)
        assert len(_pipeline(app).store.completed) <= max_calls
        journal = _pipeline(app).journal
        assert journal is not None
        on_disk = query(db, "SELECT count(*) FROM calls")[0][0]
        assert on_disk + len(_pipeline(app).unwritten()) + len(_pipeline(app).store.dirty()) >= stored
        if calls == 1000:
            assert stored > 500  # most of 1,000 calls end and survive the deletions and the purge
    finally:
        for a in (app, reference):
            a.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ search


def test_a_first_schema_file_gets_its_search_text_on_upgrade(tmp_path: Path) -> None:
    """A file written with schema 1 (no search column) is searchable from disk after the upgrade."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in filter(str.strip, MIGRATIONS[0].split(";")):
        db.execute(statement)
    db.execute("PRAGMA application_id=0x50445348")
    db.execute("PRAGMA user_version=1")
    for done, (call_id, text) in enumerate([("CA-1", "Ich habe ÄRGER"), ("CA-2", "all good")], 1):
        call = Call(call_id, NOW - done * HOUR)
        call.ended_at, call.status, call.done = call.started_at + 60, "completed", done
        call.transcript = [("user", text, None)]
        db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, 'completed', '', '', '', '', 60000, 0, 0, 0, 0, 0, NULL, 0, NULL, NULL, ?)",
            (call_id, done, call.started_at, freeze(call)),
        )
    db.close()
    journal = SQLiteJournal(str(path))
    journal.check()
    journal.open()
    try:
        found, total = journal.page(CallFilter(query="ärger"), 10, [], 10, 0, count=True)
        assert [c.call_id for c in found] == ["CA-1"] and total == 1
        found, total = journal.page(CallFilter(), 10, [], 10, 0, count=True)
        assert [c.call_id for c in found] == ["CA-2", "CA-1"] and total == 2
    finally:
        journal.close()
