"""Alerts on a real gunicorn + gevent server, delivered to real local webhook receivers.

Every rule kind fires and resolves on a real event stream; the webhook
receiver checks each request's HMAC signature; the live stream carries the
transitions; a receiver that hangs or answers 500 does not slow ingest; a
notification pending in the outbox when the server stops is delivered once
after the restart; a bad rules file is refused at start with its line.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests

from patter_dash.config import ConfigError
from patter_dash.model import views
from patter_dash.ops.alert_config import load_alerts
from tests.conftest import wait_for
from tests.ops.receiver import Receiver
from tests.sse import SSEClient

SECRET = "webhook-secret-ü"


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def write(tmp_path: Path, text: str, name: str = "alerts.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def webhook_rules(tmp_path: Path, hook: Receiver, rules: str, destination: str = "hook") -> str:
    """An alerts file: one webhook ``destination`` signed with :data:`SECRET` to ``hook``, then ``rules`` (TOML)."""
    return write(tmp_path, f"""
[[destinations]]
name = "{destination}"
type = "webhook"
url = "{hook.url}"
secret = "{SECRET}"
""" + rules)


def slow_turn_rule(threshold: int = 1000, cooldown: int = 0) -> str:
    """The rule most tests use: a turn slower than ``threshold`` ms fires, a faster one resolves."""
    return f"""
[[rules]]
name = "slow-turn"
kind = "turn_latency"
threshold = {threshold}
cooldown = {cooldown}
"""


def alerts(server: Any) -> dict[str, Any]:
    response = server.get("/api/v1/alerts")
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=views.AlertsAnswer).data  # the documented shape, exactly


def rule(state: views.AlertsState, name: str) -> views.AlertRule:
    return next(r for r in state.rules if r.name == name)


def start(call_id: str, callee: str) -> dict[str, Any]:
    return {"type": "call_start", "data": {"call_id": call_id, "caller": "+15550000001", "callee": callee, "direction": "inbound"}}


def turn(call_id: str, index: int, ms: float) -> dict[str, Any]:
    return {"type": "turn", "data": {"call_id": call_id, "turn": {"turn_index": index, "user_text": "hi", "agent_text": "hello",
                                                                  "latency": {"agent_response_ms": ms, "total_ms": ms * 2}}}}


def end(call_id: str, status: str = "completed", cost: float = 0.0) -> dict[str, Any]:
    return {"type": "call_end", "data": {"call_id": call_id, "ended_at": time.time(), "status": status,
                                         "metrics": {"duration_seconds": 10, "cost": {"total": cost}}}}


RULES = """
[settings]
cooldown = 0

[[destinations]]
name = "hook"
type = "webhook"
url = "{hook}"
secret = "{secret}"
timeout = 2

[[destinations]]
name = "chat"
type = "slack"
url = "{slack}"

[[rules]]
name = "slow-turn"
kind = "turn_latency"
threshold = 1000
scope = {{ callee = "+1001" }}

[[rules]]
name = "stuck"
kind = "stuck_call"
threshold = 2
scope = {{ callee = "+1002" }}

[[rules]]
name = "p95"
kind = "p95_latency"
threshold = 1500
window = 3
scope = {{ callee = "+1003" }}

[[rules]]
name = "failures"
kind = "failure_rate"
threshold = 50
window = 3
min_calls = 2
scope = {{ callee = "+1004" }}

[[rules]]
name = "per-call"
kind = "cost_per_call"
threshold = 0.10
window = 3
scope = {{ callee = "+1005" }}

[[rules]]
name = "per-hour"
kind = "cost_per_hour"
threshold = 100
window = 3
scope = {{ callee = "+1006" }}

