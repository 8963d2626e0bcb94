"""HTTP ingest: POST /api/v1/ingest (envelopes, batches) and POST /api/dashboard/ingest (Patter's own push).

Real Patter 0.7.0 payloads go in; the stored call must say what Patter said. Every
refusal is a 4xx JSON ``{"error", "details"}`` naming the field, and nothing of it is applied.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from conftest import payload, post

from patter_dash.model.clean import TRUNCATION_MARK
from patter_dash.model.events import EVENT_TYPES
from patter_dash.run.app import create_app

CALL_ID = "CA941522e75e5447c05b6ca6d201f13845"


def ingest(client, body: Any, **kwargs: Any):
    return client.post("/api/v1/ingest", json=body, **kwargs)


def raw_ingest(client, raw: str | bytes, content_type: str = "application/json"):
    return client.post("/api/v1/ingest", data=raw, content_type=content_type)


def assert_refused(response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body.get("details", []), list)
    if field is not None:
        assert field in [d["field"] for d in body["details"]], body
    return body


def assert_stored_like_patter(call: dict[str, Any]) -> None:
    """The real captured call, as the detail route gives it back."""
    assert call["call_id"] == CALL_ID
    assert (call["caller"], call["callee"], call["direction"]) == ("+15553891776", "+15550001234", "inbound")
    assert call["status"] == "completed"
    assert call["duration_seconds"] == 37.78
    assert call["ended_at"] == 1795616755.448904
    assert call["started_at"] == pytest.approx(1795616755.448904 - 37.78)
    assert call["cost"] == {"stt": 0.000934, "tts": 0.01595, "llm": 0.000105, "telephony": 0.0085, "total": 0.025489}
    assert call["metrics"]["cost"]["llm_cached_savings"] == 0.0
    assert [t["turn_index"] for t in call["turns"]] == [0, 1, 2, 3]
    assert call["turns"][1]["latency"]["agent_response_ms"] == 493.5
    assert call["turns"][0]["user_text"] == ""
    # conversation_history (with the greeting and timestamps) wins over the shorter transcript.
    assert len(call["transcript"]) == 7
    assert call["transcript"][0] == {
        "role": "assistant",
        "text": "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?",
        "timestamp": 1795616719.9013495,
    }
    assert call["providers"] == {"stt": "deepgram", "tts": "elevenlabs", "llm": "openai", "telephony": "twilio"}
    assert call["models"] == {"stt": "nova-3", "tts": "eleven_flash_v2_5", "llm": "gpt-4o-mini"}
    assert call["provider_mode"] == "pipeline"
    assert call["latency_avg_ms"] == 501.1
    assert call["latency_p95_ms"] == 512.6
    for name, total in (("latency_p50", 1877.2), ("latency_p90", 3248.0), ("latency_p99", 3573.4)):
        assert call["metrics"][name]["total_ms"] == total
    assert call["metrics"]["latency_p95"]["bargein_ms"] is None
    # Fields Patter sends that the dashboard does not model are kept as they came.
    assert call["metrics"]["context_tokens"] == 204
    assert (call["metrics"]["preemptive_hits"], call["metrics"]["error_code"]) == (0, "")
    assert call["extra"]["custom_params"] == {"caller": "+15553891776", "callee": "+15550001234"}


# ----------------------------------------------------------- real payloads


def test_real_patter_callbacks_through_the_envelope_route(client) -> None:
    seqs = []
    for event_type, name in (
        ("call_start", "call_start.json"),
        ("transcript", "transcript_user.json"),
        ("turn", "turn_metrics.json"),
    ):
        seqs.append(post(client, event_type, payload(name))["seq"])
    live = client.get(f"/api/v1/calls/{CALL_ID}").get_json()["data"]
    assert live["status"] == "in-progress" and live["ended_at"] is None
    assert live["cost"]["total"] == 0.016431  # cost_so_far from the turn
    assert [line["text"] for line in live["transcript"]][:1] == ["Hi, I'd like to book a teeth cleaning next week."]
    seqs.append(post(client, "call_end", payload("call_end.json"))["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert_stored_like_patter(client.get(f"/api/v1/calls/{CALL_ID}").get_json()["data"])
    assert client.get("/api/v1/calls/active").get_json()["count"] == 0


def test_real_patter_notify_dashboard_push(client) -> None:
    start = client.post("/api/dashboard/ingest", json=payload("sdk_notify_call_start.json"))
    assert start.status_code == 202
    assert start.get_json() | {"seq": 0, "accepted": []} == {
        "ok": True, "call_id": CALL_ID, "event": "started", "seq": 0, "accepted": [], "duplicate": False,
    }
    assert client.get("/api/v1/calls/active").get_json()["data"][0]["call_id"] == CALL_ID
    end = client.post("/api/dashboard/ingest", json=payload("sdk_notify_call_end.json"))
    assert end.status_code == 202
    assert end.get_json()["event"] == "ended"
    assert_stored_like_patter(client.get(f"/api/v1/calls/{CALL_ID}").get_json()["data"])


def test_patter_push_classifies_initiated_calls(client) -> None:
    body = {"call_id": "CA-out", "caller": "+15550000001", "callee": "+15550000002", "status": "initiated"}
    response = client.post("/api/dashboard/ingest", json=body)
    assert response.status_code == 202 and response.get_json()["event"] == "initiated"
    call = client.get("/api/v1/calls/CA-out").get_json()["data"]
    assert (call["status"], call["direction"]) == ("initiated", "outbound")


# ------------------------------------------------------- ids and batches


@pytest.mark.checklist(29)
def test_a_replayed_event_id_is_acknowledged_not_applied_twice(client) -> None:
    envelope = {"type": "call_start", "id": "evt-1", "data": {"call_id": "c1"}}
    first = ingest(client, envelope)
    assert first.status_code == 202
    assert first.get_json()["duplicate"] is False
    again = ingest(client, envelope)
    assert again.status_code == 200
    seq = first.get_json()["seq"]
    assert again.get_json() == {"seq": seq, "duplicate": True, "accepted": [{"seq": seq, "duplicate": True}]}
    health = client.get("/api/v1/health").get_json()["events"]
    assert (health["accepted"], health["duplicates"]) == (1, 1)
    # two different events of the same call, each with its own id, are both kept
    for i, text in enumerate(("first line", "second line")):
        post(client, "transcript", {"call_id": "c1", "role": "user", "text": text}, id=f"line-{i}")
    lines = client.get("/api/v1/calls/c1").get_json()["data"]["transcript"]
    assert [ln["text"] for ln in lines] == ["first line", "second line"]


def test_a_batch_is_applied_in_order_with_one_ack_each(client) -> None:
    events = [
        {"type": "call_start", "id": "b-1", "data": {"call_id": "c1", "caller": "+1555"}},
        {"type": "transcript", "id": "b-2", "data": {"call_id": "c1", "role": "user", "text": "hello"}},
        {"type": "call_end", "id": "b-3", "data": {"call_id": "c1", "metrics": {"duration_seconds": 5}}},
    ]
    response = ingest(client, {"events": events})
    assert response.status_code == 202
    accepted = response.get_json()["accepted"]
    assert [a["duplicate"] for a in accepted] == [False] * 3
    assert [a["seq"] for a in accepted] == sorted(a["seq"] for a in accepted)
    call = client.get("/api/v1/calls/c1").get_json()["data"]
    assert (call["status"], call["duration_seconds"], call["transcript"][0]["text"]) == ("completed", 5, "hello")
    mixed = ingest(client, {"events": [events[0], {"type": "call_start", "id": "b-4", "data": {"call_id": "c2"}}]})
    assert mixed.status_code == 202  # not all duplicates
    assert [a["duplicate"] for a in mixed.get_json()["accepted"]] == [True, False]


def test_one_bad_event_refuses_the_whole_batch(client) -> None:
    batch = {"events": [
        {"type": "call_start", "data": {"call_id": "good"}},
        {"type": "transcript", "data": {"call_id": "good", "role": "user"}},
        {"type": "call_start", "data": {"call_id": 7}},
    ]}
    body = assert_refused(ingest(client, batch), 422)
    fields = [d["field"] for d in body["details"]]
    assert "events[1].data.text" in fields and "events[2].data.call_id" in fields
    assert client.get("/api/v1/calls/good").status_code == 404
    assert client.get("/api/v1/health").get_json()["events"]["accepted"] == 0


def test_an_event_the_server_fails_to_apply_is_not_reported_as_applied(app, client) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("a bug in the store")

    app.extensions["patter_dash"].pipeline.store.apply = broken
    response = ingest(client, {"type": "call_start", "data": {"call_id": "x"}})
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("internal error")
    patter = client.post("/api/dashboard/ingest", json={"call_id": "y"})
    assert patter.status_code == 500 and patter.get_json()["error"].startswith("internal error")


# ------------------------------------------------------------ bad bodies


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        ("{bad json", 400, None),
        ("", 400, None),
        ('{"type": "call_start", "data": {"call_id": "x", "n": NaN}}', 400, None),
        ('{"type": "call_start", "data": {"call_id": "x", "n": Infinity}}', 400, None),
        ('{"type": "call_start", "data": {"call_id": "x", "n": -Infinity}}', 400, None),
        ('{"type": "call_start", "data": {"call_id": "x", "n": 1e999}}', 422, "data.n"),
        ("[1]", 422, "body"),
        ('"x"', 422, "body"),
        ("null", 422, "body"),
        ('{"type": 5}', 422, "type"),
        ('{"type": "telepathy", "data": {"call_id": "x"}}', 422, "type"),
        ('{"type": "turn", "data": {"call_id": 123}}', 422, "data.call_id"),
        ('{"type": "turn", "data": {"call_id": "x"}}', 422, "data.turn"),
        ('{"type": "call_start", "data": []}', 422, "data"),
        ('{"type": "call_start", "data": {"call_id": ""}}', 422, "data.call_id"),
        ('{"type": "call_start", "id": 5, "data": {"call_id": "x"}}', 422, "id"),
        ('{"type": "call_end", "data": {"call_id": "x", "metrics": {"duration_seconds": "long"}}}', 422, "data.metrics.duration_seconds"),
        ('{"type": "call_end", "data": {"call_id": "x", "transcript": [{"role": 1, "text": "hi"}]}}', 422, "data.transcript[0].role"),
        ('{"events": []}', 422, "events"),
        ('{"events": {"type": "call_start"}}', 422, "events"),
    ],
)
@pytest.mark.checklist(22, 25, 26)
def test_bad_bodies_are_refused_with_json_naming_the_field(client, raw: str, status: int, field: str | None) -> None:
    assert_refused(raw_ingest(client, raw), status, field)
    assert client.get("/api/v1/health").get_json()["events"]["accepted"] == 0


@pytest.mark.checklist(25)
def test_unknown_type_lists_the_allowed_types(client) -> None:
    body = assert_refused(ingest(client, {"type": "telepathy", "data": {"call_id": "x"}}), 422, "type")
    message = next(d["error"] for d in body["details"] if d["field"] == "type")
    assert all(t in message for t in EVENT_TYPES)


@pytest.mark.checklist(27)
def test_deep_nesting_is_refused_not_a_crash(client) -> None:
    assert_refused(raw_ingest(client, "[" * 100_000 + "]" * 100_000), 400)
    assert_refused(raw_ingest(client, '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}"), 400)
    assert client.get("/api/v1/health").get_json()["events"]["accepted"] == 0


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("123456789012345678901234567890", "data.n"),
        ("1e300", "data.n"),
        ('{"cost": {"total": 1' + "0" * 400 + "}}", "data.metrics.cost.total"),
    ],
    ids=["huge-integer", "huge-float", "overflowing-cost"],
)
@pytest.mark.checklist(26)
def test_numbers_beyond_2_53_are_refused(client, value: str, field: str) -> None:
    event_type, key = ("call_end", "metrics") if "cost" in value else ("call_start", "n")
    body = '{"type": "%s", "data": {"call_id": "x", "%s": %s}}' % (event_type, key, value)
    assert_refused(raw_ingest(client, body), 422, field)
    assert client.get("/api/v1/health").get_json()["events"]["accepted"] == 0


@pytest.mark.checklist(26, 31)
def test_extreme_but_allowed_times_keep_every_response_valid_json(client) -> None:
    negative = '{"type": "call_end", "data": {"call_id": "far", "ended_at": 9e15, "metrics": {"duration_seconds": -9e15}}}'
    assert_refused(raw_ingest(client, negative), 422, "data.metrics.duration_seconds")
    body = '{"type": "call_end", "data": {"call_id": "far", "ended_at": 9e15, "metrics": {"duration_seconds": 9e15}}}'
    assert raw_ingest(client, body).status_code == 202
    far = client.get("/api/v1/calls/far").get_json()["data"]
    assert "clock_skew" in far["flags"] and far["ended_at"] < 1e11 and far["duration_seconds"] < 60
    for path in ("/api/v1/calls", "/api/v1/calls/far", "/api/v1/analytics/overview", "/api/v1/analytics/costs", "/api/v1/export/json"):
        response = client.get(path)
        assert response.status_code == 200, path
        json.loads(response.data, parse_constant=lambda c: pytest.fail(f"{c} in {path}"))


def test_unknown_nested_fields_are_kept_as_sent(client) -> None:
    nested = '{"a": ' * 40 + "1" + "}" * 40
    assert raw_ingest(client, '{"type": "call_start", "data": {"call_id": "deep", "custom": %s}}' % nested).status_code == 202
    extra = client.get("/api/v1/calls/deep").get_json()["data"]["extra"]["custom"]
    assert json.dumps(extra, separators=(",", ":")) == nested.replace(" ", "")


@pytest.mark.checklist(23)
def test_wrong_content_type_is_415(client) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        body = assert_refused(raw_ingest(client, '{"type": "call_start", "data": {"call_id": "x"}}', content_type), 415, "Content-Type")
        assert "application/json" in body["error"]
    ok = raw_ingest(client, '{"type": "call_start", "data": {"call_id": "x"}}', "application/json; charset=utf-8")
    assert ok.status_code == 202


@pytest.mark.checklist(24)
def test_body_over_the_limit_is_413() -> None:
    app = create_app({"TESTING": True, "PATTER_DASH_MAX_BODY": 1000})
    client = app.test_client()
    try:
        big = json.dumps({"type": "call_start", "data": {"call_id": "x", "pad": "p" * 2000}})
        assert_refused(raw_ingest(client, big), 413, "body")
        patter = client.post("/api/dashboard/ingest", data=big, content_type="application/json")
        assert_refused(patter, 413, "body")
        assert raw_ingest(client, json.dumps({"type": "call_start", "data": {"call_id": "x"}})).status_code == 202
    finally:
        app.extensions["patter_dash"].stop()


def test_invalid_utf8_is_refused(client) -> None:
    assert_refused(raw_ingest(client, b'{"type": "call_start", "data": {"call_id": "\xff\xfe"}}'), 400)


def test_patter_push_refusals(client) -> None:
    assert_refused(client.post("/api/dashboard/ingest", json=[1]), 422, "body")
    assert_refused(client.post("/api/dashboard/ingest", json={"caller": "+1555"}), 422, "data.call_id")
    assert_refused(client.post("/api/dashboard/ingest", data="{", content_type="application/json"), 400)
    assert_refused(client.post("/api/dashboard/ingest", data="{}", content_type="text/plain"), 415, "Content-Type")


# ------------------------------------------------------------- sanitising


@pytest.mark.checklist(28)
def test_nul_and_huge_text_are_sanitised_and_the_call_stays_readable(client) -> None:
    raw = (
        '{"type": "call_end", "data": {"call_id": "odd", "caller": "+1\\u0000555",'
        ' "metrics": {"duration_seconds": 3},'
        ' "conversation_history": [{"role": "user", "text": "%s"}]}}' % ("word " * 200_000)
    )
    assert len(raw) > 1_000_000
    assert raw_ingest(client, raw).status_code == 202
    call = client.get("/api/v1/calls/odd").get_json()["data"]
    assert call["caller"] == "+1555"
    text = call["transcript"][0]["text"]
    assert len(text) == 20_000 and text.endswith(TRUNCATION_MARK) and text.startswith("word word")
    assert client.get("/api/v1/calls?q=word").get_json()["pagination"]["total"] == 1


@pytest.mark.checklist(28)
def test_lone_surrogates_are_replaced(client) -> None:
    raw = '{"type": "call_start", "data": {"call_id": "s\\udc80", "caller": "a\\ud800b", "callee": "\\ud83d\\ude80"}}'
    assert raw_ingest(client, raw).status_code == 202
    (call,) = client.get("/api/v1/calls/active").get_json()["data"]
    assert call["callee"] == "\U0001f680"  # a valid pair is one character, kept
    for value in (call["call_id"], call["caller"]):
        value.encode("utf-8")  # no surrogate left: encodable
        assert "\ufffd" in value


def test_one_lone_surrogate_becomes_one_replacement_character(client) -> None:
    raw = '{"type": "call_start", "data": {"call_id": "s1", "caller": "a\\ud800b"}}'
    assert raw_ingest(client, raw).status_code == 202
    assert client.get("/api/v1/calls/s1").get_json()["data"]["caller"] == "a\ufffdb"


# ------------------------------------------------- through gunicorn + gevent


@pytest.mark.checklist(24)
def test_body_limits_hold_under_gunicorn_including_chunked_bodies(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN="live-token", PATTER_DASH_MAX_BODY=4096)
    url, headers = f"{server.url}/api/v1/ingest", {**server.headers, "Content-Type": "application/json"}
    big = json.dumps({"type": "call_start", "data": {"call_id": "big", "pad": "p" * 10_000}}).encode()

    def chunks() -> Any:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    for body in (big, chunks()):
        response = requests.post(url, data=body, headers=headers, timeout=10)
        assert response.status_code == 413
        assert response.json()["details"][0]["field"] == "body"
    small = json.dumps({"type": "call_start", "data": {"call_id": "small"}}).encode()
    assert requests.post(url, data=iter([small[:10], small[10:]]), headers=headers, timeout=10).status_code == 202
    exact = small[:-1] + b" " * (4096 - len(small)) + b"}"  # exactly the limit: allowed
    assert len(exact) == 4096
    assert requests.post(url, data=exact, headers=headers, timeout=10).status_code == 202
    assert requests.post(url, data=iter([exact[:2000], exact[2000:]]), headers=headers, timeout=10).status_code == 202
    deep = requests.post(url, data="[" * 100_000 + "]" * 100_000, headers=headers, timeout=10)
    assert deep.status_code == 413  # over this server's 4 KB limit before it is even parsed
    assert requests.get(f"{server.url}/api/v1/calls/big", headers=server.headers, timeout=10).status_code == 404
    assert requests.get(f"{server.url}/api/v1/calls/small", headers=server.headers, timeout=10).status_code == 200


@pytest.mark.checklist(22, 25, 26, 27)
def test_hostile_bodies_under_gunicorn(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN="live-token")
    url, headers = f"{server.url}/api/v1/ingest", {**server.headers, "Content-Type": "application/json"}
    assert requests.post(url, data="[" * 100_000 + "]" * 100_000, headers=headers, timeout=10).status_code == 400
    raw = (
        '{"type": "call_end", "data": {"call_id": "odd\\u0000", "caller": "\\ud800",'
        ' "conversation_history": [{"role": "user", "text": "%s"}]}}'
    )
    assert requests.post(url, data=raw % ("x" * 1_000_000), headers=headers, timeout=10).status_code == 202
    detail = requests.get(f"{server.url}/api/v1/calls/odd", headers=server.headers, timeout=10)
    assert detail.status_code == 200 and len(detail.json()["data"]["transcript"][0]["text"]) == 20_000
    for path in ("/api/v1/export/csv", "/api/v1/export/json"):
        export = requests.get(server.url + path, headers=server.headers, timeout=10)
        assert export.status_code == 200 and "odd" in export.text
    assert json.loads(requests.get(f"{server.url}/api/v1/export/json", headers=server.headers, timeout=10).text)[0]["call_id"] == "odd"
    assert "Traceback" not in server.logs()
