"""Following Patter's call logs (``PATTER_DASH_PATTER_LOG_DIR``): calls logged while the server runs, and while it was down.

Real gunicorn + gevent servers (the ``live_server`` fixture, which fails a test whose
gevent loop was blocked for 0.5 s), a real SQLite history, and log roots written by
getpatter 0.7.0's real ``CallLogger`` while the server runs, driven as its ``serve()``
drives it (see tests/test_patter_logs.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from getpatter.services import call_log
from getpatter.services.call_log import CallLogger

from patter_dash.model import views
from tests.conftest import post, wait_for
from tests.sse import SSEClient
from tests.test_history_faults import NO_DAC
from tests.test_patter_logs import end_call, interrupted, simple_call, tool, turn

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def no_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")  # the retention test sweeps on purpose


def following(live_server: Any, root: Path, tmp_path: Path, **config: Any) -> Any:
    return live_server(PATTER_DASH_DB=str(tmp_path / "history.db"), PATTER_DASH_PATTER_LOG_DIR=str(root), **config)


def logs_health(server: Any) -> dict[str, Any]:
    return server.get("/api/v1/health").json()["patter_logs"]


def call(server: Any, call_id: str) -> dict[str, Any] | None:
    response = server.get("/api/v1/call", params={"id": call_id})
    return response.json()["data"] if response.status_code == 200 else None


def said(detail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["role"], line["text"]) for line in detail["transcript"]]


def until(predicate: Any, timeout: float = 10.0) -> Any:
    return wait_for(predicate, timeout=timeout, interval=0.05)


def test_a_call_logged_while_the_server_runs_appears_live(live_server: Any, tmp_path: Path) -> None:
    root = tmp_path / "patter-logs"  # Patter has not run yet: no root
    server = following(live_server, root, tmp_path)
    health = until(lambda: (h := logs_health(server))["status"] != "starting" and h)
    assert (health["root"], health["mode"], health["status"]) == (str(root), "notify", "waiting")
    assert "does not exist yet" in health["waiting_for"]

    stream = SSEClient(f"{server.url}/api/v1/events", timeout=15)
    stream.next_block()
    logger = CallLogger(root)
    logger.log_call_start("CA-live", caller="+15550001111", callee="+15559990000", direction="inbound",
                          telephony_provider="twilio", provider_mode="pipeline")
    written = time.monotonic()
    first = stream.next_event(timeout=10)
    # Generous for a loaded test machine; bench/follow.py measures the real figure.
    assert time.monotonic() - written < 5
    assert (first["event"], first["data"]["call_id"]) == ("call_start", "CA-live")
    assert logs_health(server)["status"] == "following"

    logger.log_turn("CA-live", turn(0, "", "Hello, Acme support."))
    tool(logger, "CA-live", "lookup_order", {"order_id": "A1"}, "shipped")
    logger.log_turn("CA-live", turn(1, "Where is my order?", "It shipped.", stt_ms=120.0, llm_ms=300.0, tts_ms=90.0,
                                    total_ms=1500.0, agent_response_ms=510.0))
    live = until(lambda: (c := call(server, "CA-live")) and c["turn_count"] == 2 and c)
    assert live["ended_at"] is None and live["caller"] == "+15550001111"
    assert ("tool", 'lookup_order({"order_id": "A1"})') in said(live)
    end_call(logger, "CA-live", duration=9.5, turns=2)
    done = until(lambda: (c := call(server, "CA-live")) and c["ended_at"] is not None and c)
    assert done["duration_seconds"] == 9.5 and done["latency_avg_ms"] == 750.0
    kinds = []
    while "call_end" not in kinds:
        kinds.append(stream.next_event(timeout=10)["event"])
    stream.close()
    health = logs_health(server)
    assert health["calls_followed"] == 1 and health["live"] == 0 and health["errors"] == 0, health
    msgspec.json.decode(server.get("/api/v1/health").content, type=views.Health)  # as the OpenAPI document says


def test_restart_catches_up_on_what_was_logged_while_down_exactly_once(live_server: Any, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    logger = CallLogger(root)
    server = following(live_server, root, tmp_path)
    simple_call(logger, "CA-before")  # finished while the server ran
    logger.log_call_start("CA-long", caller="+15550002222", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-long", turn(0, "", "Hello, this will take a while."))
    logger.log_turn("CA-long", turn(1, "I have a question", "Go ahead."))
    until(lambda: (c := call(server, "CA-long")) and c["turn_count"] == 2 and call(server, "CA-before"))
    server.stop()

    # While the dashboard is down the agent goes on logging.
    logger.log_turn("CA-long", turn(2, "Is it shipped?", "Yes, yesterday."))
    interrupted(logger, "CA-long", 3, "Wait")
    end_call(logger, "CA-long", duration=61.0, turns=4)
    simple_call(logger, "CA-down")
    logger.log_call_start("CA-open", caller="+15550003333", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-open", turn(0, "", "Hello, still here."))

    server.start()
    long_call = until(lambda: (c := call(server, "CA-long")) and c["ended_at"] is not None and c)
    assert [t["turn_index"] for t in long_call["turns"]] == [0, 1, 2, 3]
    assert said(long_call) == [
        ("assistant", "Hello, this will take a while."), ("user", "I have a question"), ("assistant", "Go ahead."),
        ("user", "Is it shipped?"), ("assistant", "Yes, yesterday."), ("user", "Wait"), ("assistant", "[interrupted]")]
    assert long_call["duration_seconds"] == 61.0 and long_call["timeline"][0]["kind"] == "barge_in"
    down = until(lambda: call(server, "CA-down"))
    assert len(down["turns"]) == 2 and len(down["transcript"]) == 3
    open_call = until(lambda: call(server, "CA-open"))
    assert open_call["ended_at"] is None and said(open_call) == [("assistant", "Hello, still here.")]
    health = logs_health(server)
    # The cursor: only the three folders that changed while it was down were read, not CA-before.
    assert health["folders_read"] == 3, health
    listed = server.get("/api/v1/calls", params={"limit": 100}).json()
    assert sorted(c["call_id"] for c in listed["data"]) == ["CA-before", "CA-down", "CA-long"]
    assert listed["pagination"]["total"] == 3

    # The open call goes on after the restart, and a second restart reads nothing again.
    logger.log_turn("CA-open", turn(1, "Thanks", "Bye."))
    until(lambda: call(server, "CA-open")["turn_count"] == 2)
    server.stop()
    server.start()
    wait_for(lambda: logs_health(server)["status"] == "following", timeout=10)
    time.sleep(1.5)
    assert logs_health(server)["folders_read"] == 0
    assert said(call(server, "CA-open")) == [("assistant", "Hello, still here."), ("user", "Thanks"), ("assistant", "Bye.")]
    assert len(call(server, "CA-long")["transcript"]) == 7


def test_a_call_seen_by_callbacks_and_by_the_log_is_one_call(live_server: Any, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    logger = CallLogger(root)
    server = following(live_server, root, tmp_path)
    # Patter's serve() with both the dashboard callbacks (DashboardClient) and PATTER_LOG_DIR on; each step
    # reaches the dashboard through the callbacks first here (see the README on the other order).
    post(server, "call_start", {"call_id": "CA-both", "caller": "+15550001111", "callee": "+15559990000"})
    logger.log_call_start("CA-both", caller="+15550001111", callee="+15559990000", direction="inbound")
    post(server, "transcript", {"call_id": "CA-both", "role": "assistant", "text": "Hello, Acme support."})
    greeting = turn(0, "", "Hello, Acme support.")  # server.py hands the same TurnMetrics to on_metrics and the log
    post(server, "turn", {"call_id": "CA-both", "turn": greeting})
    logger.log_turn("CA-both", greeting)
    post(server, "transcript", {"call_id": "CA-both", "role": "user", "text": "Hi there"})
    post(server, "turn", {"call_id": "CA-both", "turn": turn(1, "Hi there", "How can I help?")})
    logger.log_turn("CA-both", turn(1, "Hi there", "How can I help?"))
    until(lambda: logs_health(server)["folders_read"] >= 1)
    post(server, "call_end", {"call_id": "CA-both", "ended_at": time.time(), "metrics": {
        "duration_seconds": 12.25, "turns": [turn(0, "", "Hello, Acme support."), turn(1, "Hi there", "How can I help?")]}})
    end_call(logger, "CA-both", duration=12.25, turns=2)
    time.sleep(1.5)  # the log's end is read too
    detail = call(server, "CA-both")
    assert said(detail) == [("assistant", "Hello, Acme support."), ("user", "Hi there"), ("assistant", "How can I help?")]
    assert len(detail["turns"]) == 2
    listed = server.get("/api/v1/calls", params={"limit": 100}).json()
    assert [c["call_id"] for c in listed["data"]] == ["CA-both"]
    assert logs_health(server)["errors"] == 0


def test_a_day_swept_by_patters_retention_keeps_its_calls(live_server: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "logs"
    logger = CallLogger(root)
    server = following(live_server, root, tmp_path)
    real_time = time.time
    monkeypatch.setattr(call_log.time, "time", lambda: real_time() - 86_400)  # calls begun yesterday (UTC)
    simple_call(logger, "CA-yesterday")
    logger.log_call_start("CA-stuck", caller="+15550004444", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-stuck", turn(0, "", "Hello from yesterday."))
    monkeypatch.setattr(call_log.time, "time", real_time)
    until(lambda: call(server, "CA-yesterday") and call(server, "CA-stuck"))
    assert logs_health(server)["live"] == 1

    day = logger.call_dir("CA-stuck").parent
    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "1")
    logger._sweep_old_days()  # what ~2 % of call starts do: yesterday is older than a day from now
    assert not day.exists()
    until(lambda: logs_health(server)["live"] == 0)
    assert call(server, "CA-yesterday")["status"] == "completed"
    assert call(server, "CA-stuck")["ended_at"] is None  # closed by PATTER_DASH_CALL_TIMEOUT, as any silent call
    simple_call(logger, "CA-today")  # and following goes on
    until(lambda: call(server, "CA-today"))
    health = logs_health(server)
    assert health["errors"] == 0 and health["status"] == "following", health


def test_polling_follows_too_and_reports_what_it_cannot_read(live_server: Any, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    logger = CallLogger(root)
    simple_call(logger, "CA-first")
    server = following(live_server, root, tmp_path, PATTER_DASH_PATTER_LOG_POLL="1", launcher=NO_DAC)
    health = logs_health(server)
    assert health["mode"] == "poll" and "PATTER_DASH_PATTER_LOG_POLL" in health["poll_reason"]
    until(lambda: call(server, "CA-first"))

    logger.log_call_start("CA-poll", caller="+15550005555", callee="+15559990000", direction="inbound")
    logger.log_turn("CA-poll", turn(0, "", "Hello, polled."))
    until(lambda: (c := call(server, "CA-poll")) and c["turn_count"] == 1)
    # A turn being written: its line without its newline yet is left for later, not reported.
    transcript = logger.call_dir("CA-poll") / "transcript.jsonl"
    line = call_log.json.dumps({"schema_version": "1.0", "ts": call_log._utc_iso(), **turn(1, "Half", "Done.")})
    with transcript.open("a") as fh:
        fh.write(line[:40])
    time.sleep(1.5)
    assert call(server, "CA-poll")["turn_count"] == 1
    with transcript.open("a") as fh:
        fh.write(line[40:] + "\n")
    until(lambda: call(server, "CA-poll")["turn_count"] == 2)
    end_call(logger, "CA-poll", duration=4.0, turns=2)
    until(lambda: call(server, "CA-poll")["ended_at"] is not None)
    assert logs_health(server)["errors"] == 0

    # metadata.json is mode 0600: a dashboard running as another user cannot read it.
    simple_call(logger, "CA-locked")
    (logger.call_dir("CA-locked") / "metadata.json").chmod(0)
    error = until(lambda: logs_health(server)["last_error"])
    assert error["path"] == str(logger.call_dir("CA-locked")) and "cannot be read by this user" in error["reason"]
    (logger.call_dir("CA-locked") / "metadata.json").chmod(0o600)  # the operator fixes it (the server runs as root here)
    os.chmod(logger.call_dir("CA-locked") / "metadata.json", 0o644)
    until(lambda: call(server, "CA-locked"))
