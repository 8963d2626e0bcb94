"""Conversation quality (issue 14, part 4): from real stereo recordings, from events, in filters, exports and analytics.

The recordings are real speech (espeak-ng) placed with sox at known times
(tests/speech.py); the figures the voice activity detector reads from them are
checked against those times within 60 ms. Events-based figures come from a
synthetic stream of Patter-shaped events; the quality filters must list the same
calls from memory and from the history file, and match each call's own record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from patter_dash.core import speech
from patter_dash.core.recordings import read_header
from patter_dash.model import quality
from tests.conftest import post, wait_for
from tests.speech import make_conversation
from tests.test_analytics_providers import _app, _details, _get, _pipeline, _submit
from tests.test_history_filters import _listed

needs_audio = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")),
    reason="espeak-ng and sox make the test recordings: apt-get install espeak-ng sox (make system-deps)",
)
TOLERANCE_MS = 60
#: Caller 0-1.5 s, agent 1.2-3.0 s (0.3 s talk-over), both silent 3.0-5.0 s (2 s dead air), caller 5.0-6.0 s,
#: agent 6.3-8.5 s, the caller barging in 7.5-8.2 s (0.7 s more talk-over); the agent's first word at 1.2 s.
CALLER = [(0.0, 1.5), (5.0, 6.0), (7.5, 8.2)]
AGENT = [(1.2, 3.0), (6.3, 8.5)]
EXPECTED = {"talk_over_ms": 1000, "dead_air_ms": 2000, "dead_air_count": 1, "interruptions": 1, "first_word_ms": 1200,
            "caller_speech_ms": 3200, "agent_speech_ms": 4000}


def _measure(path: Path) -> dict[str, Any]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return speech.analyse(fd, read_header(os.pread(fd, 65536, 0), os.fstat(fd).st_size))
    finally:
        os.close(fd)


def _close(figures: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        if key.endswith("_count") or key == "interruptions":
            assert figures[key] == want, (key, figures)
        else:
            assert abs(figures[key] - want) <= TOLERANCE_MS, (key, figures[key], want)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_conversation(tmp_path_factory.mktemp("audio") / "conversation.wav", CALLER, AGENT, 9.0)


# ------------------------------------------------------------------ the detector


@needs_audio
@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_a_recording_gives_talk_over_dead_air_interruptions_and_first_word(tmp_path: Path, noise: float) -> None:
    """Within 60 ms of when each side really spoke, on a clean line and under a line's hiss (about -40 dBFS)."""
    path = make_conversation(tmp_path / "c.wav", CALLER, AGENT, 9.0, noise=noise)
    figures = _measure(path)
    _close(figures, EXPECTED)
    assert figures["duration_ms"] == 9000 and "20 ms" in figures["method"]


@needs_audio
def test_silence_before_the_first_word_and_after_the_last_is_not_dead_air(tmp_path: Path) -> None:
    # The agent answers after 2.5 s (its first word, not dead air) and the line stays open 3 s after the last word.
    figures = _measure(make_conversation(tmp_path / "late.wav", [(4.0, 5.0)], [(2.5, 3.5), (5.2, 6.0)], 9.0))
    _close(figures, {"first_word_ms": 2500, "dead_air_ms": 0, "dead_air_count": 0, "talk_over_ms": 0, "interruptions": 0})


@needs_audio
def test_a_pause_shorter_than_the_threshold_is_not_dead_air_and_the_agent_talking_over_is_no_interruption(tmp_path: Path) -> None:
    # A 1.2 s pause (under 1.5 s); the agent starts while the caller still speaks: talk-over, but the caller did not barge in.
    figures = _measure(make_conversation(tmp_path / "p.wav", [(0.0, 2.0)], [(1.5, 3.0), (4.2, 5.0)], 6.0))
    _close(figures, {"dead_air_ms": 0, "dead_air_count": 0, "talk_over_ms": 500, "interruptions": 0, "first_word_ms": 1500})


# ------------------------------------------------------------------ from events


def _turn(call_id: str, index: int, response: float | None, *, interrupted: bool = False, bargein: float | None = None) -> tuple[str, dict[str, Any], str]:
    latency: dict[str, Any] = {"stt_ms": 100.0, "total_ms": 900.0}
    if response is not None:
        latency["agent_response_ms"] = response
    if bargein is not None:
        latency["bargein_ms"] = bargein
    turn = {"turn_index": index, "user_text": "" if index == 0 else f"question {index}",
            "agent_text": "[interrupted]" if interrupted else f"answer {index}", "latency": latency,
            "timestamp": 1_800_000_000 + index}
    return "turn", {"call_id": call_id, "turn": turn}, f"{call_id}-t{index}"


