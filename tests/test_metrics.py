"""GET /metrics on a real gunicorn + gevent server: what Prometheus reads equals what the API says.

The server is fed Patter's own payloads and generated calls (several
providers, statuses, directions, an outbound call whose status comes before
its call_end), and ``/metrics`` is read with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from typing import Any

import pytest
import requests
import yaml  # PyYAML, installed with schemathesis (requirements-dev.txt)
from prometheus_client.parser import text_string_to_metric_families

from patter_dash.ops.metrics import LABEL_CAP, MAX_LABEL, OTHER
from tests.conftest import PAYLOADS, ROOT, payload

TOKEN = "main-token"
METRICS_TOKEN = "scrape-token"
PREFIX = "/ops"
STACKS = (  # (mode, stt, llm, tts) as (provider, model)
    ("pipeline", ("deepgram", "nova-3"), ("openai", "gpt-4o-mini"), ("elevenlabs", "eleven_flash_v2_5")),
    ("pipeline", ("whisper", "whisper-1"), ("anthropic", "claude-haiku"), ("cartesia", "sonic-2")),
    ("openai_realtime", ("", ""), ("openai", "gpt-realtime"), ("", "")),
)


def generated_calls(n: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """Envelopes of ``n`` calls, each a list: start, turns, (status,) end."""
    rng = random.Random(seed)
    now = time.time()
    calls = []
    for i in range(n):
        call_id = f"GEN{i:04d}"
        mode, stt, llm, tts = STACKS[i % len(STACKS)]
        outbound = i % 4 == 1
        status = ("completed", "completed", "failed", "busy", "no-answer")[i % 5]
        turns = []
        for t in range(rng.randint(0, 5) if status == "completed" else 0):
            response = rng.uniform(250, 2500)
            turns.append({
                "turn_index": t, "user_text": f"question {t}", "agent_text": f"answer {t}",
                "latency": {
                    "stt_ms": round(rng.uniform(20, 400), 1) if stt[0] else 0.0,
                    "llm_ms": round(rng.uniform(80, 1500), 1),
                    "tts_ms": round(rng.uniform(30, 500), 1) if tts[0] else 0.0,
                    "total_ms": round(response * 2, 1),
                    # Some turns lack agent_response_ms: total_ms stands in (Patter's rule).
                    **({"agent_response_ms": round(response, 1)} if t % 3 else {}),
                },
            })
        cost = {k: round(rng.uniform(0, 0.02), 6) for k in ("stt", "tts", "llm", "telephony")}
        cost["total"] = round(sum(cost.values()), 6)
        ended = now - rng.uniform(60, 6 * 3600)
        metrics = {
            "duration_seconds": round(rng.uniform(3, 400), 2), "cost": cost, "turns": turns, "provider_mode": mode,
            "stt_provider": stt[0], "stt_model": stt[1], "llm_provider": llm[0], "llm_model": llm[1],
            "tts_provider": tts[0], "tts_model": tts[1], "telephony_provider": "twilio",
        }
        if turns:
            avg = sum(t["latency"].get("agent_response_ms") or t["latency"]["total_ms"] for t in turns) / len(turns)
            metrics["latency_avg"] = {"agent_response_ms": round(avg, 1)}
        events = [{"type": "call_initiated" if outbound else "call_start",
                   "data": {"call_id": call_id, "caller": f"+1555{i:07d}", "callee": "+15550001234",
                            "direction": "outbound" if outbound else "inbound"}}]
        events += [{"type": "turn", "data": {"call_id": call_id, "turn": turn}} for turn in turns]
        if outbound:  # Twilio's status first, Patter's call_end just after
            events.append({"type": "call_status", "data": {"call_id": call_id, "status": status}})
        events.append({"type": "call_end", "data": {"call_id": call_id, "ended_at": ended, "status": status, "metrics": metrics}})
        calls.append(events)
    return calls


def scrape(server: Any, **headers: str) -> dict[str, Any]:
    response = requests.get(f"{server.url}/metrics", headers=headers or server.headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(families: dict[str, Any], name: str, **labels: str) -> list[Any]:
    family = families[re.sub(r"_(total|bucket|count|sum)$", "", name)]
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples(families, name, **labels))


def api(server: Any, path: str) -> Any:
    response = server.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def fed_server(live_server: Any) -> Any:
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_METRICS_TOKEN=METRICS_TOKEN, PATTER_DASH_URL_PREFIX=PREFIX)
    server.post_events([{"type": "call_start", "data": payload("call_start.json")},
                        {"type": "transcript", "data": payload("transcript_user.json")},
                        {"type": "turn", "data": payload("turn_metrics.json")},
                        {"type": "call_end", "data": payload("call_end.json")}])
    server.post_events(json.loads((PAYLOADS / "realtime_call.json").read_text()))
    for call in generated_calls(40):
        server.post_events(call)
    server.post_events([{"type": "call_start", "data": {"call_id": f"LIVE{i}", "direction": "inbound"}} for i in range(2)])
    return server


def expected_turns(server: Any) -> tuple[Counter[tuple[str, ...]], Counter[tuple[str, ...]]]:
    """Turn counts per (mode, llm provider, llm model) and per (stage, provider, model), recomputed from the API."""
    response, stage = Counter(), Counter()
    calls = api(server, "/api/v1/calls?full=1&limit=1000")["data"]
    def label(value: str) -> str:
        return value or "unknown"

    for call in calls:
        mode = label(call["provider_mode"])
        for turn in call["turns"]:
            latency = turn["latency"] or {}
            answer = latency.get("agent_response_ms") or latency.get("total_ms")
            if answer:
                response[(mode, label(call["providers"]["llm"]), label(call["models"]["llm"]))] += 1
            for name in ("stt", "llm", "tts"):
                if (latency.get(f"{name}_ms") or 0) > 0:
                    stage[(name, label(call["providers"][name]), label(call["models"][name]))] += 1
    return response, stage


def histogram_counts(families: dict[str, Any], name: str, labels: tuple[str, ...]) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for s in samples(families, f"{name}_count"):
        counts[tuple(s.labels[k] for k in labels)] += int(s.value)
    return counts


def test_metrics_equal_the_analytics_api_on_the_same_data(live_server) -> None:
    server = fed_server(live_server)
    overview = api(server, "/api/v1/analytics/overview")["data"]
    costs = api(server, "/api/v1/analytics/costs")["data"]
    health = api(server, "/api/v1/health")
    listed = api(server, "/api/v1/calls?limit=1000")["data"]
    m = scrape(server)

    # Calls: the history gauges and this process's counters both hold every completed call.
    assert overview["total_calls"] == len(listed) == 42
    assert {s.labels["status"]: s.value for s in samples(m, "patter_dash_history_calls")} == overview["calls_by_status"]
    by_status = Counter()
    for s in samples(m, "patter_dash_calls_completed_total"):
        by_status[s.labels["status"]] += s.value
    assert by_status == overview["calls_by_status"]
    pairs = Counter((c["status"], c["direction"] or "unknown") for c in listed)
    assert {(s.labels["status"], s.labels["direction"]): s.value for s in samples(m, "patter_dash_calls_completed_total")} == pairs
    assert value(m, "patter_dash_calls_settling") == 0
    assert value(m, "patter_dash_active_calls") == overview["active_calls"] == 2

    # Cost, by component, exact to the API's 6 decimals; the costs route says the same.
    for name in ("patter_dash_history_cost_usd", "patter_dash_call_cost_usd_total"):
        assert value(m, name) == pytest.approx(overview["total_cost"], abs=1e-6) == costs["total_cost"]
    for component, usd in overview["cost_breakdown"].items():
        assert value(m, "patter_dash_history_component_cost_usd", component=component) == pytest.approx(usd, abs=1e-6)
        assert value(m, "patter_dash_call_component_cost_usd_total", component=component) == pytest.approx(usd, abs=1e-6)
        assert costs["breakdown"][component] == usd
    assert sum(point["cost"]["total"] for point in costs["series"]) == pytest.approx(value(m, "patter_dash_call_cost_usd_total"), abs=1e-5)

    # Duration: minutes and the number of calls.
    assert value(m, "patter_dash_history_duration_seconds") / 60 == pytest.approx(overview["total_minutes"], abs=5e-4)
    assert value(m, "patter_dash_call_duration_seconds_sum") / 60 == pytest.approx(costs["total_minutes"], abs=5e-4)
    assert value(m, "patter_dash_call_duration_seconds_count") == costs["calls_analyzed"] == 42
    assert value(m, "patter_dash_call_duration_seconds_bucket", le="+Inf") == 42

    # Response latency per call: what the Analytics page averages, and its P95.
    measured = [c for c in listed if c["latency_avg_ms"]]
    count = value(m, "patter_dash_call_response_latency_seconds_count")
    assert count == len(measured) == value(m, "patter_dash_history_calls_with_latency") >= 10
    assert value(m, "patter_dash_call_response_latency_seconds_sum") / count * 1000 == pytest.approx(overview["avg_latency_ms"], abs=0.051)
    assert value(m, "patter_dash_history_avg_response_latency_seconds") * 1000 == pytest.approx(overview["avg_latency_ms"], abs=0.051)
    assert value(m, "patter_dash_history_p95_response_latency_seconds") * 1000 == pytest.approx(overview["p95_latency_ms"], abs=1e-6)
    buckets = samples(m, "patter_dash_call_response_latency_seconds_bucket")
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert sum(1 for c in measured if c["latency_avg_ms"] <= 1000) == value(m, "patter_dash_call_response_latency_seconds_bucket", le="1.0")

    # Per turn and per stage, by provider and model: the same counts as recomputed from every call's turns.
    turns, stages = expected_turns(server)
    assert histogram_counts(m, "patter_dash_turn_response_latency_seconds", ("mode", "provider", "model")) == turns
    assert histogram_counts(m, "patter_dash_turn_stage_latency_seconds", ("stage", "provider", "model")) == stages
    assert stages[("stt", "deepgram", "nova-3")] and stages[("llm", "anthropic", "claude-haiku")]
    assert not any(provider in ("", None) for _, provider, _ in stages)

    # Ingest, queue, subscribers and history: as health says.
    for outcome, key in (("accepted", "accepted"), ("duplicate", "duplicates"), ("rejected", "rejected"), ("dropped", "dropped")):
        assert value(m, "patter_dash_ingest_events_total", outcome=outcome) == health["events"][key]
    assert value(m, "patter_dash_ingest_queue_capacity") == health["queue"]["capacity"]
    assert value(m, "patter_dash_journal_lag_events") == health["history"]["lag"] == 0
    assert value(m, "patter_dash_history_status", status="ok") == 1 and value(m, "patter_dash_history_status", status="degraded") == 0
    assert value(m, "patter_dash_history_info", mode="sqlite") == 1
    assert value(m, "patter_dash_journal_commits_total") == health["history"]["commits"] > 0


def test_ingest_outcomes_and_live_readers_are_counted(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    envelope = {"type": "call_start", "id": "once", "data": payload("call_start.json")}
    server.post_events([envelope])
    server.post_events([envelope])  # the same id: a duplicate
    refused = requests.post(f"{server.url}/api/v1/ingest", json={"type": "turn", "data": {"call_id": 5}}, headers=server.headers, timeout=10)
    assert refused.status_code == 422
    with requests.get(f"{server.url}/api/v1/events", headers=server.headers, stream=True, timeout=10) as stream:
        next(stream.iter_content(1))
        m = scrape(server)
        assert value(m, "patter_dash_live_subscribers") == 1
    m = scrape(server)
    assert value(m, "patter_dash_ingest_events_total", outcome="accepted") == 1
    assert value(m, "patter_dash_ingest_events_total", outcome="duplicate") == 1
    assert value(m, "patter_dash_ingest_events_total", outcome="rejected") == 1
    assert api(server, "/api/v1/health")["events"]["rejected"] == 1
    assert value(m, "patter_dash_active_calls") == 1
    assert "process_resident_memory_bytes" in m and value(m, "patter_dash_start_time_seconds") > 1.7e9


def test_metrics_take_the_token_or_their_own(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_METRICS_TOKEN=METRICS_TOKEN, PATTER_DASH_URL_PREFIX=PREFIX)
    url = f"{server.url}/metrics"
    bare = requests.get(url, timeout=10)
    assert bare.status_code == 401 and "error" in bare.json() and bare.headers["WWW-Authenticate"].startswith("Bearer")
    for headers, params in (({"Authorization": f"Bearer {TOKEN}"}, {}), ({}, {"token": TOKEN}),
                            ({"Authorization": f"Bearer {METRICS_TOKEN}"}, {})):
        ok = requests.get(url, headers=headers, params=params, timeout=10)
        assert ok.status_code == 200 and "patter_dash_active_calls" in ok.text
    for wrong in ("nope", f"{METRICS_TOKEN}x", METRICS_TOKEN[:-1]):
        refused = requests.get(url, headers={"Authorization": f"Bearer {wrong}"}, timeout=10)
        assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/json"
        assert refused.json()["error"].startswith("authentication required")
    # The scraper's token opens /metrics and nothing else.
    calls = requests.get(f"{server.url}/api/v1/calls", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert calls.status_code == 401
    assert requests.get(f"{server.origin}/metrics", headers=server.headers, timeout=10).status_code == 404  # under the prefix only
    # OpenMetrics when asked for it.
    om = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}", "Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10)
    assert om.headers["Content-Type"].startswith("application/openmetrics-text") and om.text.rstrip().endswith("# EOF")


HOSTILE = ('quote " and \\ backslash', "new\nline", 'brace} ="x", le="1"', "# HELP fake 1", "ünïcode ☎ 电话", "\\n literal", "L" * 256)


def test_caller_given_labels_are_bounded_and_escaped(live_server) -> None:
    """1,000 distinct provider names (and directions) make at most the cap of series; odd text survives the round trip."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    now = time.time()
    names = [*HOSTILE, *(f"provider-{i}" for i in range(1000 - len(HOSTILE)))]
    envelopes = []
    for i, name in enumerate(names):
        turn = {"turn_index": 0, "latency": {"stt_ms": 100.0, "llm_ms": 300.0, "tts_ms": 80.0, "agent_response_ms": 700.0}}
        envelopes.append({"type": "call_end", "data": {
            "call_id": f"H{i}", "ended_at": now, "direction": name[:64],
            "metrics": {"duration_seconds": 10.0, "turns": [turn], "provider_mode": name[:64],
                        "stt_provider": name, "stt_model": f"m-{name}"[:256], "llm_provider": name, "llm_model": name,
                        "tts_provider": name, "tts_model": name}}})
    for start in range(0, len(envelopes), 200):
        server.post_events(envelopes[start:start + 200])
    response = requests.get(f"{server.url}/metrics", headers=server.headers, timeout=10)
    m = {f.name: f for f in text_string_to_metric_families(response.text)}

    stage_sets = {tuple(s.labels[k] for k in ("stage", "provider", "model")) for s in samples(m, "patter_dash_turn_stage_latency_seconds_count")}
    assert len(stage_sets) <= LABEL_CAP + 3  # the cap, plus one "other" per stage
    assert {("stt", OTHER, OTHER), ("llm", OTHER, OTHER), ("tts", OTHER, OTHER)} <= stage_sets
    assert value(m, "patter_dash_turn_stage_latency_seconds_count", stage="stt") == 1000  # folded, not lost
    turn_sets = {tuple(s.labels.values()) for s in samples(m, "patter_dash_turn_response_latency_seconds_count")}
    assert len(turn_sets) <= LABEL_CAP + 1
    completed = samples(m, "patter_dash_calls_completed_total")
    assert len(completed) <= LABEL_CAP + 1 and sum(s.value for s in completed) == 1000
    assert len(response.content) < 400_000  # bounded whatever the callers send

    # Each odd name came back exactly as stored (the cleaned text the API gives back).
    stored = {c["call_id"]: c for c in api(server, "/api/v1/calls?limit=1000")["data"]}
    for i, name in enumerate(HOSTILE):
        kept = stored[f"H{i}"]["providers"]["stt"][:MAX_LABEL]
        assert kept == name[:MAX_LABEL]
        assert ("stt", kept, f"m-{name}"[:MAX_LABEL]) in stage_sets, kept
        assert any(s.labels["direction"] == name[:MAX_LABEL] for s in completed), name


