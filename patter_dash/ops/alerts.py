"""Alerts: rules over the event stream, their states, and the notifications they send.

Rules come from :mod:`.alert_config`. Each rule, or each (rule, call) for the
rules about one live call, goes ``ok → firing → resolved``; a resolved rule
that would fire again within its ``cooldown`` stays resolved (counted as
suppressed) until the cooldown has passed, so a flapping metric sends at
most one firing per cooldown. Every transition is published on the live
stream (``alert_firing`` / ``alert_resolved``), kept in the rule's history
and handed to the destinations' couriers (:mod:`.outbox`).

Where the work happens, all on the event thread, never on a request:

* per applied event (``Pipeline.on_event``): O(rules) checks, O(1) each
  (a turn's latency against ``turn_latency`` rules and into ``p95_latency``
  windows; any event resolves its call's ``stuck_call``; a start feeds
  ``no_calls``);
* per completed / ended call (the store's watcher): O(rules) (status into
  ``failure_rate`` windows, cost into the cost windows, the call's live
  alerts resolved);
* once a second (``Pipeline.on_tick``): each windowed rule is evaluated from
  running sums (O(1), P95 from a log-bucket histogram: O(buckets), within
  1 %) and stuck calls are found from the store's least-recently-touched end.

Transitions found under the store's lock are queued and published after the
event that caused them (the hub has one writer and the event's own frame
comes first). Delivery is the couriers' business, on their own workers.

With a journal, the rules' state (firing instances, each rule's history and
count) is kept in its info table, written with the transitions, and read
back at start: a restart neither forgets what fires nor sends it again.

Several processes on one PostgreSQL: every process feeds the windows and
computes the values, but only the one running the jobs decides transitions
and delivers them. Each transition is an event of the shared log: every
process mirrors it into its own state and publishes its frame under the
log's number, so every page shows the same alerts, and the process that
takes the jobs over goes on from the same firing state with full windows.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import itertools
import secrets
from collections import deque
from typing import Any

from ..core.aggregates import NANO
from ..core.cooperative import offload
from ..core.pipeline import Pipeline
from ..model.events import Event
from ..model.records import FAILED_STATUSES, Call
from .alert_config import AlertConfig, Rule
from .outbox import Courier

log = logging.getLogger("patter_dash")

ALERT_FIRING = "alert_firing"
ALERT_RESOLVED = "alert_resolved"
#: Entries one window holds at most (past it the oldest leave early: the window is then shorter).
WINDOW_CAP = 200_000
#: Firing calls listed per rule in GET /api/v1/alerts (the count is exact).
FIRING_SHOWN = 100
#: Stuck calls looked at per rule and tick (oldest first).
STUCK_SCAN = 1_000
_STEP = math.log(1.01)  # latency histogram bucket width: 1 %
#: The journal's info rows that keep the rules' state (see :meth:`Pipeline.remember`): each rule's
#: history and count, each firing instance, and the deciding process's own counts and deliveries.
INFO = "alert:"
_HISTORY_ROW = "alert:h:"
_FIRING_ROW = "alert:f:"
_STATUS_ROW = "alert:status"
#: Seconds a process not deciding reuses the deciding one's counts it read (GET /api/v1/alerts).
STATUS_READ_EVERY = 1.0
#: Notification ids remembered, so that one read back from the shared log is not counted twice.
SEEN_NOTIFICATIONS = 10_000
_PROVIDERS = ("stt_provider", "llm_provider", "tts_provider", "telephony_provider")
_MODELS = ("stt_model", "llm_model", "tts_model")


def turn_response_ms(event: Event) -> float | None:
    """What the caller waited for this turn: agent_response_ms, else total_ms (Patter's rule)."""
    turn = event.data.get("turn")
    latency = turn.get("latency") if isinstance(turn, dict) else None
    if not isinstance(latency, dict):
        return None
    for key in ("agent_response_ms", "total_ms"):
        value = latency.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value):
            return float(value)
    return None