[[rules]]
name = "silence"
kind = "no_calls"
threshold = 2
cooldown = 60
destinations = ["hook"]
scope = {{ callee = "+1007" }}
"""


def test_every_rule_kind_fires_and_resolves_signed_on_the_stream(live_server, receivers, tmp_path) -> None:
    hook = receivers(secret=SECRET)
    slack = receivers()
    path = write(tmp_path, RULES.format(hook=hook.url, secret=SECRET, slack=slack.url))
    server = live_server(PATTER_DASH_ALERTS=path, PATTER_DASH_HEARTBEAT="1")
    stream = SSEClient(f"{server.url}/api/v1/events?types=alert_firing,alert_resolved", timeout=30)
    assert stream.status == 200
    stream.next_block()  # retry:

    def notified(name: str, state: str, call_id: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        found = hook.wait_for(lambda n: n["rule"] == name and n["state"] == state and (call_id is None or n["call_id"] == call_id),
                              timeout)
        return found[0]

    # turn_latency: fired during the call, naming it; a fast turn resolves it
    server.post_events([start("slow-1", "+1001"), turn("slow-1", 0, 2400)])
    fired = notified("slow-turn", "firing", "slow-1")
    assert fired["value"] == 2400 and fired["unit"] == "ms" and "slow-1" in fired["message"]
    assert rule(alerts(server), "slow-turn").state == "firing"
    server.post_events([turn("slow-1", 1, 300)])
    notified("slow-turn", "resolved", "slow-1")
    # stuck_call: no event for 2 s fires, naming the call; an event resolves it
    server.post_events([start("stuck-1", "+1002")])
    assert notified("stuck", "firing", "stuck-1")["value"] >= 2
    assert rule(alerts(server), "stuck").firing[0].call_id == "stuck-1"
    server.post_events([turn("stuck-1", 0, 100)])
    notified("stuck", "resolved", "stuck-1")
    server.post_events([end("stuck-1"), end("slow-1")])
    # p95_latency over a 3 s window
    server.post_events([start("p95-1", "+1003"), *[turn("p95-1", i, 2000 + i) for i in range(10)], end("p95-1")])
    fired = notified("p95", "firing")
    assert fired["value"] == pytest.approx(2009, rel=0.02)
    notified("p95", "resolved")  # the window empties
    # failure_rate: 2 of 2 calls failed; min_calls = 2
    server.post_events([start("f-1", "+1004"), end("f-1", "failed")])
    time.sleep(1.5)
    assert rule(alerts(server), "failures").state != "firing"  # one call is not enough
    server.post_events([start("f-2", "+1004"), end("f-2", "no-answer")])
    assert notified("failures", "firing")["value"] == 100.0
    notified("failures", "resolved")
    # cost per call and per hour
    server.post_events([start("c-1", "+1005"), end("c-1", cost=0.5), start("c-2", "+1006"), end("c-2", cost=0.5)])
    assert notified("per-call", "firing")["value"] == pytest.approx(0.5)
    assert notified("per-hour", "firing")["value"] == pytest.approx(600.0)  # $0.50 in 3 s is $600 an hour
    notified("per-call", "resolved")
    notified("per-hour", "resolved")
    # no_calls: nothing with callee +1007 for 2 s (since the start); a call resolves it
    assert notified("silence", "firing")["value"] >= 2
    server.post_events([start("quiet-1", "+1007")])
    notified("silence", "resolved")

    assert hook.bad_signatures == 0
    assert all(r["headers"]["X-Patter-Dash-Signature"].startswith("sha256=") for r in hook.requests)
    # Slack got the same transitions as text (it was not given "silence")
    texts = [n["text"] for n in slack.wait_for(lambda n: "per-hour" in n["text"] and "RESOLVED" in n["text"])]
    assert texts and all("blocks" in n for n in slack.accepted)
    assert not any("silence" in n["text"] for n in slack.accepted)
    # The live stream carried every transition, in order, with the webhook's body
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < len(hook.accepted) and time.monotonic() < deadline:
        event = stream.next_event(timeout=5)
        if event is not None:
            frames.append(event)
    stream.close()
    assert [f["data"]["id"] for f in frames] == [n["id"] for n in hook.accepted]
    for frame in frames:
        msgspec.convert(frame["data"], views.AlertFrame)
        assert frame["event"] == frame["data"]["type"]
    state = alerts(server)
    assert state.enabled and state.firing == 0, state
    assert rule(state, "silence").state == "resolved"  # and within its cooldown
    assert {r.name: r.notified for r in state.rules} == {
        "slow-turn": 2, "stuck": 2, "p95": 2, "failures": 2, "per-call": 2, "per-hour": 2, "silence": 2}
    hook_view = next(d for d in state.destinations if d.name == "hook")
    assert hook_view.delivered == 14 and hook_view.pending == 0
    assert rule(state, "p95").history[0].state == "resolved"  # newest first


def test_cooldown_holds_back_a_flapping_rule(live_server, receivers, tmp_path) -> None:
    hook = receivers(secret=SECRET)
    path = webhook_rules(tmp_path, hook, slow_turn_rule(cooldown=600))
    server = live_server(PATTER_DASH_ALERTS=path)
    server.post_events([start("flap", "+1"), turn("flap", 0, 2000), turn("flap", 1, 100), turn("flap", 2, 2000), turn("flap", 3, 2000)])
    hook.wait_for(lambda n: n["state"] == "resolved")
    time.sleep(1.0)
    assert [n["state"] for n in hook.accepted] == ["firing", "resolved"]
    flapping = rule(alerts(server), "slow-turn")
    assert flapping.state == "resolved" and flapping.suppressed == 2


def _flood(server: Any, calls: int, offset: int = 0) -> float:
    """Seconds to ingest ``calls`` calls whose every turn fires (200 events a body)."""
    events = []
    for i in range(offset, offset + calls):
        events += [start(f"load-{i}", "+1"), turn(f"load-{i}", 0, 5000), end(f"load-{i}")]
    began = time.monotonic()
    for at in range(0, len(events), 200):
        server.post_events(events[at : at + 200])
    return time.monotonic() - began


def test_dead_receivers_do_not_slow_ingest(live_server, receivers, tmp_path) -> None:
    hanging = receivers(secret=SECRET, mode="hang", hang=20)
    failing = receivers(secret=SECRET, mode="fail")
    path = write(tmp_path, f"""
