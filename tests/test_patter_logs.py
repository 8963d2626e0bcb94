"""``patter-dash import DIR``: call logs written by Patter's own CallLogger, read into the history and shown by the API.

The fixtures are written by getpatter 0.7.0's real ``CallLogger``, driven the way its
``serve()`` drives it (``server.py``: ``alog_call_start`` at call start, ``alog_turn`` with
``asdict(TurnMetrics)`` per turn, a ``barge_in`` event after an interrupted turn,
``tool_call`` / ``tool_result`` events from ``on_transcript``'s tool lines, an ``error``
event and ``alog_call_end`` with the cost and latency dicts it builds), then copied and
broken the ways a real log root gets broken.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from getpatter.models import CostBreakdown, LatencyBreakdown, TurnMetrics
from getpatter.services.call_log import CallLogger

from patter_dash.model.patterlog import read_call
from tests.conftest import ROOT, post
from tests.test_history_faults import NO_DAC
from tests.test_ui_browser import browser, open_page  # noqa: F401  (fixtures)

HOSTILE = '<img src=x onerror="window.__pwned=1">'


def turn(index: int, user: str, agent: str, **latency: float) -> dict[str, Any]:
    return asdict(TurnMetrics(turn_index=index, user_text=user, agent_text=agent, latency=LatencyBreakdown(**latency),
                              stt_audio_seconds=1.5 if user else 0.0, tts_characters=len(agent), timestamp=time.time()))


def end_call(logger: CallLogger, call_id: str, *, duration: float, turns: int, error: str = "", recording: str | None = None) -> None:
    """What server.py's _on_call_end writes for a CallMetrics."""
    avg = LatencyBreakdown(stt_ms=180.0, llm_ms=420.0, tts_ms=150.0, total_ms=2400.0, agent_response_ms=750.0)
    p50 = LatencyBreakdown(stt_ms=170.0, llm_ms=400.0, tts_ms=140.0, total_ms=2300.0, agent_response_ms=710.0)
    p95 = LatencyBreakdown(stt_ms=250.0, llm_ms=600.0, tts_ms=200.0, total_ms=3100.0, agent_response_ms=1050.0)
    latency = {"p50_ms": p50.total_ms, "p95_ms": p95.total_ms, "p99_ms": p95.total_ms,
               "avg": asdict(avg), "p50": asdict(p50), "p95": asdict(p95), "p99": asdict(p95)}
    cost = asdict(CostBreakdown(stt=0.004, tts=0.011, llm=0.0021, telephony=0.0085, total=0.0256))
    if error:
        logger.log_event(call_id, "error", {"error_code": error})
    logger.log_call_end(call_id, duration_seconds=duration, turns=turns, cost=cost, latency=latency,
                        error=error or None, recording_path=recording)


def tool(logger: CallLogger, call_id: str, name: str, args: dict[str, Any], result: str) -> None:
    """server.py's _on_transcript: the call (result None), then the result."""
    logger.log_event(call_id, "tool_call", {"name": name, "arguments": args, "result": None})
    time.sleep(0.002)
    logger.log_event(call_id, "tool_result", {"name": name, "arguments": args, "result": result})


def interrupted(logger: CallLogger, call_id: str, index: int, user: str) -> None:
    t = turn(index, user, "[interrupted]", stt_ms=150.0, bargein_ms=240.0, total_ms=900.0)
    logger.log_turn(call_id, t)
    logger.log_event(call_id, "barge_in", {"turn_index": index, "bargein_ms": 240.0})


def simple_call(logger: CallLogger, call_id: str, caller: str = "+15550001111") -> None:
    logger.log_call_start(call_id, caller=caller, callee="+15559990000", direction="inbound",
                          telephony_provider="twilio", provider_mode="pipeline")
    logger.log_turn(call_id, turn(0, "", "Hello, Acme support."))
    time.sleep(0.002)
    logger.log_turn(call_id, turn(1, "Hi there", "How can I help?", stt_ms=120.0, llm_ms=300.0, tts_ms=90.0,
                                  total_ms=1500.0, agent_response_ms=510.0))
    end_call(logger, call_id, duration=12.25, turns=2)