def _tool(call_id: str, n: int, name: str, result: Any) -> tuple[str, dict[str, Any], str]:
    text = f"{name}({{}})" if result is None else f"{name}(...) → {result if isinstance(result, str) else json.dumps(result)}"
    return "transcript", {"call_id": call_id, "role": "tool", "text": text, "tool_name": name, "tool_args": {},
                          "tool_result": result}, f"{call_id}-x{n}"


def _start(call_id: str, at: float) -> tuple[str, dict[str, Any], str]:
    return "call_start", {"call_id": call_id, "caller": "+15550100", "callee": "+15550199", "started_at": at}, f"{call_id}-s"


def _end(call_id: str, at: float) -> tuple[str, dict[str, Any], str]:
    return "call_end", {"call_id": call_id, "ended_at": at, "status": "completed"}, f"{call_id}-e"


def test_events_give_barge_ins_slow_responses_first_word_and_failed_tools() -> None:
    app = _app(None, 1000)
    try:
        events = [
            _start("Q1", 1_800_000_000.0),
            _turn("Q1", 0, 640.0),  # the greeting: the agent's first word after 640 ms
            _turn("Q1", 1, 2100.0),  # dead air: 2.1 s waited
            _tool("Q1", 1, "lookup", None), _tool("Q1", 2, "lookup", '{"found": true}'),
            _tool("Q1", 3, "book", None),
            _tool("Q1", 4, "book", json.dumps({"error": "Tool handler error: no table", "fallback": True})),
            _tool("Q1", 5, "pay", {"error": "card declined"}),  # a result kept as an object
            _turn("Q1", 2, 800.0, interrupted=True),
            _turn("Q1", 3, 1700.0, bargein=120.0),
            _end("Q1", 1_800_000_060.0),
        ]
        _submit([_pipeline(app)], events)
        client = app.test_client()
        call = _get(client, "/api/v1/calls/Q1")["data"]
        assert call["quality"] == {
            "talk_over_ms": None, "dead_air_ms": 3800, "dead_air_count": 2, "interruptions": 2, "first_word_ms": 640,
            "tool_calls": 3, "tool_failures": 2, "source": "events",
        }
        row = _get(client, "/api/v1/calls")["data"][0]
        assert row["quality"] == call["quality"]
        # A tool line with only Patter's text (call_end's transcript) is judged by what it shows.
        assert quality.tool_failed({"name": None, "text": 'book(...) → {"error": "Tool \'book\' timed out after 10s", "fallba'})
        assert not quality.tool_failed({"name": None, "text": 'book(...) → {"ok": "error"}'})
        assert not quality.tool_failed({"name": "x", "result": '{"error": null}'})
        assert not quality.tool_failed({"name": "x", "result": "error"})
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ filters, exports, analytics

FILTERS = ("interruptions", "dead_air", "tool_failures", "talk_over")


def _stream(rng: random.Random, calls: int) -> list[tuple[str, dict[str, Any], str]]:
    events = []
    start = 1_800_000_000.0
    for n in range(calls):
        call_id = f"R{n:04d}"
        events.append(_start(call_id, start + n * 37))
        for i in range(rng.randint(0, 5)):
            events.append(_turn(call_id, i, rng.choice([None, 300.0, 900.0, 1600.0, 2400.0]),
                                interrupted=rng.random() < 0.15, bargein=90.0 if rng.random() < 0.1 else None))
        for t in range(rng.randint(0, 3)):
            name = rng.choice(["lookup", "book"])
            result = rng.choice(['{"ok": 1}', json.dumps({"error": "boom", "fallback": True}), {"error": "x"}, "done"])
            events += [_tool(call_id, 2 * t, name, None), _tool(call_id, 2 * t + 1, name, result)]
        events.append(_end(call_id, start + n * 37 + rng.uniform(5, 300)))
    return events


def _figure(call: dict[str, Any], name: str) -> float | None:
    return call["quality"][quality.FILTERS[name][0]]


