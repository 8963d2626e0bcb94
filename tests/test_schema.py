"""One schema source: real answers of every route fit their model (msgspec, strict) and the served OpenAPI schema.

The answers come from a real gunicorn + gevent server fed Patter's own payloads
(tests/fixtures/patter-payloads), so a field a route adds, drops or retypes
without its model in patter_dash/model/views.py saying so fails here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
import requests
from conftest import BLOCKED, LiveServer, payload

from patter_dash.core import store
from patter_dash.model import events, views
from patter_dash.model.clean import MAX_TEXT_LENGTH
from patter_dash.web import api

CALL_ID = "CA941522e75e5447c05b6ca6d201f13845"  # the finished call in the fixtures
LIVE = "CA-live-0001"
NOTIFIED = "CA-notify-0001"
REALTIME = "CArealtime0000000000000000000000001"  # Patter's Realtime handler's call (realtime_call.json)
REALTIME_LIVE = "CA-realtime-live"


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator for ``schema``, its $refs resolved in the document."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def as_call(name: str, call_id: str) -> dict[str, Any]:
    data = payload(name)
    data["call_id"] = call_id
    return data


class Fed:
    """A live server fed Patter's payloads, and the answers its ingest routes gave."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.answers: dict[str, requests.Response] = {}
        url = server.url
        post = requests.post
        # The finished call, as Patter's callbacks deliver it, with Patter's own
        # unknown fields (custom_params, metrics.context_tokens, ...).
        self.answers["ack"] = post(f"{url}/api/v1/ingest", json={"type": "call_start", "id": "start-1", "data": payload("call_start.json")})
        self.answers["ack duplicate"] = post(f"{url}/api/v1/ingest", json={"type": "call_start", "id": "start-1", "data": payload("call_start.json")})
        self.answers["ack batch"] = post(
            f"{url}/api/v1/ingest",
            json={"events": [
                {"type": "transcript", "data": payload("transcript_user.json")},
                {"type": "turn", "data": payload("turn_metrics.json")},
                {"type": "call_end", "data": payload("call_end.json")},
            ]},
        )
        # A live call: started, one line, one turn with an unknown field and an
        # unknown latency field, which the product promises to give back.
        turn = as_call("turn_metrics.json", LIVE)
        turn["turn"]["vad_model"] = "silero-v5"
        turn["turn"]["latency"]["network_ms"] = 12.5
        server.post_events([
            {"type": "call_start", "data": as_call("call_start.json", LIVE)},
            {"type": "transcript", "data": as_call("transcript_user.json", LIVE)},
            {"type": "turn", "data": turn},
        ])
        # A Realtime call from Patter's own handler: lines with turnIndex, tool lines with their fields,
        # finished; and the same call still live (its turns and lines in the active page).
        realtime = payload("realtime_call.json")
        server.post_events(realtime)
        server.post_events([{**e, "data": {**e["data"], "call_id": REALTIME_LIVE}} for e in realtime[:-1]])
        # Patter's own push, start and end, and the end again (already held).
        self.answers["patter ack"] = post(f"{url}/api/dashboard/ingest", json=as_call("sdk_notify_call_start.json", NOTIFIED))
        self.answers["patter ack end"] = post(f"{url}/api/dashboard/ingest", json=as_call("sdk_notify_call_end.json", NOTIFIED))
        self.answers["patter ack duplicate"] = post(f"{url}/api/dashboard/ingest", json=as_call("sdk_notify_call_end.json", NOTIFIED))
        self.answers["refused event"] = post(f"{url}/api/v1/ingest", json={"type": "turn", "data": {"call_id": 5}})
        self.answers["refused batch"] = post(
            f"{url}/api/v1/ingest", json={"events": [{"type": "nope", "data": {}}, {"type": "transcript", "data": {"call_id": "x"}}]}
        )
        self.answers["wrong content type"] = post(f"{url}/api/v1/ingest", data="{}", headers={"Content-Type": "text/plain"})
        self.document = server.get("/api/v1/openapi.json").json()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    server = LiveServer(Path(tmp_path_factory.mktemp("schema")), {}).start()
    try:
        yield Fed(server)
    finally:
        server.kill()
        assert BLOCKED not in server.logs(), server.logs()[-3000:]


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    return document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]