def in_scope(rule: Rule, call: Call) -> bool:
    scope = rule.scope
    if not scope:
        return True
    if "callee" in scope and call.callee != scope["callee"]:
        return False
    if "direction" in scope and (call.direction or "").lower() != scope["direction"].lower():
        return False
    if "provider" in scope:
        wanted = scope["provider"].lower()
        if not any(str(call.meta_value(k) or "").lower() == wanted for k in _PROVIDERS):
            return False
    if "model" in scope:
        wanted = scope["model"].lower()
        if not any(str(call.meta_value(k) or "").lower() == wanted for k in _MODELS):
            return False
    return True


class Window:
    """Values over the last ``span`` seconds with running sums: ``n``, ``total`` and a log-bucket histogram."""

    __slots__ = ("buckets", "items", "n", "span", "total")

    def __init__(self, span: float) -> None:
        self.span = span
        self.items: deque[tuple[float, float]] = deque()
        self.n = 0
        self.total = 0.0
        self.buckets: dict[int, int] | None = None

    def add(self, at: float, value: float) -> None:
        self.items.append((at, value))
        self.n += 1
        self.total += value
        if self.buckets is not None:
            b = self._bucket(value)
            self.buckets[b] = self.buckets.get(b, 0) + 1
        if len(self.items) > WINDOW_CAP:
            self._drop()

    def expire(self, now: float) -> None:
        cutoff = now - self.span
        while self.items and self.items[0][0] < cutoff:
            self._drop()

    def _drop(self) -> None:
        _, value = self.items.popleft()
        self.n -= 1
        self.total -= value
        if self.n == 0:
            self.total = 0.0  # no float residue
        if self.buckets is not None:
            b = self._bucket(value)
            left = self.buckets[b] - 1
            if left:
                self.buckets[b] = left
            else:
                del self.buckets[b]

    @staticmethod
    def _bucket(value: float) -> int:
        return int(math.floor(math.log(value) / _STEP)) if value > 0 else -10_000

    def quantile(self, q: float) -> float | None:
        if not self.n or self.buckets is None:
            return None
        rank = math.ceil(q * self.n)
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return math.exp((b + 0.5) * _STEP)
        return None


class Instance:
    """One firing: a rule, or a rule on one call."""

    __slots__ = ("call_id", "since", "value")

    def __init__(self, call_id: str | None, since: float, value: float | None) -> None:
        self.call_id = call_id
        self.since = since
        self.value = value


class RuleState:
    def __init__(self, rule: Rule, history: int) -> None:
        self.rule = rule
        self.window: Window | None = Window(rule.window) if rule.windowed else None
        if rule.kind == "p95_latency" and self.window is not None:
            self.window.buckets = {}
        #: Firing now, by call id (None: the rule as a whole).
        self.firing: dict[str | None, Instance] = {}
        #: When each key last resolved (cooldown); per-call keys leave when their call completes.
        self.resolved_at: dict[str | None, float] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.value: float | None = None
        self.notified = 0
        self.suppressed = 0
        self.last_start = time.time()  # no_calls: counted from when this process started watching
        #: Since when this process has fed the window: before a whole one, "no data" proves nothing.
        self.watched_from = self.last_start