def test_quality_filters_read_alike_from_memory_and_file_and_match_each_record(tmp_path: Path) -> None:
    rng = random.Random(14)
    disk = _app(tmp_path / "history.db", 7)  # seven calls in memory: the rest are read from the file
    memory = _app(None, 10**6)
    try:
        _submit([_pipeline(disk), _pipeline(memory)], _stream(rng, 120))
        client, ref = disk.test_client(), memory.test_client()
        everything = {c["call_id"]: c for c in _details(ref, "")}
        assert any(c["quality"]["interruptions"] for c in everything.values())
        assert any(c["quality"]["tool_failures"] for c in everything.values())
        assert any(c["quality"]["dead_air_count"] for c in everything.values())
        queries = ["min_interruptions=1", "max_interruptions=0", "min_dead_air=1", "min_dead_air=2400&max_dead_air=4000",
                   "min_tool_failures=1", "max_tool_failures=0&min_interruptions=1", "min_talk_over=0",
                   "min_interruptions=2&status=completed"]
        for query in queries:
            listed = _listed(client, query)
            assert listed == _listed(ref, query), query  # the same calls in the same order from disk and memory
            expected = []
            for call_id, call in everything.items():
                fits = True
                for part in query.split("&"):
                    key, value = part.split("=")
                    side, _, name = key.partition("_")
                    if name not in FILTERS:
                        continue
                    figure = _figure(call, name)
                    fits = fits and figure is not None and (figure >= float(value) if side == "min" else figure <= float(value))
                expected.append(call_id) if fits else None
            assert set(listed) == set(expected), query
        # Events cannot tell talk-over: a talk-over bound leaves every such call out, as a latency bound does a call without one.
        assert _listed(client, "min_talk_over=0") == []
        # The exports: CSV's quality columns at the end, JSON's quality block.
        rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/export/csv?min_tool_failures=1").get_data(as_text=True))))
        assert rows and list(rows[0])[-8:] == [*quality.FIELDS, "quality_source"]
        for row in rows:
            record = everything[row["call_id"]]["quality"]
            assert int(row["tool_failures"]) == record["tool_failures"] >= 1 and row["quality_source"] == "events"
            assert row["talk_over_ms"] == "" and int(row["interruptions"]) == record["interruptions"]
        exported = client.get("/api/v1/export/json?min_interruptions=1").get_json()
        assert [c["quality"] for c in exported] == [everything[c["call_id"]]["quality"] for c in exported]
        # Analytics: the same totals from disk and memory, and what the records add up to.
        answer = _get(client, "/api/v1/analytics/quality")["data"]
        assert answer == _get(ref, "/api/v1/analytics/quality")["data"]
        records = [c["quality"] for c in everything.values()]
        assert answer["calls_analyzed"] == len(records) and answer["from_recordings"] == 0
        assert answer["totals"]["interruptions"] == sum(r["interruptions"] for r in records)
        assert answer["totals"]["tool_failures"] == sum(r["tool_failures"] for r in records)
        assert answer["calls_with"]["dead_air"] == sum(1 for r in records if r["dead_air_count"])
        firsts = [r["first_word_ms"] for r in records if r["first_word_ms"] is not None]
        assert answer["averages"]["avg_first_word_ms"] == round(sum(firsts) / len(firsts), 1)
        assert answer["averages"]["avg_talk_over_ms"] is None
        narrowed = _get(client, "/api/v1/analytics/quality?min_interruptions=1")["data"]
        assert narrowed["calls_analyzed"] == len(_listed(ref, "min_interruptions=1"))
    finally:
        for a in (disk, memory):
            a.extensions["patter_dash"].stop()


@pytest.mark.parametrize(("query", "name"), [
    ("min_interruptions=x", "min_interruptions"), ("max_dead_air=-5", "max_dead_air"),
    ("min_talk_over=NaN", "min_talk_over"), ("min_tool_failures=3&max_tool_failures=1", "max_tool_failures"),
])
def test_bad_quality_bounds_are_a_400_naming_the_parameter(query: str, name: str) -> None:
    app = _app(None, 10)
    try:
        client = app.test_client()
        for route in ("/api/v1/calls", "/api/v1/export/csv", "/api/v1/analytics/quality"):
            response = client.get(f"{route}?{query}")
            assert response.status_code == 400 and name in response.get_json()["error"], (route, query)
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ real server: measured and kept