def check(document: dict[str, Any], model: Any, body: Any, schema: dict[str, Any]) -> None:
    """``body`` fits ``model`` (strict: no coercion, closed records refuse unknown fields) and ``schema``."""
    msgspec.convert(body, model, strict=True)
    errors = [f"{e.instance_path}: {e.message}" for e in validator(document, schema).iter_errors(body)]
    assert not errors, errors


# ------------------------------------------------------------- read routes

READS = [
    # (what, request path, documented path, status, model)
    ("history", "/api/v1/calls", "/api/v1/calls", 200, views.CallList),
    ("full history", "/api/v1/calls?full=1", "/api/v1/calls", 200, views.FullCallList),
    ("history searched (rows with match)", "/api/v1/calls?q=e", "/api/v1/calls", 200, views.CallList),
    ("a q with nothing to search for", "/api/v1/calls?q=%2A", "/api/v1/calls", 400, views.Error),
    ("active page", "/api/v1/calls/active", "/api/v1/calls/active", 200, views.ActiveCallList),
    ("finished call", f"/api/v1/calls/{CALL_ID}", "/api/v1/calls/{call_id}", 200, views.CallAnswer),
    ("live call", f"/api/v1/calls/{LIVE}", "/api/v1/calls/{call_id}", 200, views.CallAnswer),
    ("notified call", f"/api/v1/calls/{NOTIFIED}", "/api/v1/calls/{call_id}", 200, views.CallAnswer),
    ("realtime call", f"/api/v1/calls/{REALTIME}", "/api/v1/calls/{call_id}", 200, views.CallAnswer),
    ("live realtime call", f"/api/v1/calls/{REALTIME_LIVE}", "/api/v1/calls/{call_id}", 200, views.CallAnswer),
    ("active page without turns", "/api/v1/calls/active?turns=0", "/api/v1/calls/active", 200, views.ActiveCallList),
    ("bad turns", "/api/v1/calls/active?turns=101", "/api/v1/calls/active", 400, views.Error),
    ("full export", "/api/v1/export/json", "/api/v1/export/json", 200, list[views.CallDetail]),
    ("overview", "/api/v1/analytics/overview", "/api/v1/analytics/overview", 200, views.OverviewAnswer),
    ("overview of a period", "/api/v1/analytics/overview?from=0&to=4000000000", "/api/v1/analytics/overview", 200, views.OverviewAnswer),
    ("costs", "/api/v1/analytics/costs", "/api/v1/analytics/costs", 200, views.CostsAnswer),
    ("costs by day", "/api/v1/analytics/costs?bucket=day&from=0", "/api/v1/analytics/costs", 200, views.CostsAnswer),
    ("providers", "/api/v1/analytics/providers", "/api/v1/analytics/providers", 200, views.ProvidersAnswer),
    ("providers, filtered", "/api/v1/analytics/providers?from=0&direction=inbound&q=a", "/api/v1/analytics/providers", 200,
     views.ProvidersAnswer),
    ("providers of no call", "/api/v1/analytics/providers?to=0", "/api/v1/analytics/providers", 200, views.ProvidersAnswer),
    ("health", "/api/v1/health", "/api/v1/health", 200, views.Health),
    ("unknown call", "/api/v1/calls/nope", "/api/v1/calls/{call_id}", 404, views.Error),
    ("bad parameter", "/api/v1/calls?limit=0", "/api/v1/calls", 400, views.Error),
    ("bad period", "/api/v1/analytics/costs?from=tomorrow", "/api/v1/analytics/costs", 400, views.Error),
    ("bad providers filter", "/api/v1/analytics/providers?direction=up", "/api/v1/analytics/providers", 400, views.Error),
    # Patter's own dashboard routes (Patter's shapes).
    ("patter history", "/api/dashboard/calls?limit=1000", "/api/dashboard/calls", 200, list[views.PatterRecord]),
    ("patter finished call", f"/api/dashboard/calls/{CALL_ID}", "/api/dashboard/calls/{call_id}", 200, views.PatterRecord),
    ("patter realtime call", f"/api/dashboard/calls/{REALTIME}", "/api/dashboard/calls/{call_id}", 200, views.PatterRecord),
    ("patter live call", f"/api/dashboard/calls/{LIVE}", "/api/dashboard/calls/{call_id}", 200, views.PatterLiveCall),
    ("patter unknown call", "/api/dashboard/calls/nope", "/api/dashboard/calls/{call_id}", 404, views.Error),
    ("patter live calls", "/api/dashboard/active", "/api/dashboard/active", 200, list[views.PatterLiveCall]),
    ("patter aggregates", "/api/dashboard/aggregates", "/api/dashboard/aggregates", 200, views.PatterAggregates),
    ("patter export", "/api/dashboard/export/calls", "/api/dashboard/export/calls", 200, list[views.PatterRecord]),
]


