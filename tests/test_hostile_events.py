"""Hostile events: arbitrary JSON at every position of every event type never breaks a read.

Issue 10, items 2 and 7. An event is either accepted whole (and then every
read route and every export format answers 200 with complete, parseable
output) or refused whole with a 4xx naming the field, storing nothing. The
property is tried over the four ways events arrive: HTTP envelopes, Patter's
notify path, ``feed()`` in process, and the ingest WebSocket of a real
gunicorn + gevent server (where the SSE replay is read back too).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
import websocket
from conftest import payload, post, wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sse import SSEClient

from patter_dash.model import events as schema
from patter_dash.model import views
from patter_dash.run.app import create_app

# ------------------------------------------------------------- the events


def base_events() -> dict[str, dict[str, Any]]:
    """One realistic event of each type, built from Patter's real payloads."""
    return {
        "call_initiated": {"call_id": "C", "caller": "+15550001", "callee": "+15550002", "direction": "outbound", "status": "initiated"},
        "call_start": payload("call_start.json") | {"call_id": "C"},
        "transcript": payload("transcript_user.json") | {"call_id": "C"},
        "turn": payload("turn_metrics.json") | {"call_id": "C"},
        "call_status": {"call_id": "C", "status": "ringing", "timestamp": time.time()},
        "call_end": payload("call_end.json") | {"call_id": "C", "ended_at": time.time()},
    }


TRICKY_TEXT = st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", "=1+1", "\r\n", "", " ", "é" * 300, "a" * 25_000])
text = st.one_of(st.text(st.characters(exclude_categories=()), max_size=12), TRICKY_TEXT)
number = st.one_of(
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-1, 0, 2**53, 2**53 + 1, -(2**53), 1e300, -1e-300, 9e15, 1.5]),
)
scalar = st.one_of(st.none(), st.booleans(), number, text)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=10,
)
deep = st.integers(1, 120).map(lambda n: json.loads("[" * n + "1" + "]" * n))
hostile = st.one_of(json_value, deep)