[[destinations]]
name = "hang"
type = "webhook"
url = "{hanging.url}"
secret = "{SECRET}"
timeout = 10
queue = 50

[[destinations]]
name = "fail"
type = "slack"
url = "{failing.url}"
queue = 50

[[rules]]
name = "every-turn"
kind = "turn_latency"
threshold = 1
""")
    server = live_server(PATTER_DASH_ALERTS=path, PATTER_DASH_DB=":memory:")
    _flood(server, 50, offset=10_000)  # warm up: both receivers now stalled or failing
    seconds = _flood(server, 1000)
    # 3,000 events, 2,000 notifications into dead endpoints: ingest stays at its usual pace
    assert seconds < 6.0, f"ingest took {seconds:.1f} s"
    assert server.get("/api/v1/health").elapsed.total_seconds() < 0.5
    state = alerts(server)
    hang, fail = (next(d for d in state.destinations if d.name == n) for n in ("hang", "fail"))
    assert hang.pending <= 50 and fail.pending <= 50  # bounded
    assert hang.dropped >= 1000 and fail.dropped >= 1000
    assert fail.failed_attempts >= 1 and fail.last_error == "HTTP 500"
    assert rule(state, "every-turn").notified == 2100
    assert "queue full" in server.logs()


def test_a_receiver_answering_a_byte_at_a_time_fails_each_attempt_at_its_timeout(live_server, receivers, tmp_path) -> None:
    """The timeout is the whole attempt's. It bounded each read only: a receiver dripping its answer held
    the courier for ever, counted nothing, and every later notification was dropped (found by a sweep)."""
    drip = receivers(secret=SECRET, mode="drip", hang=30)
    path = webhook_rules(tmp_path, drip, "timeout = 1\nmax_attempts = 3\n" + slow_turn_rule(), destination="drip")
    server = live_server(PATTER_DASH_ALERTS=path, PATTER_DASH_DB=":memory:")
    server.post_events([start("d-1", "+1"), turn("d-1", 0, 3000)])
    began = time.monotonic()
    wait_for(lambda: next(d for d in alerts(server).destinations if d.name == "drip").failed_attempts >= 2,
             timeout=15, interval=0.2)
    view = next(d for d in alerts(server).destinations if d.name == "drip")
    assert "AttemptTooLong: no complete answer within 1 s" == view.last_error
    assert time.monotonic() - began < 10  # two attempts of 1 s plus the backoff between them (1 s)


def test_pending_outbox_is_delivered_once_after_a_restart(live_server, receivers, tmp_path) -> None:
    hook = receivers(secret=SECRET, mode="fail")
    path = write(tmp_path, f"""