@pytest.mark.parametrize(("what", "url", "path", "status", "model"), READS, ids=[r[0] for r in READS])
def test_every_read_answer_fits_its_model_and_the_served_schema(fed: Fed, what: str, url: str, path: str, status: int, model: Any) -> None:
    response = fed.server.get(url)
    assert response.status_code == status, response.text
    check(fed.document, model, response.json(), response_schema(fed.document, path, "get", status))


INGESTS = [
    # (answer, documented path, status, model)
    ("ack", "/api/v1/ingest", 202, views.Ack),
    ("ack duplicate", "/api/v1/ingest", 200, views.Ack),
    ("ack batch", "/api/v1/ingest", 202, views.Ack),
    ("patter ack", "/api/dashboard/ingest", 202, views.PatterAck),
    ("patter ack end", "/api/dashboard/ingest", 202, views.PatterAck),
    ("patter ack duplicate", "/api/dashboard/ingest", 200, views.PatterAck),
    ("refused event", "/api/v1/ingest", 422, views.Error),
    ("refused batch", "/api/v1/ingest", 422, views.Error),
    ("wrong content type", "/api/v1/ingest", 415, views.Error),
]


@pytest.mark.parametrize(("what", "path", "status", "model"), INGESTS, ids=[i[0] for i in INGESTS])
def test_every_ingest_answer_fits_its_model_and_the_served_schema(fed: Fed, what: str, path: str, status: int, model: Any) -> None:
    response = fed.answers[what]
    assert response.status_code == status, response.text
    check(fed.document, model, response.json(), response_schema(fed.document, path, "post", status))


def test_the_answers_checked_hold_what_patter_sent_beyond_the_models(fed: Fed) -> None:
    """The open parts of a record are exercised, not just allowed: unknown fields come back and still fit."""
    detail = fed.server.get(f"/api/v1/calls/{CALL_ID}").json()["data"]
    assert detail["extra"]["custom_params"] == payload("call_start.json")["custom_params"]
    assert detail["metrics"]["context_tokens"] == payload("call_end.json")["metrics"]["context_tokens"]
    assert len(detail["transcript"]) >= 6 and len(detail["turns"]) >= 2 and detail["ended_at"] is not None
    live = fed.server.get(f"/api/v1/calls/{LIVE}").json()["data"]
    assert live["ended_at"] is None and live["transcript"]
    assert [(t["vad_model"], t["latency"]["network_ms"]) for t in live["turns"]] == [("silero-v5", 12.5)]
    # A transcript line's own fields (Patter's turnIndex, a tool line's tool_name...), in every view that has lines.
    realtime = fed.server.get(f"/api/v1/calls/{REALTIME}").json()["data"]
    assert [line.get("turnIndex") for line in realtime["transcript"]] == [0, 0, 1, 1, None, None]
    assert realtime["transcript"][-1]["tool_args"] == {"day": "Friday"}
    (active,) = [c for c in fed.server.get("/api/v1/calls/active").json()["data"] if c["call_id"] == REALTIME_LIVE]
    assert [t["turn_index"] for t in active["turns"]] == [0, 1] and active["transcript"][0]["turnIndex"] == 0
    batch = fed.answers["ack batch"].json()
    assert len(batch["accepted"]) == 3 and "seq" not in batch
    refused = fed.answers["refused batch"].json()
    assert [d["field"] for d in refused["details"]] == ["events[0].type", "events[1].data.role"]