def positions(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` a value can be put: each existing key or index, and a new key per object."""
    found = []
    if isinstance(value, dict):
        found.append((*path, "__new__"))
        for key, item in value.items():
            found.append((*path, key))
            found += positions(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.append((*path, i))
            found += positions(item, (*path, i))
    return found


def put(value: Any, path: tuple[Any, ...], new: Any, new_key: str) -> None:
    for step in path[:-1]:
        value = value[step]
    value[new_key if path[-1] == "__new__" else path[-1]] = new


#: Every field name the product knows, in any model: a new key is often one of them.
KNOWN_KEYS = sorted({f for model in vars(schema).values() if isinstance(model, type) and issubclass(model, msgspec.Struct) for f in model.__struct_fields__})
new_key = st.one_of(st.sampled_from(KNOWN_KEYS), text)


@st.composite
def mutated_event(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    event_type = draw(st.sampled_from(list(base_events())))
    data = copy.deepcopy(base_events()[event_type])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(positions(data)))
        put(data, path, draw(hostile), draw(new_key))
    if draw(st.booleans()):
        data["call_id"] = draw(st.sampled_from(["C", "D", "=cmd|' /C calc'!A0", "line\nbreak", "x" * 256]))
    return event_type, data


# ------------------------------------------------------------- the reads


def complete_reads(get: Callable[[str], tuple[int, bytes]]) -> None:
    """Every read route and export answers 200 with complete, parseable output."""

    def ok(path: str) -> bytes:
        status, body = get(path)
        assert status == 200, (path, status, body[:300])
        return body

    def strict(raw: bytes) -> Any:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in a response"))

    def fits(model: Any, body: Any) -> Any:
        msgspec.convert(body, model, strict=True)  # the answer is what its model (and so the OpenAPI doc) says
        return body

    listing = fits(views.CallList, strict(ok("/api/v1/calls?limit=1000")))
    total = listing["pagination"]["total"]
    fits(views.FullCallList, strict(ok("/api/v1/calls?limit=1000&full=1")))
    active = fits(views.ActiveCallList, strict(ok("/api/v1/calls/active")))["data"]
    for call in listing["data"] + active:
        detail = fits(views.CallAnswer, strict(ok("/api/v1/calls/" + quote(call["call_id"], safe=""))))["data"]
        assert detail["call_id"] == call["call_id"]
    fits(views.OverviewAnswer, strict(ok("/api/v1/analytics/overview")))
    fits(views.CostsAnswer, strict(ok("/api/v1/analytics/costs")))
    fits(views.Health, strict(ok("/api/v1/health")))
    rows = list(csv.reader(io.StringIO(ok("/api/v1/export/csv").decode("utf-8"), newline="")))
    listed = {c["call_id"] for c in listing["data"]}
    exported = {r[0].removeprefix("'") for r in rows[1:]}
    health = strict(ok("/api/v1/health"))
    assert len(rows) == 1 + total, (total, len(rows) - 1, health.get("export"), listed ^ exported)
    assert all(len(r) == len(rows[0]) for r in rows)
    assert len(strict(ok("/api/v1/export/json"))) == total
    # NDJSON lines end in "\n" only: str.splitlines would also split at U+2028 inside a string.
    lines = ok("/api/v1/export/json?format=ndjson").decode("utf-8").split("\n")[:-1]
    assert len(lines) == total and all(isinstance(strict(line.encode()), dict) for line in lines)


def answered_cleanly(status: int, body: Any, accepted_before: int, accepted_after: int) -> None:
    """Accepted (2xx) or refused whole (4xx naming a field, nothing stored); never 5xx."""
    assert status in (200, 202) or 400 <= status < 500, (status, body)
    if status >= 400:
        assert isinstance(body["error"], str) and body["error"]
        if status == 422:
            assert body["details"] and all(set(d) == {"field", "error"} for d in body["details"])
        assert accepted_after == accepted_before


# ------------------------------------------------------ in process: HTTP, Patter, feed()


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def dash_app(request, tmp_path_factory):
    """An app in memory, and one writing each history engine: a value memory holds may not fit a database's
    columns (a cost past 9.2e9 USD in nano-dollars once killed the writer there, and only there)."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        history = server.database()
    else:
        history = ":memory:" if request.param == "memory" else str(tmp_path_factory.mktemp("hostile") / "history.db")
    application = create_app({"TESTING": True, "PATTER_DASH_DB": history})
    yield application
    application.extensions["patter_dash"].stop()
    if request.param == "postgres":
        server.drop(history)


def accepted(client) -> int:
    return client.get("/api/v1/health").get_json()["events"]["accepted"]


def client_get(client) -> Callable[[str], tuple[int, bytes]]:
    def get(path: str) -> tuple[int, bytes]:
        response = client.get(path)
        return response.status_code, response.get_data()

    return get


HYPOTHESIS = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _costly_end() -> tuple[str, dict[str, Any]]:
    end = base_events()["call_end"]
    end["metrics"]["cost"]["total"] = 1e10  # past a 64-bit integer in nano-dollars
    return "call_end", end


@HYPOTHESIS
@given(event=mutated_event(), route=st.sampled_from(["envelope", "patter"]), key=st.one_of(st.none(), hostile))
@example(event=_costly_end(), route="envelope", key=None)
@example(event=_costly_end(), route="patter", key=None)
@example(event=("call_start", {"call_id": "C"}), route="envelope", key="\ud800")  # a lone surrogate in the id
def test_any_json_anywhere_over_http_is_stored_whole_or_refused_whole(dash_app, event, route, key) -> None:
    client = dash_app.test_client()
    event_type, data = event
    before = accepted(client)
    envelope = {"type": event_type, "data": data} | ({} if key is None else {"id": key})
    raw = json.dumps(envelope if route == "envelope" else data)
    path = "/api/v1/ingest" if route == "envelope" else "/api/dashboard/ingest"
    response = client.post(path, data=raw, content_type="application/json")
    answered_cleanly(response.status_code, response.get_json(), before, accepted(client))
    complete_reads(client_get(client))
    writer_alive(dash_app)


@HYPOTHESIS
@given(event=mutated_event(), native=st.sampled_from([None, float("nan"), float("inf"), object(), (1, 2), {1: "x"}]))
def test_any_value_through_feed_never_raises_and_never_breaks_a_read(dash_app, event, native) -> None:
    """feed() takes Python objects too: NaN, tuples, objects and non-string keys included."""
    dash = dash_app.extensions["patter_dash"]
    event_type, data = event
    if native is not None:
        data["native"] = native
    assert dash.feed(event_type, data) in (True, False)
    wait_for(lambda: dash.pipeline.health()["queue"]["depth"] == 0, timeout=5)
    complete_reads(client_get(dash_app.test_client()))
    writer_alive(dash_app)


def writer_alive(app) -> None:
    """The event thread runs, nothing failed to be written, and a plain event still goes in."""
    pipeline = app.extensions["patter_dash"].pipeline
    assert pipeline.running and pipeline.counters["errors"] == 0, pipeline.counters
    response = app.test_client().post("/api/v1/ingest", json={"type": "call_status", "data": {"call_id": "ALIVE", "status": "ringing"}})
    assert response.status_code == 202, response.get_json()


# ------------------------------------------------------------ a real server: WebSocket and SSE


def test_hostile_events_over_the_websocket_leave_every_read_and_the_sse_replay_whole(live_server) -> None:
    server = live_server()
    first_id = server.get("/api/v1/health").json()["events"]["last_seq"]
    ws = websocket.create_connection(server.url.replace("http://", "ws://") + "/api/v1/ingest/ws", timeout=10)
    sent = {"accepted": 0, "refused": 0}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(event=mutated_event())
    def send(event: tuple[str, dict[str, Any]]) -> None:
        event_type, data = event
        ws.send(json.dumps({"type": event_type, "data": data}))
        reply = json.loads(ws.recv())
        if reply["ok"]:
            sent["accepted"] += 1
        else:
            assert reply["details"] and "retry" not in reply, reply
            sent["refused"] += 1

    send()
    ws.close()
    assert sent["accepted"] and sent["refused"]  # both kinds were tried

    def get(path: str) -> tuple[int, bytes]:
        response = server.get(path, timeout=30)
        return response.status_code, response.content

    complete_reads(get)
    # Every accepted event is in the replay, each frame one line of valid JSON.
    stream = SSEClient(f"{server.url}/api/v1/events?last_event_id={first_id}", timeout=10)
    frames = []
    deadline = time.monotonic() + 15
    last = server.get("/api/v1/health").json()["events"]["last_seq"]
    while not frames or frames[-1]["seq"] < last:
        block = stream.next_block(deadline)
        assert block is not None
        if block.startswith("id:"):
            data_lines = [line for line in block.split("\n") if line.startswith("data: ")]
            assert len(data_lines) == 1
            frames.append(json.loads(data_lines[0][6:]))
    stream.response.close()
    assert [f["seq"] for f in frames] == sorted({f["seq"] for f in frames})


# ------------------------------------------------------------- repeats and re-deliveries (item 7)


def line(text: str, history: list[dict[str, Any]], call_id: str = "R") -> dict[str, Any]:
    """What Patter's on_transcript hands over: the line, and the conversation so far."""
    entry = {"role": "user", "text": text, "timestamp": 1_790_000_000.0 + len(history)}
    history.append(entry)
    return {"role": "user", "text": text, "call_id": call_id, "history": [dict(h) for h in history]}


def transcript_of(client, call_id: str = "R") -> list[tuple[str, str]]:
    detail = client.get(f"/api/v1/calls/{call_id}").get_json()["data"]
    return [(t["role"], t["text"]) for t in detail["transcript"]]


def test_a_caller_who_says_yes_three_times_is_heard_three_times(client) -> None:
    history: list[dict[str, Any]] = []
    post(client, "call_start", {"call_id": "R"})
    answers = [client.post("/api/v1/ingest", json={"type": "transcript", "data": line("Yes.", history)}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.get_json()["duplicate"] for a in answers] == [False, False, False]
    assert transcript_of(client) == [("user", "Yes.")] * 3


def test_the_same_line_delivered_twice_is_stored_once_and_answered_as_a_duplicate(client) -> None:
    history: list[dict[str, Any]] = []
    data = line("Can you hear me?", history)
    first = client.post("/api/v1/ingest", json={"type": "transcript", "data": data})
    again = client.post("/api/v1/ingest", json={"type": "transcript", "data": data})
    assert (first.status_code, first.get_json()["duplicate"]) == (202, False)
    assert (again.status_code, again.get_json()["duplicate"]) == (200, True)
    assert again.get_json()["seq"] == first.get_json()["seq"]
    assert transcript_of(client) == [("user", "Can you hear me?")]
    health = client.get("/api/v1/health").get_json()["events"]
    assert (health["accepted"], health["duplicates"]) == (1, 1)


def test_patters_double_delivery_through_callbacks_and_metrics_is_stored_once(client) -> None:
    """The shared payloads: on_transcript's user line, then on_metrics' turn that repeats it."""
    call_id = "CA941522e75e5447c05b6ca6d201f13845"
    for event_type, name in (("call_start", "call_start.json"), ("transcript", "transcript_user.json"), ("turn", "turn_metrics.json")):
        post(client, event_type, payload(name))
    turn = payload("turn_metrics.json")["turn"]
    assert transcript_of(client, call_id) == [("user", turn["user_text"]), ("assistant", turn["agent_text"])]
    # The SDK's notify path repeats call_start and call_end; the callbacks send them too.
    for _ in range(2):
        client.post("/api/dashboard/ingest", json=payload("sdk_notify_call_start.json"))
    ends = [client.post("/api/dashboard/ingest", json=payload("sdk_notify_call_end.json")) for _ in range(2)]
    ends.append(client.post("/api/v1/ingest", json={"type": "call_end", "data": payload("call_end.json")}))
    assert [e.get_json()["duplicate"] for e in ends] == [False, True, True]
    assert len(transcript_of(client, call_id)) == 7  # conversation_history, once


def test_a_turn_repeats_its_words_only_where_its_own_lines_did_not(client) -> None:
    history: list[dict[str, Any]] = []

    def turn(index: int, user: str, agent: str) -> None:
        data = {"call_id": "R", "turn": {"turn_index": index, "user_text": user, "agent_text": agent}}
        post(client, "turn", data)

    post(client, "transcript", line("Yes.", history))
    turn(1, "Yes.", "Booked.")  # the user line came through on_transcript; the agent's did not
    post(client, "transcript", line("Yes.", history))
    turn(2, "Yes.", "Booked.")  # the caller said it again: a new line, and the agent's reply again
    turn(2, "Yes.", "Booked.")  # the same turn re-delivered: no new lines
    assert transcript_of(client) == [("user", "Yes."), ("assistant", "Booked.")] * 2
