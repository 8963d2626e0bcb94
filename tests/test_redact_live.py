"""PATTER_DASH_REDACT end to end, on real gunicorn + gevent with the SQLite history.

Calls carrying PII in every text field are posted; the raw values must not
appear in any API answer, SSE frame, export or the bytes of the database
file (and with ``off`` they do, which shows the grep can see them).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patter_dash.model.redact import luhn
from tests.sse import SSEClient

CALLER, CALLEE = "+15551234567", "+15557654321"


def _card(body: str) -> str:
    check = next(c for c in "0123456789" if luhn(body + c))
    digits = body + check
    return " ".join(digits[i:i + 4] for i in range(0, 16, 4))


_secrets = st.tuples(
    st.from_regex(r"[a-z]{3,10}\.[a-z]{3,10}@[a-z]{4,10}\.com", fullmatch=True),
    st.from_regex(r"4[0-9]{14}", fullmatch=True).map(_card),
    st.from_regex(r"\(5[0-9]{2}\) [0-9]{3}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"9[0-9]{8}", fullmatch=True),
)
_words = st.text(alphabet="abcdefghij klmnopqrstuvwxyz,.!?ÄäÖé", max_size=30)


def _call(call_id: str, words: str, secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """One call whose every text field carries the secrets."""
    text = f"{words} mail {secrets[0]} card {secrets[1]} phone {secrets[2]} id {secrets[3]} {words}"
    t = 1_700_000_000.0
    line = {"role": "user", "text": text, "timestamp": t + 1}
    turn = {"turn_index": 0, "user_text": text, "agent_text": f"Noted: {text}", "latency": {"total_ms": 700.0}}
    return [
        {"type": "call_start", "data": {"call_id": call_id, "caller": CALLER, "callee": CALLEE, "direction": "inbound",
                                        "custom_params": {"From": CALLER, "note": text}}},
        {"type": "transcript", "data": {"call_id": call_id, "role": "user", "text": text, "turnIndex": 0,
                                        "tool_args": {"query": text}}},
        {"type": "turn", "data": {"call_id": call_id, "turn": turn, "cost_so_far": {"total": 0.01}}},
        {"type": "call_end", "data": {
            "call_id": call_id, "caller": CALLER, "callee": CALLEE, "ended_at": time.time(), "transcript": [line],
            "conversation_history": [line], "summary": text,
            "metrics": {"call_id": call_id, "duration_seconds": 30.0, "cost": {"total": 0.02}, "turns": [turn],
                        "llm_provider": "openai"},
        }},
    ]


def _raw(secrets: tuple[str, ...]) -> list[str]:
    email, card, phone, number = secrets
    return [email, card, card.replace(" ", ""), phone, phone[1:4] + phone[6:9] + phone[10:], number, CALLER, CALLER[2:]]


def _everything(server: Any, call_id: str) -> str:
    """What a reader can get about the calls: list, detail, search, exports, Patter's own routes."""
    parts = [
        server.get("/api/v1/calls?limit=1000&full=1").text,
        server.get(f"/api/v1/calls/{call_id}").text,
        server.get("/api/v1/calls/active").text,
        server.get("/api/v1/export/csv").text,
        server.get("/api/v1/export/json").text,
        server.get("/api/v1/export/json?format=ndjson").text,
    ]
    return "\n".join(parts)


def _decoded(text: str) -> str:
    """Answers as text plus their JSON strings decoded (\\u escapes would hide a value from a plain search)."""
    out = [text]
    for piece in text.splitlines():
        try:
            out.append(json.dumps(json.loads(piece), ensure_ascii=False))
        except ValueError:
            pass
    return "\n".join(out)


def _database_bytes(server: Any) -> bytes:
    data = Path(server.config["PATTER_DASH_DATA_DIR"])
    return b"".join(p.read_bytes() for p in sorted(data.glob("history.db*")))


def test_pii_never_leaves_ingest_unredacted(live_server: Any) -> None:
    server = live_server(PATTER_DASH_REDACT="pii")
    sse = SSEClient(f"{server.url}/api/v1/events")
    posted: list[tuple[str, ...]] = []
    ids = itertools.count()

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_words, _secrets)
    def one_call(words: str, secrets: tuple[str, ...]) -> None:
        call_id = f"CA{next(ids):04d}"
        server.post_events(_call(call_id, words, secrets))
        posted.append(secrets)
        seen = _decoded(_everything(server, call_id))
        for raw in _raw(secrets):
            assert raw not in seen, (raw, call_id)
        detail = server.get(f"/api/v1/calls/{call_id}").json()["data"]
        assert detail["caller"] == "+1555•••4567" and detail["extra"]["caller_hash"]
        assert "[email]" in detail["transcript"][0]["text"] and "[card]" in detail["turns"][0]["user_text"]

    one_call()

    # A whole number searches its hash: every call of that caller; the mask's digits search as typed.
    found = server.get("/api/v1/calls?q=%2B1%20555%20123%204567&limit=1000").json()
    assert found["pagination"]["total"] == len(posted)
    assert server.get("/api/v1/calls?q=4567&limit=1000").json()["pagination"]["total"] == len(posted)

    frames = []
    deadline = time.monotonic() + 10
    while sum(1 for f in frames if f.get("event") == "call_end") < len(posted) and time.monotonic() < deadline:
        frame = sse.next_event(timeout=5)
        assert frame is not None
        frames.append(frame)
    assert sum(1 for f in frames if f.get("event") == "call_end") == len(posted)
    stream = _decoded(sse.raw.decode()) + "\n".join(json.dumps(f, ensure_ascii=False) for f in frames)
    server.stop()  # a clean stop folds the history into the file
    database = _database_bytes(server)
    assert database
    for secrets in posted:
        for raw in _raw(secrets):
            assert raw not in stream
            assert raw.encode() not in database


def test_metadata_keeps_no_transcript_and_off_keeps_everything(live_server: Any) -> None:
    secrets = ("jane.roe@example.org", _card("411111111111111"), "(555) 987-6543", "912345678")
    metadata = live_server(PATTER_DASH_REDACT="metadata")
    metadata.post_events(_call("CAmeta", "hello there", secrets))
    detail = metadata.get("/api/v1/calls/CAmeta").json()["data"]
    assert detail["transcript"] == [] and all(not t["user_text"] and not t["agent_text"] for t in detail["turns"])
    assert detail["cost"]["total"] == 0.02 and detail["duration_seconds"] == 30.0 and len(detail["turns"]) == 1
    seen = _decoded(_everything(metadata, "CAmeta"))
    assert "hello there" not in seen and "[email]" not in seen
    assert detail["extra"]["custom_params"] == {"From": "+1555•••4567", "note": None}
    metadata.stop()
    assert b"hello there" not in _database_bytes(metadata)
    metadata.start()  # the key was kept with the database: the same caller hashes the same after a restart
    metadata.post_events(_call("CAmeta2", "again", secrets))
    again = metadata.get("/api/v1/calls/CAmeta2").json()["data"]
    assert again["extra"]["caller_hash"] == detail["extra"]["caller_hash"]
    metadata.stop()

    off = live_server()
    off.post_events(_call("CAoff", "hello there", secrets))
    detail = off.get("/api/v1/calls/CAoff").json()["data"]
    assert detail["caller"] == CALLER and secrets[1] in detail["transcript"][0]["text"]
    assert "caller_hash" not in (detail.get("extra") or {})
    off.stop()
    assert secrets[0].encode() in _database_bytes(off)  # the grep above sees what is there