# ------------------------------------------------------ the check can fail


def test_a_drift_between_an_answer_and_its_model_fails_both_checks(fed: Fed) -> None:
    answer = fed.server.get("/api/v1/calls").json()
    schema = response_schema(fed.document, "/api/v1/calls", "get", 200)
    check(fed.document, views.CallList, answer, schema)

    def drifted(change: Any) -> dict[str, Any]:
        body = copy.deepcopy(answer)
        change(body["data"][0])
        return body

    drifts = {
        "a field the model does not declare": drifted(lambda row: row.update(new_field=1)),
        "a declared field left out": drifted(lambda row: row.pop("flags")),
        "a number sent as text": drifted(lambda row: row.update(turn_count="3")),
        "a negative cost": drifted(lambda row: row["cost"].update(total=-1.0)),
        "a text past the limit": drifted(lambda row: row.update(caller="x" * 257)),
    }
    for what, body in drifts.items():
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(body, views.CallList, strict=True)
        assert not validator(fed.document, schema).is_valid(body), what
    # Where Patter's unknown fields are promised back, an unknown field is no drift.
    kept = drifted(lambda row: row["metrics"].update(context_tokens=812))
    check(fed.document, views.CallList, kept, schema)


# ------------------------------------------------ input: schema and validator


def test_patter_payloads_fit_the_envelope_schema_and_model(fed: Fed) -> None:
    envelope = validator(fed.document, {"$ref": "#/components/schemas/Envelope"})
    for event_type, name in (
        ("call_start", "call_start.json"),
        ("transcript", "transcript_user.json"),
        ("turn", "turn_metrics.json"),
        ("call_end", "call_end.json"),
    ):
        body = {"type": event_type, "id": name, "data": payload(name)}
        assert envelope.is_valid(body), name
        msgspec.convert(body, events.Envelope, strict=True)
    for body in payload("realtime_call.json"):
        assert envelope.is_valid(body), body
        msgspec.convert(body, events.Envelope, strict=True)
    for name in ("sdk_notify_call_start.json", "sdk_notify_call_end.json"):
        assert validator(fed.document, {"$ref": "#/components/schemas/PatterCall"}).is_valid(payload(name)), name


BAD_EVENTS = [
    # (what, envelope, the field the 422 names)
    ("negative cost", {"type": "turn", "data": {**payload("turn_metrics.json"), "cost_so_far": {"total": -0.5}}}, "data.cost_so_far.total"),
    ("negative turn index", {"type": "turn", "data": {"call_id": "c", "turn": {"turn_index": -1}}}, "data.turn.turn_index"),
    ("negative line turn index", {"type": "transcript", "data": {"call_id": "c", "role": "user", "text": "hi", "turnIndex": -1}},
     "data.turnIndex"),
    ("final line turn index as text",
     {"type": "call_end", "data": {"call_id": "c", "conversation_history": [{"role": "user", "text": "hi", "turnIndex": "1"}]}},
     "data.conversation_history[0].turnIndex"),
    ("role past 64 characters", {"type": "transcript", "data": {"call_id": "c", "role": "r" * 65, "text": "hi"}}, "data.role"),
    ("call id past 256 characters", {"type": "call_start", "data": {"call_id": "c" * 257}}, "data.call_id"),
    ("event id past 256 characters", {"type": "call_start", "id": "i" * 257, "data": {"call_id": "c"}}, "id"),
    ("timestamp past 2**53", {"type": "transcript", "data": {"call_id": "c", "role": "user", "text": "hi", "timestamp": 2**53 + 2}}, "data.timestamp"),
    ("latency as text", {"type": "turn", "data": {"call_id": "c", "turn": {"latency": {"stt_ms": "fast"}}}}, "data.turn.latency.stt_ms"),
    ("unknown type", {"type": "call_ended", "data": {"call_id": "c"}}, "type"),
    ("transcript without text", {"type": "transcript", "data": {"call_id": "c", "role": "user"}}, "data.text"),
    ("metrics turns not a list", {"type": "call_end", "data": {"call_id": "c", "metrics": {"turns": {}}}}, "data.metrics.turns"),
]


