"""Embedding, settings and the standalone entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from flask import Flask

from patter_dash import PatterDashboard, create_app
from patter_dash.config import ConfigError, load_settings
from patter_dash.run.client import DashboardClient
from tests.conftest import ROOT, free_port, payload, wait_for


def test_three_line_embedding_under_a_prefix_with_a_token():
    host = Flask("host")

    @host.get("/")
    def home():
        return "host home"

    dash = PatterDashboard(host, token="s3cret", url_prefix="/ops/voice")
    client = host.test_client()
    assert client.get("/").data == b"host home"
    assert client.get("/ops/voice/api/v1/calls").status_code == 401
    ok = client.get("/ops/voice/api/v1/calls", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json["data"] == []
    assert client.get("/ops/voice/dashboard", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert dash.feed("call_start", payload("call_start.json"))
    wait_for(lambda: dash.store.get("CA941522e75e5447c05b6ca6d201f13845"))
    dash.stop()


def test_init_app_and_settings_precedence(monkeypatch):
    monkeypatch.setenv("PATTER_DASH_MAX_CALLS", "123")
    monkeypatch.setenv("PATTER_DASH_HEARTBEAT", "7.5")
    app = Flask("host")
    app.config["PATTER_DASH_MAX_CALLS"] = 456  # app.config wins over the environment
    dash = PatterDashboard()
    dash.init_app(app)
    assert dash.settings.MAX_CALLS == 456 and dash.settings.HEARTBEAT == 7.5
    assert PatterDashboard(Flask("other"), max_calls=9).settings.MAX_CALLS == 9  # keyword wins


@pytest.mark.parametrize(
    "key, value",
    [("PATTER_DASH_MAX_CALLS", "lots"), ("PATTER_DASH_MAX_CALLS", "0"), ("PATTER_DASH_HEARTBEAT", "-1"),
     ("PATTER_DASH_UI", "maybe"), ("PATTER_DASH_URL_PREFIX", "ops"), ("PATTER_DASH_TOKEN", "has space"),
     ("PATTER_DASH_DB_SYNC", "sometimes"), ("PATTER_DASH_RETENTION_DAYS", "-1"), ("PATTER_DASH_CALL_TIMEOUT", "forever"),
     ("PATTER_DASH_DB", "bad\x00path")],
)
def test_bad_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        load_settings({}, environ={key: value})
    with pytest.raises(ConfigError, match=key):
        create_app({key: value})


def test_an_embedding_app_keeps_history_in_memory_unless_it_names_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATTER_DASH_DB", raising=False)
    embedded = Flask("host")
    dash = PatterDashboard(embedded)
    try:
        assert embedded.test_client().get("/api/v1/health").get_json()["history"]["mode"] == "memory"
    finally:
        dash.stop()
    assert not list(tmp_path.iterdir()), "an embedded dashboard wrote files into its host's directory"
    named = Flask("host")
    dash = PatterDashboard(named, db=str(tmp_path / "calls.db"))
    try:
        history = named.test_client().get("/api/v1/health").get_json()["history"]
        assert history["mode"] == "sqlite" and history["path"] == str(tmp_path / "calls.db") and history["status"] == "ok"
    finally:
        dash.stop()


def test_an_unknown_option_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="tokn="):
        PatterDashboard(tokn="s3cret")
    with pytest.raises(ConfigError, match="max_call="):
        create_app(max_call=5)


def test_one_extension_object_keeps_no_app_and_serves_the_app_it_was_given():
    first, second = Flask("first"), Flask("second")
    dash = PatterDashboard()
    dash.init_app(first)
    assert not hasattr(dash, "app")
    assert first.extensions["patter_dash"] is dash and "patter_dash" not in second.extensions
    assert first.test_client().get("/api/v1/health").status_code == 200
    assert second.test_client().get("/api/v1/health").status_code == 404
    dash.stop()


def test_ui_off_serves_api_and_ingest_only():
    client = create_app({"PATTER_DASH_UI": False}).test_client()
    assert client.get("/dashboard").status_code == 404
    assert client.get("/api/v1/calls").status_code == 200
    r = client.post("/api/dashboard/ingest", json=payload("sdk_notify_call_start.json"))
    assert r.status_code == 202


def test_console_script_serve_with_demo_feeds_live_calls(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "patter_dash.run.cli", "serve", "--port", str(port), "--demo"],
        # Its own data directory: the checkout's (and its history file, held by one server) is a developer's.
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PATTER_DASH_DATA_DIR": str(tmp_path)},
    )
    try:
        def seen_calls():
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).json()
            except requests.RequestException:
                return None
            return health["events"]["accepted"] > 0 and health
        health = wait_for(seen_calls, timeout=30, interval=0.2)
        assert health["store"]["active"] + health["store"]["completed"] >= 1
        assert requests.get(f"http://127.0.0.1:{port}/dashboard", timeout=5).status_code == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert "Using worker: gevent" in out


def test_remote_client_over_websocket_and_http_against_gunicorn(live_server):
    server = live_server(PATTER_DASH_TOKEN="client-token")
    for transport in ("ws", "http"):
        client = DashboardClient(server.url, token="client-token", transport=transport)
        call_id = f"REMOTE-{transport}"
        client.feed("call_start", {**payload("call_start.json"), "call_id": call_id})
        client.feed("transcript", {**payload("transcript_user.json"), "call_id": call_id})
        client.feed("call_end", {**payload("call_end.json"), "call_id": call_id})
        assert client.close(timeout=10)
        assert client.sent == 3 and client.dropped == 0 and client.rejected == 0
        call = server.get(f"/api/v1/calls/{call_id}").json()["data"]
        assert call["status"] == "completed" and call["turn_count"] == 4 and call["caller"] == "+15553891776"