@needs_audio
def test_the_recording_is_measured_once_and_the_call_keeps_its_figures(live_server: Any, tmp_path: Path, conversation: Path) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    shutil.copy(conversation, root / "q-1.wav")
    db = tmp_path / "history.db"
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root), PATTER_DASH_DB=str(db))
    started = time.time() - 60
    post(server, "call_start", {"call_id": "q-1", "caller": "+15550100", "callee": "+15550199", "started_at": started})
    post(server, "turn", {"call_id": "q-1", "turn": {"turn_index": 0, "user_text": "", "agent_text": "Hello",
                                                      "latency": {"agent_response_ms": 900.0}}})
    post(server, "call_end", {"call_id": "q-1", "ended_at": started + 9.0, "recording_path": "q-1.wav"})
    # Measured once the call ends, though nobody opens it: the record, filters and exports read the audio's figures.
    wait_for(lambda: server.get("/api/v1/calls/q-1").json()["data"]["quality"]["source"] == "recording", timeout=15)
    after = server.get("/api/v1/calls/q-1").json()["data"]["quality"]
    _close(after, {k: EXPECTED[k] for k in quality.RECORDED})
    answer = server.get("/api/v1/calls/q-1/recording/quality")
    assert answer.status_code == 200, answer.text
    assert answer.json()["measured"] is True
    _close(answer.json()["data"], EXPECTED)
    assert server.get("/api/v1/calls/q-1").json()["data"]["quality"] == after  # opening it measures nothing new
    # A call with turns and no recording keeps the events' estimate.
    post(server, "call_start", {"call_id": "q-3", "started_at": started})
    post(server, "turn", {"call_id": "q-3", "turn": {"turn_index": 0, "user_text": "", "agent_text": "Hello",
                                                      "latency": {"agent_response_ms": 900.0}}})
    post(server, "call_end", {"call_id": "q-3", "ended_at": started + 5.0})
    estimate = server.get("/api/v1/calls/q-3").json()["data"]["quality"]
    assert estimate["source"] == "events" and estimate["first_word_ms"] == 900
    assert server.get("/api/v1/calls", params={"min_talk_over": 500}).json()["data"][0]["call_id"] == "q-1"
    assert server.get("/api/v1/call/recording/quality", params={"id": "q-1"}).json()["data"] == answer.json()["data"]
    # A call without a recording: nothing to measure, not an error; one unknown: 404 JSON; a write method: 405.
    post(server, "call_start", {"call_id": "q-2", "started_at": started})
    post(server, "call_end", {"call_id": "q-2", "ended_at": started + 3})
    assert server.get("/api/v1/calls/q-2/recording/quality").json() == {"data": None, "recorded": False}
    missing = server.get("/api/v1/calls/nope/recording/quality")
    assert missing.status_code == 404 and "error" in missing.json()
    assert requests.post(server.url + "/api/v1/calls/q-1/recording/quality", headers=server.headers, timeout=10).status_code == 405
    # Kept in the history file: after a restart the call still has the recording's figures, the file gone or not.
    (root / "q-1.wav").unlink()
    server.stop()
    server.start()
    kept = server.get("/api/v1/calls/q-1").json()["data"]["quality"]
    assert kept == after


# ------------------------------------------------------------------ the browser

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.test_ui_browser import browser, open_dashboard, open_page  # noqa: E402,F401  (fixtures)


@pytest.mark.timeout(240)
def test_the_analytics_card_says_the_periods_quality(live_server: Any, open_page: Any) -> None:
    server = live_server()
    now = time.time()
    events = [
        _start("QU", now - 600), _turn("QU", 0, 640.0), _turn("QU", 1, 2100.0),
        _tool("QU", 1, "book", None), _tool("QU", 2, "book", json.dumps({"error": "no table", "fallback": True})),
        _turn("QU", 2, 800.0, interrupted=True), _end("QU", now - 540),
        _start("QV", now - 300), _turn("QV", 0, 500.0), _end("QV", now - 280),
    ]
    server.post_events([{"type": kind, "data": data, "id": key} for kind, data, key in events])
    answer = server.get("/api/v1/analytics/quality", params={"from": int(now) - 86_400}).json()["data"]
    assert answer["calls_analyzed"] == 2 and answer["totals"]["interruptions"] == 1 and answer["totals"]["tool_failures"] == 1
    page, guard = open_page()
    open_dashboard(page, server.url, "analytics")
    card = page.locator("#pd-chart-quality")

    def fact(name: str) -> Any:
        return card.locator(".pd-fact").filter(has=page.locator("dt", has_text=name)).first.locator("dd")

    expect(page.locator("#pd-chart-quality-summary")).to_contain_text("2 calls, 0 measured from their recording")
    expect(fact("Interruptions")).to_have_text("1 in 1 calls")
    expect(fact("Tool calls")).to_have_text("1")
    expect(fact("Failed tool calls")).to_have_text("1 (100 %)")
    expect(fact("Calls with failed tools")).to_have_text("1")
    guard.check()