# --------------------------------------------------------------- shipped docs

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
ALERTS = ROOT / "docs" / "prometheus-alerts.yml"
METRIC = re.compile(r"\b(?:patter_dash|process)_[a-zA-Z0-9_]+\b")


def queries(node: Any) -> list[str]:
    """Every PromQL string in a Grafana dashboard: panel targets and template variables."""
    found = []
    if isinstance(node, dict):
        for key, item in node.items():
            if key == "expr" and isinstance(item, str):
                found.append(item)
            elif key == "query" and isinstance(item, (str, dict)):
                found.append(item if isinstance(item, str) else item.get("query", ""))
            else:
                found.extend(queries(item))
    elif isinstance(node, list):
        for item in node:
            found.extend(queries(item))
    return [q for q in found if q]


def exported_names(families: dict[str, Any]) -> set[str]:
    return {s.name for family in families.values() for s in family.samples} | set(families)


def test_the_grafana_dashboard_and_alert_rules_name_only_exported_metrics(live_server) -> None:
    server = fed_server(live_server)
    exported = exported_names(scrape(server, Authorization=f"Bearer {METRICS_TOKEN}"))

    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p.get("title") for p in dashboard["panels"]}
    # What the Analytics page shows: its seven tiles and three charts.
    assert {"Total calls", "Total minutes", "Avg duration", "Total cost", "Avg latency", "P95 latency", "Active calls",
            "Cost over time", "Cost by component", "Latency over time"} <= titles
    exprs = queries(dashboard)
    assert len(exprs) >= 15
    for expr in exprs:
        named = METRIC.findall(expr)
        assert named, f"no metric in {expr!r}"
        missing = [name for name in named if name not in exported]
        assert not missing, f"{expr!r} names {missing}, which /metrics does not export"
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel.get("title")

    rules = yaml.safe_load(ALERTS.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 5
    for rule in alerts:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        for name in METRIC.findall(rule["expr"]):
            assert name in exported, f"alert {rule['alert']} names {name}, which /metrics does not export"
        assert rule["annotations"]["summary"]


def test_the_api_reference_documents_metrics_as_text() -> None:
    from patter_dash.run.app import create_app

    app = create_app({"TESTING": True, "PATTER_DASH_DB": ":memory:", "PATTER_DASH_TOKEN": TOKEN, "PATTER_DASH_METRICS_TOKEN": METRICS_TOKEN})
    try:
        client = app.test_client()
        document = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
        operation = document["paths"]["/metrics"]["get"]
        assert set(operation["responses"]["200"]["content"]) == {"text/plain", "application/openmetrics-text"}
        assert {"metricsToken": []} in operation["security"] and {"bearerAuth": []} in operation["security"]
        assert "401" in operation["responses"]
        served = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert served.status_code == 200 and served.mimetype == "text/plain"
    finally:
        app.extensions["patter_dash"].stop()