class Alerts:
    """The rules of one dashboard, wired into its pipeline."""

    def __init__(self, pipeline: Pipeline, config: AlertConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.states = [RuleState(rule, config.history) for rule in config.rules]
        self._by_name = {state.rule.name: state for state in self.states}
        self._by_kind: dict[str, list[RuleState]] = {}
        for state in self.states:
            self._by_kind.setdefault(state.rule.kind, []).append(state)
        self.table = pipeline.journal.outbox() if pipeline.journal is not None else None
        self._adopted = False  # whether the couriers took over the table's pending notifications
        self.couriers = {d.name: Courier(d, self.table) for d in config.destinations}
        self._pending: list[tuple[RuleState, str, dict[str, Any]]] = []
        # Notification ids: random per process, then a counter (unique across restarts, cheaper than uuid4).
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self.failures = 0
        self.evaluated_at: float | None = None
        self.lock = threading.Lock()
        self._seen: dict[str, None] = {}  # notification ids counted here (insertion-ordered: the oldest go first)
        self._status_written: Any = None
        self._stored: tuple[float, dict[str, Any]] = (-STATUS_READ_EVERY, {})
        pipeline.watchers.append(self.watch)
        pipeline.on_event.append(self.on_event)
        pipeline.on_tick.append(self.tick)
        pipeline.on_start.append(self.started)
        pipeline.on_announced.append(self.announced)
        pipeline.on_restore.append((INFO, self.load))

    def started(self) -> None:
        self.lock = threading.Lock()  # greenlet-aware once gevent patched threading (--preload)
        self._id_prefix = secrets.token_hex(8)  # a worker forked again from a preloaded master counts anew
        now = time.time()
        for state in self.states:
            state.last_start = state.watched_from = now
        # With several processes, only the one deciding sends; it takes over what is pending when it starts to.
        self._adopted = not self.pipeline.shared
        for courier in self.couriers.values():
            courier.start(adopt=self._adopted)

    def stop(self) -> None:
        for courier in self.couriers.values():
            courier.stop()

    def _adopt_when_deciding(self) -> None:
        """Once a second: a process that now decides sends what the one before it left pending."""
        decides = self.decides
        if decides and not self._adopted:
            for courier in self.couriers.values():
                courier.adopt()
        self._adopted = decides

    def _kind(self, kind: str) -> list[RuleState]:
        return self._by_kind.get(kind, [])

    # ------------------------------------------------------------ hooks

    def on_event(self, event: Event, call: Call) -> None:
        """Per applied event (event thread, after its frame is published): O(rules)."""
        try:
            now = time.time()
            with self.lock:
                if call.active:
                    if event.type == "turn":
                        ms = turn_response_ms(event)
                        if ms is not None:
                            self._turn(call, ms, now)
                    for state in self._kind("stuck_call"):
                        if call.call_id in state.firing:
                            self._resolve(state, call.call_id, now, None, "an event arrived")
                if event.type in ("call_start", "call_initiated"):
                    for state in self._kind("no_calls"):
                        if in_scope(state.rule, call):
                            state.last_start = now
                            if None in state.firing:
                                self._resolve(state, None, now, 0.0, "a call started")
            self._flush()
        except Exception:
            self._failed()

    def _turn(self, call: Call, ms: float, now: float) -> None:
        for state in self._kind("turn_latency"):
            if not in_scope(state.rule, call):
                continue
            if ms > state.rule.threshold:
                self._fire(state, call.call_id, now, ms)
            elif call.call_id in state.firing:
                self._resolve(state, call.call_id, now, ms, "a turn answered within the threshold")
        for state in self._kind("p95_latency"):
            if in_scope(state.rule, call):
                assert state.window is not None
                state.window.add(now, ms)

    def watch(self, call: Call, completed: bool, ended: bool) -> None:
        """The store's watcher (under its lock): a call completed and/or its call_end was applied."""
        try:
            now = time.time()
            with self.lock:
                if completed:
                    for kind in ("turn_latency", "stuck_call"):
                        for state in self._kind(kind):
                            if call.call_id in state.firing:
                                self._resolve(state, call.call_id, now, None, f"the call ended ({call.status})")
                            state.resolved_at.pop(call.call_id, None)
                    for state in self._kind("failure_rate"):
                        if in_scope(state.rule, call):
                            assert state.window is not None
                            state.window.add(now, 1.0 if call.status in FAILED_STATUSES else 0.0)
                if ended:
                    cost = call.cost_value("total")
                    for kind in ("cost_per_call", "cost_per_hour", "cost_per_day"):
                        for state in self._kind(kind):
                            if in_scope(state.rule, call):
                                assert state.window is not None
                                state.window.add(now, round(cost * NANO) / NANO)
        except Exception:
            self._failed()

    def tick(self, now: float) -> None:
        """Once a second on the event thread: windowed rules, silence, stuck calls."""
        try:
            with self.lock:
                for state in self.states:
                    rule = state.rule
                    if rule.windowed:
                        self._evaluate(state, now)
                    elif rule.kind == "no_calls":
                        silent = now - state.last_start
                        state.value = silent
                        if silent > rule.threshold:
                            self._fire(state, None, now, silent)
                    elif rule.kind == "stuck_call":
                        self._stuck(state, now)
                self.evaluated_at = now
            self._flush()
            self._write_status()
            self._adopt_when_deciding()
        except Exception:
            self._failed()

    def _evaluate(self, state: RuleState, now: float) -> None:
        rule, window = state.rule, state.window
        assert window is not None
        window.expire(now)
        value: float | None
        enough = window.n >= rule.min_calls
        if rule.kind == "p95_latency":
            value = window.quantile(0.95)
        elif rule.kind == "failure_rate":
            value = 100.0 * window.total / window.n if window.n else None
        elif rule.kind == "cost_per_call":
            value = window.total / window.n if window.n else None
        else:  # cost_per_hour / cost_per_day: the window's spend at that rate
            value = window.total * (3600.0 if rule.kind == "cost_per_hour" else 86_400.0) / rule.window
            enough = True
        state.value = value
        if value is not None and enough and value > rule.threshold:
            self._fire(state, None, now, value)
        elif None in state.firing:
            if (value is None or not enough) and now - state.watched_from < rule.window:
                return  # firing when this process started: it has not watched a whole window yet
            self._resolve(state, None, now, value, "back within the threshold" if value is not None else "no data in the window")

    def _stuck(self, state: RuleState, now: float) -> None:
        cutoff = now - state.rule.threshold
        for n, call in enumerate(self.pipeline.store.least_recent()):
            if call.last_event_at >= cutoff or n >= STUCK_SCAN:
                return
            if call.call_id not in state.firing and in_scope(state.rule, call):
                self._fire(state, call.call_id, now, now - call.last_event_at)

    # ------------------------------------------------------- transitions

    @property
    def decides(self) -> bool:
        """Whether this process decides transitions (the one running the jobs; always, without a shared journal)."""
        return self.pipeline.runs_jobs

    def _fire(self, state: RuleState, key: str | None, now: float, value: float) -> None:
        if not self.decides:
            return
        held = state.firing.get(key)
        if held is not None:
            held.value = value
            return
        resolved = state.resolved_at.get(key)
        if resolved is not None and now - resolved < state.rule.cooldown:
            state.suppressed += 1
            return
        state.firing[key] = Instance(key, now, value)
        self._notify(state, "firing", key, now, value, "")

    def _resolve(self, state: RuleState, key: str | None, now: float, value: float | None, reason: str) -> None:
        if not self.decides:
            return
        held = state.firing.pop(key, None)
        if held is None:
            return
        state.resolved_at[key] = now
        self._notify(state, "resolved", key, now, value, reason, since=held.since)

    def _notify(self, state: RuleState, what: str, call_id: str | None, now: float, value: float | None,
                reason: str, since: float | None = None) -> None:
        rule = state.rule
        notification = {
            "id": f"{self._id_prefix}{next(self._ids):08x}",
            "type": ALERT_FIRING if what == "firing" else ALERT_RESOLVED,
            "state": what,
            "rule": rule.name,
            "kind": rule.kind,
            "threshold": rule.threshold,
            "unit": rule.unit,
            "window": rule.window if rule.windowed else None,
            "scope": dict(rule.scope),
            "value": None if value is None else round(value, 6),
            "call_id": call_id,
            "since": since if since is not None else now,
            "at": now,
            "message": _message(rule, what, call_id, value, reason),
        }
        self._pending.append((state, notification["type"], notification))

    def _flush(self) -> None:
        """Count, keep, publish and hand out what the hooks found (event thread, outside the store's lock).

        The journal's rows go with the next transaction, so on a shared log
        they are written no later than the transitions' own events.
        """
        if not self._pending:
            return
        with self.lock:
            pending, self._pending = self._pending, []
            for state, _, notification in pending:
                self._record(state, notification)
            rows = self._rows(pending) if self.pipeline.journal is not None else {}
        self.pipeline.remember(rows)
        for state, kind, notification in pending:
            self.pipeline.announce(kind, dict(notification), notification["call_id"] or "")
            for name in state.rule.destinations:
                courier = self.couriers.get(name)
                if courier is not None:
                    courier.post(notification["id"], notification)

    def _record(self, state: RuleState, notification: dict[str, Any]) -> bool:
        """Count a notification into its rule's history, once (False: counted already)."""
        if notification["id"] in self._seen:
            return False
        self._seen[notification["id"]] = None
        if len(self._seen) > SEEN_NOTIFICATIONS:
            del self._seen[next(iter(self._seen))]
        state.notified += 1
        state.history.appendleft(notification)
        return True

    @staticmethod
    def _rows(pending: list[tuple[RuleState, str, dict[str, Any]]]) -> dict[str, Any]:
        """The info rows these transitions change: their rules' histories and counts, their firing instances."""
        rows: dict[str, Any] = {}
        for state, _, notification in pending:
            rule = state.rule.name
            rows[_HISTORY_ROW + json.dumps(rule)] = {"notified": state.notified, "history": list(state.history)}
            firing = notification["state"] == "firing"
            rows[_FIRING_ROW + json.dumps([rule, notification["call_id"]])] = (
                [notification["since"], notification["value"]] if firing else None
            )
        return rows

    # ------------------------------------------------------ shared state

    def announced(self, kind: str, notification: dict[str, Any]) -> None:
        """A transition read from the shared log (any process's; this one's own is counted already): mirrored."""
        with self.lock:
            state = self._by_name.get(notification.get("rule"))  # type: ignore[arg-type]
            if state is None or not self._record(state, notification):
                return  # a rule this process's file does not have, or a transition counted here already
            self._mirror(state, notification)

    @staticmethod
    def _mirror(state: RuleState, notification: dict[str, Any]) -> None:
        key, since = notification["call_id"], notification["since"]
        if notification["state"] == "firing":
            held = state.firing.get(key)
            if held is None or held.since != since:
                state.firing[key] = Instance(key, since, notification["value"])
        else:
            held = state.firing.get(key)
            if held is not None and held.since == since:
                del state.firing[key]
            state.resolved_at[key] = notification["at"]

    def load(self, rows: dict[str, Any]) -> None:
        """The state kept in the journal, read at start (before the event thread runs): replaces this process's."""
        try:
            with self.lock:
                for state in self.states:
                    state.firing.clear()
                    state.history.clear()
                    state.notified = 0
                self._seen.clear()
                for name, value in rows.items():
                    self._load_row(name, value)
                for state in self.states:
                    for notification in reversed(state.history):
                        self._seen[notification["id"]] = None
        except Exception:  # a row of another release: the rules start from nothing rather than not at all
            log.exception("patter-dash: the stored alert state could not be read; the rules start anew")

    def _load_row(self, name: str, value: Any) -> None:
        if name.startswith(_HISTORY_ROW):
            state = self._by_name.get(json.loads(name[len(_HISTORY_ROW):]))
            if state is not None:
                state.notified = int(value["notified"])
                kept = [n for n in value["history"] if isinstance(n, dict) and "id" in n]
                state.history.extend(kept[: state.history.maxlen])  # newest first, as kept
        elif name.startswith(_FIRING_ROW):
            rule, call_id = json.loads(name[len(_FIRING_ROW):])
            state = self._by_name.get(rule)
            if state is not None:
                since, measured = value
                state.firing[call_id] = Instance(call_id, float(since), None if measured is None else float(measured))
        elif name == _STATUS_ROW:
            for rule, suppressed in value.get("suppressed", {}).items():
                if rule in self._by_name:
                    self._by_name[rule].suppressed = int(suppressed)

    def _status(self) -> dict[str, Any]:
        """What only the deciding process counts: the firings held back, and its deliveries."""
        return {"suppressed": {state.rule.name: state.suppressed for state in self.states},
                "destinations": [courier.view() for courier in self.couriers.values()]}

    def _write_status(self) -> None:
        """The deciding process's counts for the other processes' views, when they changed (about once a second)."""
        if self.pipeline.journal is None or not self.decides:
            return
        status = self._status()
        if status != self._status_written:
            self._status_written = status
            self.pipeline.remember({_STATUS_ROW: status})

    def _failed(self) -> None:
        self.failures += 1
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            log.exception("patter-dash: alert rules failed on an event (%d failures so far)", self.failures)

    # ------------------------------------------------------------ reading

    def view(self, now: float | None = None) -> dict[str, Any]:
        """GET /api/v1/alerts. Off the deciding process, its counts and deliveries come from the journal (blocking)."""
        now = time.time() if now is None else now
        status = self._status() if self.decides else self._stored_status()
        with self.lock:
            rules = [self._rule_view(state, now) for state in self.states]
        for rule in rules:
            rule["suppressed"] = status["suppressed"].get(rule["name"], 0)
        return {
            "enabled": True,
            "firing": sum(1 for r in rules if r["state"] == "firing"),
            "evaluated_at": self.evaluated_at,
            "decided_here": self.decides,
            "rules": rules,
            "destinations": status["destinations"],
        }

    def _stored_status(self) -> dict[str, Any]:
        """The deciding process's counts as it last wrote them (read at most once a second: every open page
        asks again when a rule fires)."""
        read_at, status = self._stored
        if time.monotonic() - read_at < STATUS_READ_EVERY:
            return status
        journal = self.pipeline.journal
        try:
            stored = offload(journal.info, _STATUS_ROW).get(_STATUS_ROW) if journal is not None else None
        except Exception:  # the database is out: health says so; the view shows what this process knows
            stored = None
        if not isinstance(stored, dict):
            stored = {}
        status = {"suppressed": stored.get("suppressed") or {}, "destinations": stored.get("destinations") or []}
        self._stored = (time.monotonic(), status)
        return status

    @staticmethod
    def _rule_view(state: RuleState, now: float) -> dict[str, Any]:
        rule = state.rule
        if state.firing:
            status = "firing"
        elif state.history and state.history[0]["state"] == "resolved" and now - state.history[0]["at"] < rule.cooldown:
            status = "resolved"  # recovered, and within its cooldown: a new firing would be held back
        else:
            status = "ok"
        firing = sorted(state.firing.values(), key=lambda i: i.since)
        return {
            "name": rule.name,
            "kind": rule.kind,
            "threshold": rule.threshold,
            "unit": rule.unit,
            "window": rule.window if rule.windowed else None,
            "min_calls": rule.min_calls,
            "cooldown": rule.cooldown,
            "scope": dict(rule.scope),
            "destinations": list(rule.destinations),
            "state": status,
            "value": None if state.value is None else round(state.value, 6),
            "firing_count": len(firing),
            "firing": [{"call_id": i.call_id, "since": i.since, "value": None if i.value is None else round(i.value, 6)}
                       for i in firing[:FIRING_SHOWN]],
            "notified": state.notified,
            "suppressed": state.suppressed,
            "history": list(state.history),
        }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "USD":
        return f"${value:,.4f}"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value:,.0f} s"
    return f"{value:,.0f} ms"


_WHAT = {
    "turn_latency": "turn response latency",
    "stuck_call": "no event for",
    "p95_latency": "P95 response latency",
    "failure_rate": "failure rate",
    "cost_per_call": "cost per call",
    "cost_per_hour": "cost per hour",
    "cost_per_day": "cost per day",
    "no_calls": "no call started for",
}


def _message(rule: Rule, what: str, call_id: str | None, value: float | None, reason: str) -> str:
    subject = f"call {call_id[:128]}: " if call_id is not None else ""
    window = f" over {rule.window:g} s" if rule.windowed else ""
    measure = f"{_WHAT[rule.kind]} {_fmt(value, rule.unit)}{window}"
    if what == "firing":
        return f"[FIRING] {rule.name}: {subject}{measure} (threshold {_fmt(rule.threshold, rule.unit)})"
    return f"[RESOLVED] {rule.name}: {subject}{reason}" + (f"; {measure}" if value is not None else "")
