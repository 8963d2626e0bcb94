"""Patter 0.7.0 compatibility, end to end: live calls carry their turns, transcript lines keep what Patter sends.

Fed exactly what Patter sends: a Realtime call produced by Patter's own stream handler
(tests/fixtures/patter-payloads/realtime_call.json: lines with ``turnIndex``, tool lines with their
fields), the pipeline-mode captures, Patter's callbacks through ``patter_callbacks()`` and its
``notify_dashboard`` body. Answers are checked field by field against the shapes Patter's own
dashboard store builds (``getpatter/dashboard/store.py``: ``record_transcript_line``, ``record_turn``
appending ``asdict(turn)``, ``get_active_calls``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import make_dataclass
from typing import Any

import requests

from tests.conftest import payload, wait_for
from tests.sse import SSEClient

CALL = "CArealtime0000000000000000000000001"


def realtime(call_id: str = CALL) -> list[dict[str, Any]]:
    """The Realtime call's envelopes, in the order Patter fired its callbacks, renamed to ``call_id``."""
    return [{**e, "data": {**e["data"], "call_id": call_id}} for e in payload("realtime_call.json")]


def sent_lines(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``on_transcript`` payload as a line: role, text, the stamp its history gives it, every other field."""
    return [
        {"role": d["role"], "text": d["text"], "timestamp": d["history"][-1]["timestamp"] if d.get("history") else None,
         **{k: v for k, v in d.items() if k not in ("role", "text", "call_id", "history")}}
        for d in (e["data"] for e in envelopes if e["type"] == "transcript")
    ]


def sent_turns(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Patter's store appends to a live call's ``turns``: ``asdict`` of each ``on_metrics`` turn."""
    return [e["data"]["turn"] for e in envelopes if e["type"] == "turn"]


def in_reading_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Realtime call's lines as Patter's UI sorts them: turn 1's late user line above its answer."""
    return [lines[0], lines[1], lines[3], lines[2], lines[4], lines[5]]


def same_tool_stamps(answer: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Patter's tool lines carry no stamp (no history): they take their arrival time, which the answer says."""
    for got, want in zip(answer, expected):
        if want["role"] == "tool" and want["timestamp"] is None:
            assert isinstance(got["timestamp"], float)
            want["timestamp"] = got["timestamp"]
    return expected


def test_live_calls_carry_their_turns_and_lines_like_patter(live_server: Any) -> None:
    server = live_server()
    *live, _end = realtime()
    server.post_events(live)
    body = server.get("/api/v1/calls/active").json()
    (call,) = body["data"]
    turns = sent_turns(live)
    assert call["turns"] == turns  # Patter's TurnMetrics dicts, field by field, oldest first
    assert [t["turn_index"] for t in call["turns"]] == [0, 1] and call["turn_count"] == 2
    assert call["turns_partial"] is False
    detail = server.get(f"/api/v1/calls/{CALL}").json()["data"]
    assert call["turns"] == detail["turns"]  # the same view as the detail's
    lines = same_tool_stamps(call["transcript"], in_reading_order(sent_lines(live)))
    assert call["transcript"] == lines == detail["transcript"]
    assert [(line["role"], line.get("turnIndex")) for line in lines] == [
        ("user", 0), ("assistant", 0), ("user", 1), ("assistant", 1), ("tool", None), ("tool", None)]
    assert set(lines[5]) == {"role", "text", "timestamp", "tool_name", "tool_args", "tool_result"}
    # The turns parameter: fewer, none, or a 400 naming it.
    newest = server.get("/api/v1/calls/active?turns=1").json()["data"][0]
    assert newest["turns"] == turns[1:] and newest["turns_partial"] is True
    assert server.get("/api/v1/calls/active?turns=0").json()["data"][0]["turns"] == []
    for query in ("turns=101", "turns=-1", "turns=all"):
        response = server.get(f"/api/v1/calls/active?{query}")
        assert response.status_code == 400 and "turns" in response.json()["error"], query


def test_live_turns_are_bounded_like_live_lines(live_server: Any) -> None:
    server = live_server()
    template = payload("turn_metrics.json")

    def turn(call_id: str, index: int, text: str = "short") -> dict[str, Any]:
        data = json.loads(json.dumps(template))
        data["call_id"] = call_id
        data["turn"].update(turn_index=index, user_text=f"{index} {text}", agent_text="ok")
        return {"type": "turn", "data": data}

    server.post_events([{"type": "call_start", "data": {"call_id": "many"}}] + [turn("many", i) for i in range(150)])
    (call,) = server.get("/api/v1/calls/active").json()["data"]
    assert call["turn_count"] == 150 and call["turns_partial"] is True
    assert [t["turn_index"] for t in call["turns"]] == list(range(50, 150))  # the newest 100, oldest first
    assert len(server.get("/api/v1/calls/active?limit=1000").json()["data"][0]["turns"]) == 5  # 5,000 turns a page
    # Long turns: 12 calls, each 10 turns of 20,000 characters, share a page's 1,000,000-character turn budget.
    for c in range(12):
        server.post_events([turn(f"long-{c:02d}", i, "w" * 19_990) for i in range(10)])
    page = server.get("/api/v1/calls/active?limit=10&turns=100")
    assert page.status_code == 200 and len(page.content) < 2_300_000, "turns and transcript: a budget each"
    each = len("9 " + "w" * 19_990 + "ok")
    fit = 100_000 // each  # 1,000,000 / limit characters of turn text per call
    assert fit == 5
    for item in page.json()["data"]:
        if item["call_id"].startswith("long-"):
            assert item["turns_partial"] is True and item["turn_count"] == 10
            assert [t["turn_index"] for t in item["turns"]] == list(range(10 - fit, 10))
            assert sum(len(t["user_text"]) + len(t["agent_text"]) for t in item["turns"]) <= 100_000
    one = server.get("/api/v1/calls/active?limit=1000").json()["data"]
    assert all(len(t["user_text"]) <= 1_000 for item in one for t in item["turns"])  # the newest turn, cut to the share


def test_sse_lines_carry_what_patter_sent_and_mirrored_turns_their_index(live_server: Any) -> None:
    server = live_server()
    stream = SSEClient(f"{server.url}/api/v1/events?types=transcript,turn")
    assert stream.next_block(time.monotonic() + 5).startswith("retry:")
    *live, _end = realtime()
    server.post_events(live)
    frames = [stream.next_event() for _ in range(8)]
    lines = [f["data"]["line"] for f in frames if f["event"] == "transcript"]
    assert lines == same_tool_stamps(lines, sent_lines(live))  # as sent, in arrival order: the reader places them
    assert all(not f["data"]["lines"] for f in frames if f["event"] == "turn")  # every turn's words came as lines
    # A turn that arrives with no live line (Patter's on_metrics alone) is mirrored, stamped with its index.
    metrics = payload("turn_metrics.json")
    server.post_events([{"type": "turn", "data": metrics}])
    mirrored = stream.next_event()["data"]["lines"]
    turn = metrics["turn"]
    assert mirrored == [
        {"role": "user", "text": turn["user_text"], "timestamp": turn["timestamp"], "turnIndex": 1},
        {"role": "assistant", "text": turn["agent_text"], "timestamp": turn["timestamp"], "turnIndex": 1},
    ]
    stream.close()


def test_finished_calls_and_exports_keep_the_fields_of_live_lines(live_server: Any) -> None:
    server = live_server()
    envelopes = realtime()
    server.post_events(envelopes[:-1])
    live_view = server.get(f"/api/v1/calls/{CALL}").json()["data"]["transcript"]
    # Patter's notify_dashboard posts the end (conversation_history: role, text, timestamp only).
    end = requests.post(f"{server.url}/api/dashboard/ingest", json=envelopes[-1]["data"], headers=server.headers, timeout=10)
    assert end.status_code == 202 and end.json()["event"] == "ended"
    history = envelopes[-1]["data"]["conversation_history"]
    detail = server.get(f"/api/v1/calls/{CALL}").json()["data"]
    expected = [
        {"role": h["role"], "text": h["text"], "timestamp": h["timestamp"],
         **{k: v for k, v in line.items() if k not in ("role", "text", "timestamp")}}
        for h, line in zip(in_reading_order(history), live_view)
    ]
    assert detail["transcript"] == expected
    assert [line.get("turnIndex") for line in expected] == [0, 0, 1, 1, None, None]
    assert expected[4]["tool_args"] == {"day": "Friday"} and expected[5]["tool_result"] == '{"slots": ["09:00", "14:00"]}'
    exported = json.loads(server.get("/api/v1/export/json").text)
    assert [c["transcript"] for c in exported] == [expected]
    ndjson = [json.loads(line) for line in server.get("/api/v1/export/json?format=ndjson").text.splitlines()]
    assert [c["transcript"] for c in ndjson] == [expected]


def frozen(name: str, value: Any) -> Any:
    """A dict as one of Patter's frozen dataclasses (what its callbacks hand over), nested ones too."""
    if isinstance(value, dict):
        cls = make_dataclass(name, list(value), frozen=True)
        return cls(**{k: frozen(k.title().replace("_", ""), v) for k, v in value.items()})
    return value


def test_patter_callbacks_in_process(app, client) -> None:
    dash = app.extensions["patter_dash"]
    callbacks = dash.patter_callbacks()
    *live, _end = realtime()
    names = {"call_start": "on_call_start", "transcript": "on_transcript", "turn": "on_metrics"}

    async def the_call() -> None:
        for e in live:
            data = e["data"]
            if e["type"] == "turn":  # on_metrics hands a TurnMetrics dataclass and a CostBreakdown
                data = {**data, "turn": frozen("TurnMetrics", data["turn"]), "cost_so_far": frozen("CostBreakdown", data["cost_so_far"])}
            await callbacks[names[e["type"]]](data)

    asyncio.run(the_call())
    wait_for(lambda: (c := dash.store.get(CALL)) is not None and len(c.transcript) == 6 and len(c.turns) == 2)
    (call,) = client.get("/api/v1/calls/active").get_json()["data"]
    assert call["turns"] == sent_turns(live)
    assert call["transcript"] == same_tool_stamps(call["transcript"], in_reading_order(sent_lines(live)))