@pytest.mark.parametrize(("what", "envelope", "field"), BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
def test_what_the_schema_refuses_the_server_refuses_naming_the_field(fed: Fed, what: str, envelope: dict[str, Any], field: str) -> None:
    assert not validator(fed.document, {"$ref": "#/components/schemas/Envelope"}).is_valid(envelope)
    response = requests.post(f"{fed.server.url}/api/v1/ingest", json=envelope, timeout=10)
    assert response.status_code == 422, response.text
    body = response.json()
    check(fed.document, views.Error, body, {"$ref": "#/components/schemas/Error"})
    assert [d["field"] for d in body["details"]] == [field]


def test_a_long_text_is_cut_not_refused_and_the_answer_states_the_limit(fed: Fed) -> None:
    envelope = {"type": "transcript", "data": {"call_id": "CA-long", "role": "user", "text": "\x00" + "a" * (MAX_TEXT_LENGTH + 5)}}
    assert validator(fed.document, {"$ref": "#/components/schemas/Envelope"}).is_valid(envelope)
    assert requests.post(f"{fed.server.url}/api/v1/ingest", json=envelope, timeout=10).status_code == 202
    answer = fed.server.get("/api/v1/calls/CA-long").json()
    check(fed.document, views.CallAnswer, answer, response_schema(fed.document, "/api/v1/calls/{call_id}", "get", 200))
    text = answer["data"]["transcript"][0]["text"]
    assert len(text) == MAX_TEXT_LENGTH and text.endswith("…[truncated]") and "\x00" not in text


# ------------------------------------------------------------- the document


def test_every_schema_in_the_document_is_generated_from_a_model(fed: Fed) -> None:
    from patter_dash.web import openapi

    _, generated = msgspec.json.schema_components(openapi.MODELS, ref_template=openapi.REF)
    served = fed.document["components"]["schemas"]
    assert set(served) - set(generated) == {"Envelope", "PatterCall"}  # a union of models, and a classification rule
    for name in generated:
        assert "." not in name, f"two models share the name {name}: rename one"
        assert served[name]["properties"] == generated[name]["properties"], name
        # Closed records say additionalProperties: false; the rest keep unknown fields and say so.
        assert served[name]["additionalProperties"] in (True, False), name
    for name in ("CallMetricsRecord", "TurnRecord", "LatencyBreakdown", "CostBreakdown", "CallEnd"):
        assert served[name]["additionalProperties"] is True, name
    for name in ("CallSummary", "CallDetail", "ActiveCall", "Overview", "Costs", "Health", "Ack", "Error"):
        assert served[name]["additionalProperties"] is False, name


def test_documented_limits_are_the_enforced_ones(fed: Fed) -> None:
    served = fed.document["components"]["schemas"]
    assert views.MAX_LINES == store.MAX_LINES
    assert served["CallDetail"]["properties"]["transcript"]["maxItems"] == store.MAX_LINES
    assert views.ACTIVE_LINES == api.ACTIVE_LINES
    assert served["ActiveCall"]["properties"]["transcript"]["maxItems"] == api.ACTIVE_LINES
    assert served["ActiveCall"]["properties"]["turns"]["maxItems"] == api.ACTIVE_TURNS
    turns = next(p for p in fed.document["paths"]["/api/v1/calls/active"]["get"]["parameters"] if p["$ref"].endswith("/turns"))
    assert fed.document["components"]["parameters"]["turns"]["schema"]["maximum"] == api.ACTIVE_TURNS, turns
    line_index = served["TranscriptLine"]["properties"]["turnIndex"]["anyOf"][0]
    assert (line_index["type"], line_index["minimum"]) == ("integer", 0)
    assert served["TranscriptLine"]["properties"]["text"]["maxLength"] == MAX_TEXT_LENGTH
    call_id = served["CallStart"]["properties"]["call_id"]["anyOf"][0]
    assert call_id == {"type": "string", "minLength": 1, "maxLength": events.MAX_ID_LENGTH}
    timestamp = served["Transcript"]["properties"]["timestamp"]["anyOf"][0]
    assert (timestamp["minimum"], timestamp["maximum"]) == (-(2**53), 2**53)