def write_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A log root with every kind of call folder; the folders by name."""
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")  # no sweep of the test's own days
    logger = CallLogger(root)
    folders: dict[str, Path] = {}

    # A whole call: greeting, a tool call between the caller's question and the answer,
    # a barge-in, a turn missing from transcript.jsonl (gap), an error code, a recording.
    cid = "CA-full/1"  # a "/" in the id: the folder name is sanitised, the id is metadata's
    logger.log_call_start(cid, caller="+15551230001", callee="+15559870002", direction="inbound",
                          telephony_provider="twilio", provider_mode="pipeline", agent={"name": "support"})
    logger.log_turn(cid, turn(0, "", "Hi, this is Acme. How can I help?", tts_ms=210.0, total_ms=210.0))
    time.sleep(0.002)
    tool(logger, cid, "lookup_order", {"order_id": HOSTILE}, f"shipped {HOSTILE}")
    time.sleep(0.002)
    logger.log_turn(cid, turn(1, "Where is my order?", "It shipped yesterday.", stt_ms=180.0, llm_ms=420.0, tts_ms=150.0,
                              total_ms=2400.0, agent_response_ms=750.0))
    time.sleep(0.002)
    interrupted(logger, cid, 2, "Wait, which address?")
    # turn 3 was interrupted and never logged: metadata still counts it
    time.sleep(0.002)
    logger.log_turn(cid, turn(4, "Thanks, bye", "Goodbye!", stt_ms=100.0, llm_ms=200.0, tts_ms=80.0,
                              total_ms=1200.0, agent_response_ms=380.0))
    end_call(logger, cid, duration=42.5, turns=5, error="llm_timeout", recording="recordings/CA-full.wav")
    folders["full"] = logger.call_dir(cid) or Path()

    monkeypatch.setenv("PATTER_LOG_REDACT_PHONE", "mask")
    simple_call(logger, "CA-masked")
    monkeypatch.setenv("PATTER_LOG_REDACT_PHONE", "hash_only")
    simple_call(logger, "CA-hashed")
    monkeypatch.setenv("PATTER_LOG_REDACT_PHONE", "full")

    # In progress: started, one turn, no end yet (a live call, or an agent that crashed).
    logger.log_call_start("CA-live", caller="+15550002222", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-live", turn(0, "", "Hello, live call."))
    folders["live"] = logger.call_dir("CA-live") or Path()

    for name in ("half", "badjson", "schema", "nometa", "unreadable"):
        simple_call(logger, f"CA-{name}")
    day = folders["full"].parent
    folders.update({name: day / f"CA-{name}" for name in ("masked", "hashed", "half", "badjson", "schema", "nometa", "unreadable")})
    # A half-written last line (a crash mid-append): the call is imported without it.
    transcript = folders["half"] / "transcript.jsonl"
    lines = transcript.read_text().splitlines(keepends=True)
    transcript.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    (folders["badjson"] / "metadata.json").write_text('{"schema_version": "1.0", "call_id": ')
    meta = json.loads((folders["schema"] / "metadata.json").read_text())
    (folders["schema"] / "metadata.json").write_text(json.dumps({**meta, "schema_version": "2.0"}))
    (folders["nometa"] / "metadata.json").unlink()
    (folders["unreadable"] / "metadata.json").chmod(0o000)
    return folders


def run_import(root: Path, db: Path, *, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    # As root, chmod 000 binds only without the capabilities that bypass file permissions.
    launcher = NO_DAC if unprivileged and os.geteuid() == 0 else []
    return subprocess.run([*launcher, sys.executable, "-m", "patter_dash.run.cli", "import", str(root), "--db", str(db)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.fixture
def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, Path], subprocess.CompletedProcess[str]]:
    root = tmp_path / "patter-logs"
    folders = write_root(root, monkeypatch)
    db = tmp_path / "data" / "history.db"
    done = run_import(root, db, unprivileged=True)
    assert done.returncode == 0, done.stderr
    return root, db, folders, done


def detail(server: Any, call_id: str) -> dict[str, Any]:
    response = server.get("/api/v1/call", params={"id": call_id})
    assert response.status_code == 200, (call_id, response.text)
    return response.json()["data"]


def test_import_reads_every_call_and_reports_every_bad_file(imported, live_server):
    root, db, folders, done = imported
    out = done.stdout
    # Nine folders: full, masked, hashed, half (imported), live (in progress), badjson, schema, nometa, unreadable.
    assert "9 call folders: 4 imported, 0 already present, 1 in progress" in out, out
    assert "4 skipped" in out
    assert f"skipped {folders['badjson']}: metadata.json is not JSON" in out
    assert f"skipped {folders['schema']}: metadata.json has schema_version '2.0'" in out
    assert f"skipped {folders['nometa']}: no metadata.json" in out
    assert f"left out {folders['half'] / 'transcript.jsonl'}:" in out and "half-written last line" in out

    server = live_server(PATTER_DASH_DB=str(db))
    full = detail(server, "CA-full/1")
    assert (full["caller"], full["callee"], full["direction"], full["status"]) == ("+15551230001", "+15559870002", "inbound", "completed")
    assert full["duration_seconds"] == 42.5  # duration_ms, not ended_at (when the file was written) minus the start
    assert full["ended_at"] - full["started_at"] == pytest.approx(42.5)
    assert full["cost"]["total"] == pytest.approx(0.0256) and full["cost"]["telephony"] == pytest.approx(0.0085)
    # The response latency is agent_response_ms from the full breakdown, not the flat p50_ms/p95_ms (total latency).
    assert full["latency_avg_ms"] == 750.0 and full["latency_p95_ms"] == 1050.0
    assert full["providers"]["telephony"] == "twilio" and full["provider_mode"] == "pipeline"
    assert [t["turn_index"] for t in full["turns"]] == [0, 1, 2, 4]  # the gap stays a gap
    assert full["extra"]["turns_reported"] == 5 and full["extra"]["recording_path"] == "recordings/CA-full.wav"
    assert full["error_code"] == "llm_timeout" and full["metrics"]["error_code"] == "llm_timeout"
    said = [(line["role"], line["text"]) for line in full["transcript"]]
    assert said[:3] == [("assistant", "Hi, this is Acme. How can I help?"), ("user", "Where is my order?"),
                        ("tool", f"lookup_order({json.dumps({'order_id': HOSTILE})})")]
    assert said[4] == ("assistant", "It shipped yesterday.")  # after the tool's call and result, as the caller heard it
    tool_line = full["transcript"][2]
    assert tool_line["tool_name"] == "lookup_order" and tool_line["tool_args"] == {"order_id": HOSTILE} and tool_line["tool_result"] is None
    kinds = [e["kind"] for e in full["timeline"]]
    assert kinds == ["tool_call", "barge_in", "error"]
    call = full["timeline"][0]
    assert (call["name"], call["arguments"], call["result"]) == ("lookup_order", {"order_id": HOSTILE}, f"shipped {HOSTILE}")
    assert full["timeline"][1]["turn_index"] == 2 and full["timeline"][1]["bargein_ms"] == 240.0
    assert full["timeline"][2]["error_code"] == "llm_timeout"

    masked, hashed = detail(server, "CA-masked"), detail(server, "CA-hashed")
    assert masked["caller"] == "***1111" and "number_masked" in masked["flags"]
    assert hashed["caller"].startswith("sha256:") and len(hashed["caller"]) == 23 and "number_masked" in hashed["flags"]
    assert "number_masked" not in full["flags"]

    live = detail(server, "CA-live")
    assert live["ended_at"] is None and live["metrics"] is None and live["turn_count"] == 1
    half = detail(server, "CA-half")
    assert half["turn_count"] == 1 and half["status"] == "completed"  # the cut turn is left out, the rest is there
    for name in ("CA-badjson", "CA-schema", "CA-nometa"):
        assert server.get("/api/v1/call", params={"id": name}).status_code == 404


def test_unreadable_metadata_is_reported_with_its_path(imported):
    _, _, folders, done = imported
    assert f"skipped {folders['unreadable']}: metadata.json cannot be read by this user" in done.stdout
    assert "mode 0600" in done.stdout


def test_import_again_imports_nothing_twice(imported, live_server):
    root, db, folders, first = imported
    again = run_import(root, db, unprivileged=True)
    assert again.returncode == 0, again.stderr
    assert "0 imported, 4 already present, 1 in progress" in again.stdout, again.stdout
    server = live_server(PATTER_DASH_DB=str(db))
    full = detail(server, "CA-full/1")
    assert len(full["transcript"]) == 9 and len(full["turns"]) == 4 and len(full["timeline"]) == 3
    assert len(detail(server, "CA-live")["transcript"]) == 1
    total = server.get("/api/v1/calls", params={"limit": 100}).json()["pagination"]["total"]
    assert total == 4  # the finished calls: full, masked, hashed, half


def test_a_call_seen_through_callbacks_stays_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_server):
    """Callbacks first, the log imported after; and a call imported in progress that the callbacks then finish."""
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    root = tmp_path / "logs"
    logger = CallLogger(root)
    simple_call(logger, "CA-both")
    logger.log_call_start("CA-later", caller="+15550003333", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-later", turn(0, "", "Hello, later."))
    db = tmp_path / "data" / "history.db"

    server = live_server(PATTER_DASH_DB=str(db))
    # What dash.patter_callbacks() / DashboardClient send for the same call, live.
    post(server, "call_start", {"call_id": "CA-both", "caller": "+15550001111", "callee": "+15559990000"})
    post(server, "transcript", {"call_id": "CA-both", "role": "assistant", "text": "Hello, Acme support.", "history": [
        {"role": "assistant", "text": "Hello, Acme support.", "timestamp": time.time()}]})
    post(server, "transcript", {"call_id": "CA-both", "role": "user", "text": "Hi there"})
    post(server, "call_end", {"call_id": "CA-both", "ended_at": time.time(), "transcript": [
        {"role": "assistant", "text": "Hello, Acme support.", "timestamp": time.time()},
        {"role": "user", "text": "Hi there", "timestamp": time.time()},
        {"role": "assistant", "text": "How can I help?", "timestamp": time.time()}],
        "metrics": {"duration_seconds": 12.25, "turns": [turn(0, "", "Hello, Acme support."), turn(1, "Hi there", "How can I help?")]}})
    before = detail(server, "CA-both")
    busy = run_import(root, db)  # one process writes one history: not while the server runs
    assert busy.returncode == 2 and "in use by another patter-dash server" in busy.stderr, busy.stderr
    server.stop()

    done = run_import(root, db)
    assert done.returncode == 0, done.stderr
    assert "1 already present, 1 in progress" in done.stdout

    server.start()
    both = detail(server, "CA-both")
    assert both["transcript"] == before["transcript"] and len(both["turns"]) == 2
    # The call imported in progress ends through the callbacks: its lines are the call_end's, once.
    assert detail(server, "CA-later")["ended_at"] is None
    post(server, "transcript", {"call_id": "CA-later", "role": "user", "text": "Is anyone there?"})
    post(server, "call_end", {"call_id": "CA-later", "ended_at": time.time(), "conversation_history": [
        {"role": "assistant", "text": "Hello, later.", "timestamp": time.time()},
        {"role": "user", "text": "Is anyone there?", "timestamp": time.time()}],
        "metrics": {"duration_seconds": 3.0, "turns": [turn(0, "", "Hello, later.")]}})
    later = detail(server, "CA-later")
    assert [(line["role"], line["text"]) for line in later["transcript"]] == [
        ("assistant", "Hello, later."), ("user", "Is anyone there?")]
    assert len(later["turns"]) == 1 and later["status"] == "completed"
    server.stop()

    # The log now says the call ended: importing again completes nothing twice.
    end_call(logger, "CA-later", duration=3.0, turns=1)
    again = run_import(root, db)
    assert "2 already present" in again.stdout, again.stdout


def test_tool_lines_from_callbacks_are_on_the_timeline_and_in_the_export(client):
    post(client, "call_start", {"call_id": "cb-1"})
    post(client, "transcript", {"call_id": "cb-1", "role": "tool", "text": 'get_weather({"city": "Rome"})',
                                "tool_name": "get_weather", "tool_args": {"city": "Rome"}, "tool_result": None})
    post(client, "transcript", {"call_id": "cb-1", "role": "tool", "text": "get_weather(...) → sunny",
                                "tool_name": "get_weather", "tool_args": {"city": "Rome"}, "tool_result": "sunny"})
    post(client, "turn", {"call_id": "cb-1", "turn": {"turn_index": 1, "user_text": "Stop", "agent_text": "[interrupted]",
                                                     "latency": {"bargein_ms": 90.0}, "timestamp": time.time()}})
    post(client, "call_end", {"call_id": "cb-1", "metrics": {"duration_seconds": 5.0, "error_code": "provider_error"}})
    body = client.get("/api/v1/calls/cb-1").get_json()["data"]
    assert [e["kind"] for e in body["timeline"]] == ["tool_call", "barge_in", "error"]
    assert body["timeline"][0]["result"] == "sunny" and body["timeline"][0]["arguments"] == {"city": "Rome"}
    assert body["error_code"] == "provider_error"
    exported = json.loads(client.get("/api/v1/export/json").get_data(as_text=True))
    assert [e["kind"] for e in exported[0]["timeline"]] == ["tool_call", "barge_in", "error"]


def test_import_refuses_what_is_not_a_log_root(tmp_path: Path):
    done = run_import(tmp_path / "missing", tmp_path / "h.db")
    assert done.returncode == 2 and "is not a directory" in done.stderr
    (tmp_path / "empty").mkdir()
    done = run_import(tmp_path / "empty", tmp_path / "h.db")
    assert done.returncode == 2 and "has no calls/ folder" in done.stderr


def test_a_copied_call_folder_keeps_its_own_call_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from patter_dash.model.patterlog import read_call

    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    logger = CallLogger(tmp_path)
    simple_call(logger, "CA-orig")
    folder = logger.call_dir("CA-orig")
    assert folder is not None
    copy = folder.parent / "renamed"
    shutil.copytree(folder, copy)
    log = read_call(str(copy))
    assert log.call_id == "CA-orig" and log.state == "completed"
    assert [e.key for e in log.events][0] == "patterlog:CA-orig:start"


# --------------------------------------------------------------------------- the timeline in the call detail (Chromium)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("theme,width", [("light", "desktop"), ("dark", "phone")])
def test_detail_shows_a_tool_call_collapsible_and_escaped(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    from tests.test_ui_a11y import assert_no_axe_violations, open_mode, settle
    from tests.test_ui_browser import open_dashboard

    server = live_server()
    call_id = "CA-tools"
    huge = "x" * 5000
    now = time.time()
    server.post_events([
        {"type": "call_start", "data": {"call_id": call_id, "caller": "+15550001111", "callee": "+15559990000"}},
        {"type": "transcript", "data": {"call_id": call_id, "role": "user", "text": "Where is my order?", "timestamp": now - 9}},
        {"type": "transcript", "data": {"call_id": call_id, "role": "tool", "text": f"lookup({HOSTILE})", "timestamp": now - 8,
                                        "tool_name": "lookup", "tool_args": {"q": HOSTILE}, "tool_result": None}},
        {"type": "transcript", "data": {"call_id": call_id, "role": "tool", "text": "lookup(...) → ...", "timestamp": now - 7,
                                        "tool_name": "lookup", "tool_args": {"q": HOSTILE}, "tool_result": HOSTILE + huge}},
        {"type": "turn", "data": {"call_id": call_id, "turn": {"turn_index": 1, "user_text": "Stop", "agent_text": "[interrupted]",
                                                               "latency": {"bargein_ms": 240.0}, "timestamp": now - 5}}},
        {"type": "call_end", "data": {"call_id": call_id, "ended_at": now, "metrics": {"duration_seconds": 10.0, "error_code": "llm_timeout"}}},
    ])
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "history")
    page.goto(f"{server.url}/dashboard#call/{call_id}")
    dialog = page.locator("#pd-detail")
    tool_entry = dialog.locator(".pd-timeline .pd-event-tool details")
    expect(tool_entry).to_have_count(1)
    expect(tool_entry.locator("pre").first).to_be_hidden()  # collapsed until opened
    tool_entry.locator("summary").click()
    expect(tool_entry.locator("pre").first).to_be_visible()
    expect(tool_entry.locator("pre").first).to_contain_text(f'"q": {json.dumps(HOSTILE)}')  # the arguments as JSON text
    result = tool_entry.locator("pre").nth(1).inner_text()
    assert result.startswith(HOSTILE) and f"({len(HOSTILE) + 3000:,} more characters)" in result and len(result) < 2_100
    assert dialog.locator("img").count() == 0 and page.evaluate("() => window.__pwned") is None
    expect(dialog.locator(".pd-event-bargein")).to_contain_text("Barge-in")
    expect(dialog.locator(".pd-event-error")).to_contain_text("llm_timeout")
    settle(page)
    assert_no_axe_violations(page, f"call detail with a timeline ({theme}, {width})")
    guard.check()


def test_metadata_replaced_while_being_read_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """CallLogger replaces metadata.json atomically: a reader racing it sees the call live or ended, never broken."""
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    logger = CallLogger(tmp_path / "logs")
    logger.log_call_start("CA-race", caller="+15550001111", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-race", turn(0, "", "Hello, Acme support."))
    folder = logger.call_dir("CA-race")
    metadata = folder / "metadata.json"
    live = metadata.read_bytes()
    end_call(logger, "CA-race", duration=4.0, turns=1)
    ended = metadata.read_bytes()
    assert live != ended

    stop = threading.Event()

    def replace_forever() -> None:
        # CallLogger's own way (a temporary file, then os.replace), as fast as it goes.
        n = 0
        while not stop.is_set():
            n += 1
            temporary = folder / f".metadata.{n}.tmp"
            temporary.write_bytes(live if n % 2 else ended)
            os.replace(temporary, metadata)

    writer = threading.Thread(target=replace_forever)
    writer.start()
    seen: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            log = read_call(str(folder))
            assert log.state in ("in_progress", "completed"), (log.state, log.reason, log.problems)
            assert log.call_id == "CA-race" and not log.problems
            seen[log.state] = seen.get(log.state, 0) + 1
    finally:
        stop.set()
        writer.join()
    assert set(seen) == {"in_progress", "completed"}, seen  # both versions were read, whole


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="make system-deps installs espeak-ng and sox")
def test_an_imported_calls_recording_gives_its_quality_without_opening_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_server):
    """Patter names the recording in metadata.json (relative to the agent's directory, under the log root here)."""
    from tests.test_recordings import make_recording

    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    root = tmp_path / "logs"
    logger = CallLogger(root)
    logger.log_call_start("CA-rec", caller="+15550001111", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-rec", turn(0, "", "Hello, Acme support."))
    make_recording(root / "audio", "CA-rec.wav")  # the caller speaks at 0 s, the agent at 2 s: no talk-over
    end_call(logger, "CA-rec", duration=4.0, turns=1, recording="audio/CA-rec.wav")
    simple_call(logger, "CA-plain")  # no recording: the events' estimate stays
    db = tmp_path / "data" / "history.db"
    done = run_import(root, db)
    assert done.returncode == 0, done.stderr
    assert "1 recordings measured" in done.stdout, done.stdout

    server = live_server(PATTER_DASH_DB=str(db))  # no recordings root: the figures are the call's own now
    measured = server.get("/api/v1/call", params={"id": "CA-rec"}).json()["data"]["quality"]
    assert measured["source"] == "recording" and measured["talk_over_ms"] == 0
    assert server.get("/api/v1/call", params={"id": "CA-plain"}).json()["data"]["quality"]["source"] == "events"
    listed = server.get("/api/v1/calls", params={"max_talk_over": 0}).json()["data"]
    assert [c["call_id"] for c in listed] == ["CA-rec"]  # the filters read the recording's figures


def test_import_shows_its_progress_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from patter_dash.config import load_settings
    from patter_dash.run.importer import run_import as import_logs

    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    root = tmp_path / "logs"
    logger = CallLogger(root)
    for n in range(3):
        simple_call(logger, f"CA-p{n}")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for err, shown in ((Terminal(), True), (io.StringIO(), False)):
        db = str(tmp_path / f"history-{shown}.db")
        out = io.StringIO()
        assert import_logs(str(root), db, load_settings({}, {"DB": db}), out=out, err=err) == 0
        assert ("[" + "#" * 30 + "] 3/3 calls" in err.getvalue()) is shown  # a log file gets no carriage returns
        assert "3 call folders: 3 imported" in out.getvalue()


# --------------------------------------------------------------------------- bounded reads, retention


def test_every_read_of_a_log_folder_is_bounded_and_says_what_it_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A metadata.json, a JSONL file or one line past its bound: reported by path, never read whole; the whole
    lines before a cut JSONL file's bound are still read (the limits are 1 MiB, 64 MiB and 1 MiB; made small here)."""
    from patter_dash.model import patterlog

    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    logger = CallLogger(tmp_path)
    simple_call(logger, "CA-big")
    folder = logger.call_dir("CA-big")
    assert folder is not None
    whole = read_call(str(folder))
    assert whole.state == "completed" and not whole.problems
    transcript = (folder / "transcript.jsonl").read_bytes()
    first = transcript.index(b"\n") + 1  # the greeting's record, whole

    monkeypatch.setattr(patterlog, "MAX_JSONL_BYTES", first + 10)  # the cut falls inside the second record
    cut = read_call(str(folder))
    assert (str(folder / "transcript.jsonl"), f"larger than {first + 10} bytes: only the first {first + 10} were read") in cut.problems
    assert cut.state == "completed" and len(cut.events) < len(whole.events)
    assert any("Hello, Acme support." in json.dumps(e.data) for e in cut.events)  # the line before the cut
    assert not any("How can I help?" in json.dumps(e.data) for e in cut.events)  # the cut line is not guessed at
    monkeypatch.undo()

    monkeypatch.setattr(patterlog, "MAX_LINE_BYTES", first // 2)
    long = read_call(str(folder))
    assert f"{folder / 'transcript.jsonl'}:1" in dict(long.problems)
    assert dict(long.problems)[f"{folder / 'transcript.jsonl'}:1"] == f"line longer than {first // 2} bytes"
    monkeypatch.undo()

    monkeypatch.setattr(patterlog, "MAX_METADATA_BYTES", 64)
    big = read_call(str(folder))
    assert big.state == "skipped" and big.reason == "metadata.json is larger than 64 bytes"


def test_import_skips_what_the_dashboards_retention_would_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """PATTER_DASH_RETENTION_DAYS: a logged call started before it is reported skipped, not imported then purged."""
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")
    root = tmp_path / "patter-logs"
    logger = CallLogger(root)
    for call_id in ("CA-old", "CA-new"):
        simple_call(logger, call_id)
    old = logger.call_dir("CA-old")
    assert old is not None
    meta = json.loads((old / "metadata.json").read_text())
    meta["started_at"] = "2020-01-02T03:04:05+00:00"
    (old / "metadata.json").write_text(json.dumps(meta))
    db = tmp_path / "history.db"
    done = subprocess.run([sys.executable, "-m", "patter_dash.run.cli", "import", str(root), "--db", str(db)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PATTER_DASH_RETENTION_DAYS": "30"})
    assert done.returncode == 0, done.stderr
    assert "2 call folders: 1 imported" in done.stdout, done.stdout
    assert f"skipped {old}: started more than PATTER_DASH_RETENTION_DAYS (30) days ago" in done.stdout, done.stdout
    file = sqlite3.connect(db)
    try:
        assert [r[0] for r in file.execute("SELECT call_id FROM calls")] == ["CA-new"]
    finally:
        file.close()