[[destinations]]
name = "hook"
type = "webhook"
url = "{hook.url}"
secret = "{SECRET}"
max_attempts = 100

[[rules]]
name = "slow-turn"
kind = "turn_latency"
threshold = 1000
""")
    server = live_server(PATTER_DASH_ALERTS=path)  # history in <data>/history.db: the outbox is kept there
    server.post_events([start("r-1", "+1"), turn("r-1", 0, 3000)])
    deadline = time.monotonic() + 10
    while not hook.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hook.requests, "no delivery attempt"
    fired = msgspec.json.decode(hook.requests[0]["body"])
    server.stop()
    hook.mode = "ok"
    server.start()
    delivered = hook.wait_for(lambda n: n["id"] == fired["id"])
    time.sleep(2.0)  # nothing more comes
    assert [n["id"] for n in hook.accepted] == [fired["id"]] and len(delivered) == 1
    assert hook.bad_signatures == 0
    hook_view = alerts(server).destinations[0]
    assert hook_view.delivered == 1 and hook_view.pending == 0


def test_what_fires_and_each_rules_history_survive_a_restart(live_server, receivers, tmp_path) -> None:
    """With a history file, a restart neither forgets a firing rule nor sends it again; it resolves it, once."""
    hook = receivers(secret=SECRET)
    path = webhook_rules(tmp_path, hook, slow_turn_rule() + """
