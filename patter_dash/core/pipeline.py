"""Pipeline: runtime → bounded queue → one event thread → store → hub.

:meth:`Pipeline.feed` is what the voice runtime calls: it only appends to a
bounded deque and never blocks or raises. One background event thread (a
greenlet under gunicorn's gevent worker) drains the queue, validates,
de-duplicates by event id, numbers each accepted event, applies it to the
store (the only writer) and publishes it to the hub.

The thread starts lazily in the serving process (:meth:`ensure_started`,
checked against the PID), never at import or in gunicorn's master, so
``--preload`` and forking hosts work. Under gevent a native OS thread cannot
wake a waiting greenlet through gevent's primitives, so the wake-up goes
through a libev async watcher, whose ``send()`` is safe from any thread.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..model import records
from ..model.clean import ValidationError
from ..model.events import Event, make_event
from .hub import Hub
from .store import MAX_ACTIVE_CALLS, MAX_CALL_TEXT, Applied, CallStore

log = logging.getLogger("patter_dash")

SEEN_IDS = 100_000  # how many event ids are remembered for de-duplication
DROP_WARNING_INTERVAL = 10.0
#: Applied events between two ``gc.freeze()`` calls of the event thread.
FREEZE_EVERY = 20_000
#: Largest submission applied on the submitting greenlet itself when the event thread is idle
#: (the event thread's own pause interval: the loop is not held longer than in a burst).
INLINE_MAX = 100


def gevent_active() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("threading"))


def let_others_run() -> None:
    """Pause a long job so other requests run, I/O included.

    Under gevent, ``sleep(0)`` may resume us before the loop polls sockets, so a
    long export starved every other client for seconds; any positive sleep waits
    for the next loop iteration. In threaded hosts it releases the GIL.
    """
    time.sleep(1e-6)


#: What one reader encodes between two pauses: this many calls, or this much transcript text.
PACE_CALLS = 100
PACE_TEXT = 200_000


def paced(calls: list[records.Call]) -> Iterator[list[records.Call]]:
    """``calls`` in batches small enough to encode without stalling other requests.

    A batch ends at :data:`PACE_CALLS` calls or :data:`PACE_TEXT` characters
    of transcript (one call can hold 2,000,000), and the reader pauses
    between batches so health checks and streams run.
    """
    batch: list[records.Call] = []
    text = 0
    for call in calls:
        batch.append(call)
        text += call.text_chars
        if len(batch) >= PACE_CALLS or text >= PACE_TEXT:
            yield batch
            let_others_run()
            batch, text = [], 0
    if batch:
        yield batch


def _on_foreign_native_thread() -> bool:
    """Under gevent, whether we run on an OS thread other than the main one.

    Greenlets spawned there would belong to that thread's own hub, which
    nobody runs; the event thread must start from the serving (main) thread.
    """
    if not gevent_active():
        return False
    from gevent.monkey import get_original

    current, main = get_original("threading", ["current_thread", "main_thread"])
    return current() is not main()


class _Wakeup:
    """Wake the event thread from any thread or greenlet."""

    def __init__(self) -> None:
        self._watcher: Any = None
        if gevent_active():
            import gevent.event
            from gevent import get_hub

            self._event: Any = gevent.event.Event()
            self._watcher = get_hub().loop.async_()
            self._watcher.start(self._event.set)
        else:
            self._event = threading.Event()

    def send(self) -> None:
        if self._watcher is not None:
            self._watcher.send()
        else:
            self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()


@dataclass(slots=True)
class Ack:
    seq: int
    duplicate: bool


class _Ticket:
    """Lets an HTTP request wait until its events are applied."""

    __slots__ = ("acks", "done", "remaining")

    def __init__(self, n: int) -> None:
        self.acks: list[Ack | None] = [None] * n
        self.remaining = n
        self.done = threading.Event()


@dataclass(slots=True)
class Pending:
    """One queued item: an event from :meth:`Pipeline.feed` still to be validated,
    or one validated by :meth:`Pipeline.submit` whose request waits on ``ticket``."""

    type: Any
    data: Any
    key: Any = None
    received: float = 0.0
    event: Event | None = None
    ticket: _Ticket | None = None
    index: int = 0


class QueueFull(Exception):
    """The ingest queue has no room for a batch; the client should retry."""


class ApplyFailed(Exception):
    """An event passed validation but could not be applied (logged with its traceback)."""


class Pipeline:
    def __init__(
        self,
        *,
        queue_size: int = 10_000,
        max_calls: int = 10_000,
        replay_size: int = 10_000,
        max_subscribers: int = 1_000,
        subscriber_queue: int = 2_000,
        max_call_text: int = MAX_CALL_TEXT,
        max_active_calls: int = MAX_ACTIVE_CALLS,
    ) -> None:
        self.queue_size = queue_size
        self._hub_options = dict(replay_size=replay_size, max_subscribers=max_subscribers, max_lag=subscriber_queue)
        self._store_options = dict(max_completed=max_calls, max_call_text=max_call_text, max_active=max_active_calls)
        self._queue: deque[Pending] = deque()
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sleeping = False
        self._inline = False
        self._next_freeze = FREEZE_EVERY
        self._stopping = False
        self._seq = 0
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._last_drop_warning = 0.0
        self._drops_since_warning = 0
        self.started_at = time.time()
        self.counters = {"accepted": 0, "duplicates": 0, "dropped": 0, "rejected": 0, "busy": 0, "errors": 0}
        self.store = CallStore(**self._store_options)
        self.hub = Hub(**self._hub_options)
        self._wakeup: _Wakeup | None = None
        #: Called once in each process where the event thread starts (e.g. the demo runtime).
        self.on_start: list[Callable[[], None]] = []

    # --------------------------------------------------------------- lifecycle

    def ensure_started(self) -> None:
        """Start the event thread in this process if it is not running here yet."""
        if self._pid == os.getpid() or _on_foreign_native_thread():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:
                # A forked child: the parent's thread, queue and state are not ours.
                self._queue.clear()
                self.store = CallStore(**self._store_options)
                self.hub = Hub(**self._hub_options)
            # Locks made before gevent patched threading (``--preload``) are not greenlet-aware.
            self.store.make_lock()
            self.hub.make_primitives()
            self._stopping = False
            # Numbering starts at the current time in µs, so ids keep increasing
            # across restarts: a reader resuming from before a restart gets a
            # reset instead of silently skipping the new process's first events.
            self._seq = self.hub.head = int(time.time() * 1_000_000)
            self._wakeup = _Wakeup()
            self._thread = threading.Thread(target=self._run, name="patter-dash-events", daemon=True)
            self._thread.start()
            # Under gevent the event "thread" is a greenlet of this OS thread: see submit().
            self._inline = gevent_active()
            self._pid = os.getpid()
        for hook in self.on_start:
            hook()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.send()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pid = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    # ------------------------------------------------------------------ input

    def feed(self, event_type: str, data: Any, *, id: str | None = None) -> bool:
        """Enqueue one event from the runtime. Never blocks, never raises.

        Returns False when the queue is full and the event was dropped.
        """
        try:
            if len(self._queue) >= self.queue_size:
                self._note_drop()
                return False
            self._queue.append(Pending(event_type, data, id, time.time()))
            self._wake()
            return True
        except Exception:  # the runtime must never see our failures
            self.counters["errors"] += 1
            return False

    def submit(self, events: list[Event], timeout: float = 10.0) -> list[Ack]:
        """Enqueue validated events and wait until they are applied (HTTP/WS ingest)."""
        if len(self._queue) + len(events) > self.queue_size:
            self.counters["busy"] += 1
            raise QueueFull("ingest queue is full")
        self.ensure_started()
        ticket = _Ticket(len(events))
        if self._inline and self._sleeping and not self._queue and len(events) <= INLINE_MAX:
            # The event greenlet is parked with nothing queued, and greenlets do not
            # preempt each other: applying here, without yielding, is exactly what it
            # would do, minus the hand-off (a wake-up and two switches a request).
            for i, event in enumerate(events):
                self._handle(Pending(event.type, event.data, event.key, event.received_at, event, ticket, i))
            self._maybe_freeze()
        else:
            for i, event in enumerate(events):
                self._queue.append(Pending(event.type, event.data, event.key, event.received_at, event, ticket, i))
            self._wake()
            if not ticket.done.wait(timeout):
                raise QueueFull("events were queued but not applied in time")
        acks = [a for a in ticket.acks if a is not None]
        if any(a.seq == 0 for a in acks):
            raise ApplyFailed("an event could not be applied")
        return acks

    def _wake(self) -> None:
        if self._sleeping and self._wakeup is not None:
            self._wakeup.send()

    def _note_drop(self) -> None:
        self.counters["dropped"] += 1
        self._drops_since_warning += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL:
            log.warning(
                "patter-dash queue full (%d events): dropped %d event(s) since the last warning",
                self.queue_size, self._drops_since_warning,
            )
            self._last_drop_warning = now
            self._drops_since_warning = 0

    # ------------------------------------------------------------ event thread

    def _run(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        last_reap = time.monotonic()
        while not self._stopping:
            handled = 0
            while self._queue:
                self._handle(self._queue.popleft())
                handled += 1
                if handled % 100 == 0:
                    let_others_run()  # readers run during a burst
                    self._maybe_freeze()
            self._maybe_freeze()
            now = time.monotonic()
            if now - last_reap >= 1.0:
                self.hub.reap()
                last_reap = now
            self._sleeping = True
            if not self._queue:
                wakeup.wait(0.5)
            self._sleeping = False

    def _maybe_freeze(self) -> None:
        """Every :data:`FREEZE_EVERY` applied events, hide what exists from the collector.

        Stored calls live long and are freed by reference counting; out of the
        collector's sight, a full collection no longer walks 100,000 calls
        (1.5 s) on some request's path. ``gc.freeze()`` itself is O(1).
        """
        accepted = self.counters["accepted"]
        if accepted >= self._next_freeze:
            gc.freeze()
            self._next_freeze = accepted + FREEZE_EVERY

    def _handle(self, item: Pending) -> None:
        ticket = item.ticket
        try:
            event = item.event or make_event(item.type, item.data, item.key, now=item.received)
            ack = self._apply(event)
        except ValidationError as exc:
            self.counters["rejected"] += 1
            log.debug("rejected event: %s %s", exc.message, exc.details)
            ack = Ack(0, False)
        except Exception:
            self.counters["errors"] += 1
            log.exception("patter-dash failed to apply an event")
            ack = Ack(0, False)
        if ticket is not None:
            ticket.acks[item.index] = ack
            ticket.remaining -= 1
            if ticket.remaining == 0:
                ticket.done.set()

    def _apply(self, event: Event) -> Ack:
        if event.key is not None:
            seen = self._seen.get(event.key)
            if seen is not None:
                self.counters["duplicates"] += 1
                return Ack(seen, True)
        event.seq = self._seq + 1
        applied = self.store.apply(event)
        call, changed = applied.call, applied.changed
        if changed:
            self._seq = event.seq  # only now: readers take a gap in ids for a lost event
        if event.key is not None:  # only once applied: a failed event may be retried
            self._seen[event.key] = call.seq
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        if not changed:
            self.counters["duplicates"] += 1
            return Ack(call.seq, True)
        self.counters["accepted"] += 1
        self.hub.publish(event.seq, event.type, event.call_id, self._payload(event, applied))
        for closed in self.store.take_closed():
            # A live call closed to make room ends on every open page as if its status said so.
            self._seq = closed.seq = self._seq + 1
            payload = {"seq": self._seq, "type": "call_status", "call_id": closed.call_id,
                       "call": records.summary(closed, time.time(), with_metrics=False)}
            self.hub.publish(self._seq, "call_status", closed.call_id, payload)
        return Ack(event.seq, False)

    @staticmethod
    def _payload(event: Event, applied: Applied) -> dict[str, Any]:
        """One live frame: what this event changed, not the whole call again.

        The full summary (a card's every field) goes with the events that
        create, move or close a card and with a call's first frame; a line or
        a turn carries itself plus the few card fields it can change. ``line``
        and ``lines`` are exactly what the store appended, with every field
        sent with them: a reader shows them as sent, with no de-duplication
        rule of its own, placing a line that carries a ``turnIndex`` as
        :func:`~patter_dash.model.records.ordered` does.
        """
        call = applied.call
        kind = event.type
        payload: dict[str, Any] = {"seq": event.seq, "type": kind, "call_id": event.call_id}
        # A finished call's late line or turn changes its history row: readers get the whole row.
        whole = applied.new or not call.active
        if kind == "transcript":
            payload["call"] = records.summary(call, time.time(), with_metrics=False) if whole else records.card_fields(call, turns=False)
            if applied.lines:  # absent when over the call's text budget
                payload["line"] = records.line_view(applied.lines[0])
        elif kind == "turn":
            payload["call"] = records.summary(call, time.time(), with_metrics=False) if whole else records.card_fields(call, turns=True)
            index = event.data["turn"].get("turn_index")
            turn = None
            for held in reversed(call.turns):  # the newest turn is usually last
                if held[records.TURN_INDEX] == index:
                    turn = held
                    break
            if turn is None and call.turns:
                turn = call.turns[-1]
            payload["turn"] = records.turn_view(turn) if turn else None
            payload["cost_so_far"] = event.data.get("cost_so_far")
            payload["lines"] = [records.line_view(line) for line in applied.lines]
        else:
            payload["call"] = records.summary(call, time.time(), with_metrics=False)
        return payload

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.running else "starting",
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "pid": os.getpid(),
            "queue": {"depth": len(self._queue), "capacity": self.queue_size},
            "events": {**self.counters, "last_seq": self._seq},
            "store": self.store.sizes(),
            "subscribers": {"count": self.hub.subscriber_count, "max": self.hub.max_subscribers, "overflows": self.hub.overflows},
        }