[[rules]]
name = "p95"
kind = "p95_latency"
threshold = 1500
window = 30
cooldown = 0
""")
    server = live_server(PATTER_DASH_ALERTS=path)
    server.post_events([start("r-1", "+1"), turn("r-1", 0, 3000)])
    fired = hook.wait_for(lambda n: n["rule"] == "slow-turn" and n["state"] == "firing")[0]
    hook.wait_for(lambda n: n["rule"] == "p95" and n["state"] == "firing")
    before = alerts(server)
    server.stop()
    server.start()
    after = alerts(server)
    for name in ("slow-turn", "p95"):
        kept, back = rule(before, name), rule(after, name)
        assert back.state == "firing" and back.notified == 1
        assert (back.firing, back.history) == (kept.firing, kept.history)
    # p95's window is empty after the restart, but it has not watched one whole window yet: still firing.
    server.post_events([turn("r-1", 1, 2500)])  # still slow: the same firing, not a new one
    server.post_events([turn("r-1", 2, 100)])
    resolved = hook.wait_for(lambda n: n["rule"] == "slow-turn" and n["state"] == "resolved")[0]
    assert resolved["since"] == fired["since"]
    time.sleep(1.0)
    assert [(n["rule"], n["state"]) for n in hook.accepted] == [("slow-turn", "firing"), ("p95", "firing"),
                                                                ("slow-turn", "resolved")]
    assert rule(alerts(server), "p95").state == "firing"


def test_no_alerts_file_answers_disabled(live_server) -> None:
    server = live_server()
    state = alerts(server)
    assert not state.enabled and state.rules == []


@pytest.mark.parametrize(("text", "line", "problem"), [
    ('[[rules]]\nname = "a"\nkind = "turn_latency"\nthreshold = "fast"\n', 4, "rules[0].threshold: must be a number"),
    ('[[destinations]]\nname = "x"\ntype = "webhook"\nurl = "ftp://x"\nsecret = "s"\n', 4, "must be an http:// or https:// URL"),
    ('[[destinations]]\nname = "x"\ntype = "webhook"\nurl = "http://x"\n', 1, "secret is required"),
    ('\n[[rules]]\nname = "a"\nkind = "p99"\nthreshold = 1\n', 4, "must be one of turn_latency"),
    ('[[rules]]\nname = "a"\nkind = "no_calls"\nthreshold = 60\n\n[[rules]]\nname = "b"\nkind = "turn_latency"\n'
     'threshold = 1\ndestinations = ["pager"]\n', 10, "names no destination 'pager'"),
    ('[[rules]]\nname = "a"\nkind = "stuck_call"\nthreshold = 60\nwindow = 5\n', 5, "a stuck_call rule has no window"),
    ('[[rules]]\nname = "a"\nkind = "turn_latency"\nthreshold = 1\nscope = { caller = "+1" }\n', 5, "unknown scope field 'caller'"),
    ('[[rules]]\nname = "a"\nkind = "turn_latency"\nthreshold = 1\nthresold = 2\n', 5, "unknown field"),
    ('[[rules]\nname = "a"\n', 1, "not valid TOML"),
    # Found by a hostile sweep: each was a bare traceback (OverflowError, ValueError) or a URL never deliverable.
    ('[[rules]]\nname = "a"\nkind = "turn_latency"\nthreshold = 1' + "0" * 400 + '\n', 4,
     "rules[0].threshold: must be >= 0 and <= 9.0072e+15 (got a number of more than 16 digits)"),
    ('[[rules]]\nname = "a"\nkind = "failure_rate"\nthreshold = 1\nwindow = 3' + "0" * 30 + '\n', 5, "rules[0].window: must be > 0"),
    ('[settings]\ncooldown = 9' + "9" * 40 + '\n', 2, "settings.cooldown: must be >= 0 and <="),
    *[('[[destinations]]\nname = "x"\ntype = "webhook"\nurl = "' + url + '"\nsecret = "s"\n', 4, problem) for url, problem in (
        ("http://[::1/", "is not a URL"), ("http://127.0.0.1:99999/", "is not a URL"), ("http://h:abc/", "is not a URL"),
        ("http://h:0/", "a port from 1 to 65535"), ("http://a b/", "without spaces or control characters"),
        ("http://h/\\r\\nX: y", "without spaces or control characters"), ("http://h/" + "a" * 3000, "at most 2048 characters"))],
    ('[[destinations]]\nname = "h"\ntype = "webhook"\nurl = "http://h/"\nsecret = "s"\n\n[[rules]]\nname = "a"\n'
     'kind = "turn_latency"\nthreshold = 1\ndestinations = ["h", "h"]\n', 11, "names destination 'h' twice"),
])
def test_a_bad_file_is_refused_with_its_line(tmp_path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_alerts(path)
    message = str(refused.value)
    assert problem in message
    assert f"{path}:{line}:" in message or f"line {line}" in message, message


def test_a_bad_file_stops_the_server(live_server, tmp_path) -> None:
    path = write(tmp_path, '[[rules]]\nname = "a"\nkind = "failure_rate"\nthreshold = -5\n')
    with pytest.raises(RuntimeError) as refused:
        live_server(PATTER_DASH_ALERTS=path)
    assert f"{path}:4: rules[0].threshold: must be >= 0 (got -5)" in str(refused.value)
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(RuntimeError) as refused:
        live_server(PATTER_DASH_ALERTS=missing)
    assert f"cannot read {missing}" in str(refused.value)


def test_the_route_needs_the_token(live_server, tmp_path, receivers) -> None:
    hook = receivers(secret=SECRET)
    path = write(tmp_path, f'[[destinations]]\nname = "h"\ntype = "webhook"\nurl = "{hook.url}"\nsecret = "{SECRET}"\n')
    server = live_server(PATTER_DASH_ALERTS=path, PATTER_DASH_TOKEN="tok")
    assert requests.get(f"{server.url}/api/v1/alerts", timeout=5).status_code == 401
    body = server.get("/api/v1/alerts").text
    assert hook.url not in body and SECRET not in body  # URLs and secrets are never shown


def test_slack_body_escapes_caller_text_and_the_signature_is_over_timestamp_and_body() -> None:
    from patter_dash.ops.outbox import sign, slack_body

    body = slack_body({"state": "firing", "message": "[FIRING] r: call <!channel> & <https://evil|click>: ..."})
    assert body["text"] == ":red_circle: [FIRING] r: call &lt;!channel&gt; &amp; &lt;https://evil|click&gt;: ..."
    assert body["blocks"][0]["text"]["text"] == body["text"]
    expected = hmac.new(b"k", b"1700000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", b'{"a":1}') == f"sha256={expected}"
