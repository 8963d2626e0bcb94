"""Pipeline: runtime → bounded queue → one event thread → journal → store → hub.

:meth:`Pipeline.feed` is what the voice runtime calls: it only appends to a
bounded deque and never blocks or raises. One background event thread (a
greenlet under gunicorn's gevent worker) drains the queue, validates,
de-duplicates by event id, numbers each accepted event, applies it to the
store (the only writer) and publishes it to the hub.

With a journal, what queued while the last transaction committed is written
as one transaction (group commit) on a native thread, and only then applied
and acknowledged: an HTTP or WebSocket ack means the event is on disk. A
failed write (disk full) refuses new ingest with 503 and keeps what
:meth:`feed` queued until writing works again.

The thread starts lazily in the serving process (:meth:`ensure_started`,
checked against the PID), never at import or in gunicorn's master, so
``--preload`` and forking hosts work. Under gevent a native OS thread cannot
wake a waiting greenlet through gevent's primitives, so the wake-up goes
through a libev async watcher, whose ``send()`` is safe from any thread.

A shared journal (PostgreSQL, several processes) is one ordered log: each
event's number is its row's, given at commit, and is also its live frame's id
in every process. A commit first applies what other processes wrote before
it; the rest of their events arrive through the follower of
:mod:`.shared_log`, this class's base, which also writes the deletions,
closes and announcements every process applies.
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

from ..journal import LOG_ANNOUNCE, LOG_CLOSE, LOG_DELETE, Batch, Journal, JournalUnavailable
from ..model import records
from ..model.clean import ValidationError
from ..model.events import Event, make_event
from ..model.redact import Redactor
from ..model.views import CALL_DELETED, CALL_UPDATED
from .aggregates import HOUR, MAX_PER_CALL, contribution, latency_bin
from .cooperative import (
    Slices, Wakeup, gevent_active, in_background, let_others_run, native_thread, offload, on_foreign_native_thread,
)
from .history import History
from .hub import Hub
from .shared_log import AHEAD_ALLOWED, ANNOUNCE_HELD, DONE_SCALE, FOLLOW_INTERVAL, REPLAYED_TYPES, SharedLog
from .store import MAX_ACTIVE_CALLS, MAX_CALL_TEXT, Applied, CallStore, Watcher

log = logging.getLogger("patter_dash")

SEEN_IDS = 100_000  # how many event ids are remembered for de-duplication
DROP_WARNING_INTERVAL = 10.0
#: Applied events between two ``gc.freeze()`` calls of the event thread. A full collection
#: walks what arrived since the last freeze (~1 µs an object: 20,000 events were ~40 ms);
#: what a freeze catches in flight and later drops in a cycle (a request's router closure)
#: is kept for good, a few KB a freeze.
FREEZE_EVERY = 2_000
#: Largest submission applied on the submitting greenlet itself when the event thread is idle
#: (the event thread's own pause interval: the loop is not held longer than in a burst).
INLINE_MAX = 100
#: Events written in one transaction at most (what queued while the last one committed).
BATCH_MAX = 1_000
#: Commits between two WAL checkpoints (and one a second after any commit): the WAL stays a few MB.
CHECKPOINT_EVERY = 200
#: Seconds between two tries to write after the journal failed (disk full, read-only).
RETRY_INTERVAL = 1.0
#: Seconds without events before what applying derived is written on its own (see _flush_when_idle).
FLUSH_DELAY = 0.2
#: Written calls added to ``q``'s index in one transaction at most (SQLite; ~0.3 ms each): the writer's
#: commits wait while it holds the file (up to ~75 ms; 500 a second took the p99 of 200-event bodies to 160 ms).
INDEX_BATCH = 250
#: Seconds between two index batches while events keep coming (quiet: at once).
INDEX_INTERVAL = 0.5
#: Calls waiting for the index past which a batch goes at once (reads scan the waiting ones' text).
INDEX_BACKLOG = 2_000
#: Calls deleted in one transaction by the retention purge (small: readers run between them).
PURGE_BATCH = 500
#: Seconds between two retention passes.
PURGE_INTERVAL = 60.0
#: Stale calls closed by one close pass at most.
CLOSE_BATCH = 500


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


@dataclass(slots=True)
class Ack:
    seq: int
    duplicate: bool


class _Ticket:
    """Lets an HTTP request wait until its events are applied."""

    __slots__ = ("acks", "done", "remaining", "failure", "result")

    def __init__(self, n: int) -> None:
        self.acks: list[Ack | None] = [None] * n
        self.remaining = n
        self.done = threading.Event()
        #: Why the events were not accepted (the journal could not write them), if so.
        self.failure: str | None = None
        self.result: Any = None

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.done.set()


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


class JournalDown(QueueFull):
    """The journal cannot write (disk full, read-only file): nothing was accepted; retry later."""


#: Queue item types that are operations of the writer, not events.
DELETE = "__delete__"
DELETE_BEFORE = "__delete_before__"
ANNOTATE = "__annotate__"
OPERATIONS = (DELETE, DELETE_BEFORE, ANNOTATE)
#: What an annotation answers when the call does not exist (None means the journal failed).
NOT_FOUND = "not found"


class Pipeline(SharedLog):
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
        journal: Journal | None = None,
        call_timeout: float | None = None,
        retention_days: float = 0,
        redact: str = "off",
        redact_key: bytes | None = None,
    ) -> None:
        self.queue_size = queue_size
        #: ``PATTER_DASH_REDACT``: applied once to every event before it is journaled or applied.
        #: Without a configured key, a journal's own (see _restore) replaces this process's random one.
        self.redactor = Redactor(redact, redact_key or os.urandom(32))
        self._own_redact_key = redact_key is not None
        self.journal = journal
        #: Several processes share the journal (PostgreSQL): numbers come from its log.
        self.shared = bool(journal is not None and getattr(journal, "shared", False))
        self.call_timeout = call_timeout
        self.retention_days = retention_days
        self._hub_options = dict(replay_size=replay_size, max_subscribers=max_subscribers, max_lag=subscriber_queue)
        #: Told when a call completes or ends (:data:`~patter_dash.core.store.Watcher`); shared with every
        #: store this pipeline makes. The Prometheus metrics (:mod:`patter_dash.ops.metrics`) add theirs.
        self.watchers: list[Watcher] = []
        #: Told the ids of every deletion (by id, by date, the retention purge) once it is on disk and announced,
        #: on the writer: a listener hands slow work (removing files) to a native thread.
        self.on_deleted: list[Callable[[list[str]], None]] = []
        self._store_options = dict(
            max_completed=max_calls, max_call_text=max_call_text, max_active=max_active_calls, keep_history=journal is not None,
            watchers=self.watchers, done_scale=DONE_SCALE if self.shared else 0,
        )
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
        #: Deletions done (requests and retention): readers that cache what they encoded drop it when this moves.
        self.deletions = 0
        #: Why the journal cannot write now (None: it can), and when to try again.
        self.journal_error: str | None = None
        self._retry_at = 0.0
        self.journal_stats = {"commits": 0, "events": 0, "failures": 0, "last_commit_ms": 0.0, "restore_seconds": 0.0}
        #: Finished calls and event ids applied but not yet written (the next transaction takes them).
        self._unwritten: dict[str, records.Call] = {}
        self._unwritten_seen: list[tuple[str, int]] = []
        #: Small facts for the journal's info table (:meth:`remember`) not written yet; None deletes the row.
        self._info: dict[str, Any] = {}
        self._last_purge = 0.0
        #: Shared journal: a notification came (read the log now), the highest number known written,
        #: since when this process is behind it, when the log was last read, and whether this process
        #: runs the once-only jobs.
        self._log_notified = False
        self._log_tip = 0
        self._behind_since: float | None = None
        self._followed_at = 0.0
        self._listening = False
        self.runs_jobs = not self.shared
        self.follow_stats = {"followed": 0, "skipped": 0, "reloads": 0}
        self._flush_due: float | None = None
        self._indexed_at = self._committed_at = 0.0
        self._indexing = False
        self._checkpointing = False
        self._checkpointed_at = 0  # journal_stats["commits"] when the last checkpoint was asked for
        self._suspects = 0  # items still to write one a transaction (see _unwritable)
        self._derived_first = False
        self._ticked_at = 0.0  # when the event thread last ran its once-a-second duties
        self.store = CallStore(**self._store_options)
        self.hub = Hub(**self._hub_options)
        #: Reads of finished calls, in memory and (with a journal) on disk.
        self.history = History(self)
        self._wakeup: Wakeup | None = None
        #: Called once in each process where the event thread starts (e.g. the demo runtime).
        self.on_start: list[Callable[[], None]] = []
        #: Told of each applied event that changed its call, on the event thread after it is published
        #: (the alert rules of a live call). Must be O(1) and never raise: it runs on the ingest path.
        self.on_event: list[Callable[[Event, records.Call], None]] = []
        #: Called on the event thread about once a second with ``time.time()`` (windowed alert rules);
        #: may :meth:`announce`. Runs between batches, never inside one.
        self.on_tick: list[Callable[[float], None]] = []
        #: A shared journal: told of each frame announced through the log (``type``, payload), by any
        #: process, this one's own included, on the event thread before the frame is published.
        self.on_announced: list[Callable[[str, dict[str, Any]], None]] = []
        #: (prefix, callback): the journal's info rows under ``prefix`` (see :meth:`remember`), read
        #: at each restore and handed over before the event thread starts (an alert's state).
        self.on_restore: list[tuple[str, Callable[[dict[str, Any]], None]]] = []
        #: A shared journal: announcements not written to the log yet (see :meth:`announce`).
        self._announcing: list[Event] = []

    # --------------------------------------------------------------- lifecycle

    def ensure_started(self) -> None:
        """Start the event thread in this process if it is not running here yet."""
        if self._pid == os.getpid() or on_foreign_native_thread():
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
            if self.shared:
                self.hub.ahead_allowed = AHEAD_ALLOWED
            if self.journal is not None:
                self._restore(self.journal)
            self._wakeup = Wakeup()
            if self.shared and not self._listening:
                self._listening = True
                journal = self.journal
                native_thread(lambda: journal.listen(self._notified), "patter-dash-listen")  # type: ignore[union-attr]
            self._thread = threading.Thread(target=self._run, name="patter-dash-events", daemon=True)
            self._thread.start()
            # Under gevent the event "thread" is a greenlet of this OS thread: see submit().
            # With a journal, an ack waits for the commit that only the event thread makes.
            self._inline = gevent_active() and self.journal is None
            self._pid = os.getpid()
        for hook in self.on_start:
            hook()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.send()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._indexing and time.monotonic() < deadline:  # an index batch's connection closes before the file
            time.sleep(0.01)
        if self.journal is not None and self._pid == os.getpid():
            offload(self.journal.close)  # its checkpoint copies the WAL into the file: not on the loop
        self._pid = None

    def _restore(self, journal: Journal) -> None:
        """Read the history back: sums of every stored call, the newest calls, events to replay.

        The file is read on a native thread; replaying (the events of calls
        still live when the last process stopped) pauses between events so a
        gevent loop that already serves stays responsive.
        """
        started = time.monotonic()
        keep = self._store_options["max_completed"]

        def read() -> Any:
            journal.open()
            if self.redactor.active and not self._own_redact_key:
                self._adopt_redact_key(journal)
            # After the history: rows written since come back again from the log, which their readers allow.
            return journal.restore(keep), [journal.info(prefix) for prefix, _ in self.on_restore]

        restored, infos = offload(read)
        for (_, hand_over), rows in zip(self.on_restore, infos):
            hand_over(rows)
        store = self.store
        store.load(restored.hours, restored.latencies, restored.calls, restored.done)
        store.aggregates.cold_rows = self.history.cold_rows
        if restored.named is None:
            self._adopt_cold(e.call_id for e in restored.events)
        else:
            for call in restored.named:
                store.adopt_cold(call)
        store.pin(e.call_id for e in restored.events)  # held until replayed (see _commit)
        self._seq = restored.log_seq if self.shared else max(self._seq, restored.last_seq)
        replayed: list[tuple[str, int]] = []
        keys: set[str] = set()
        for n, event in enumerate(restored.events, 1):
            if self.shared:
                # Numbered by the log. Two processes may have taken one id at once: the first counts.
                if (event.key is not None and event.key in keys) or event.type not in REPLAYED_TYPES:
                    continue
                if event.type == LOG_CLOSE:
                    store.close_logged(event.call_id, event.seq)
                    continue
                if event.type == LOG_DELETE:  # its calls are gone from disk already, totals included
                    for call_id in event.data.get("call_ids") or ():
                        store.delete(call_id)
                    continue
            else:
                event.seq = self._seq + 1
            try:
                applied = store.apply(event)
            except Exception:  # it failed when it arrived too: the rest of history still loads
                log.exception("patter-dash: a stored event could not be replayed")
                continue
            if event.key is not None:
                keys.add(event.key)
            if applied.changed and not self.shared:
                self._seq = event.seq
            if event.key is not None:
                replayed.append((event.key, applied.call.seq))
            if n % 100 == 0:
                let_others_run()
        store.release()
        store.take_closed()  # nobody is reading yet: nothing to announce
        for key, seq in (*restored.seen, *replayed):
            self._seen[key] = seq
        # A replayed event's id lives only in its row, which goes when its call is written
        # whole: the seen table must get it first, or a later restart forgets it.
        self._unwritten_seen.extend(replayed)
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        self.hub.head = self._log_tip = self._seq
        try:
            # A file that cannot be written (read-only, disk full) is known before the first
            # ingest: health says so at once and ingest is refused, instead of failing later.
            offload(journal.commit, Batch(last_seq=self._seq))
        except JournalUnavailable as exc:
            self._journal_failed(exc)
        gc.freeze()  # the restored calls live long: out of the collector's sight (see _maybe_freeze)
        self.journal_stats["restore_seconds"] = round(time.monotonic() - started, 3)
        log.info(
            "patter-dash: restored %d stored calls (%d in memory, %d events replayed) from %s in %.2f s",
            store.aggregates.total.calls, len(store.completed), len(restored.events), journal.path,
            self.journal_stats["restore_seconds"],
        )

    def _adopt_redact_key(self, journal: Journal) -> None:
        """The hashing key kept with the database, made once, so a caller's hash survives restarts."""
        try:
            self.redactor.key = journal.secret("redact_key")
        except JournalUnavailable as exc:
            log.warning("patter-dash: no redaction key in %s (%s); caller hashes use this process's own key", journal.path, exc)

    def _redact(self, event: Event) -> Event:
        """Redact an event as it enters the writer's hands (once: before the journal, the store, the hub)."""
        self.redactor.event(event.type, event.data)
        return event

    def _adopt_cold(self, call_ids: Any) -> None:
        """Bring back from disk the finished calls these ids name that memory no longer holds."""
        journal = self.journal
        assert journal is not None
        store = self.store
        missing = {i for i in call_ids if i not in store.completed and i not in store.active}
        if missing:
            for call in offload(journal.load_many, missing):
                store.adopt_cold(call)

    def unwritten(self) -> list[records.Call]:
        """Finished calls taken for the transaction being written (on disk once it commits)."""
        return list(self._unwritten.values())

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
        if self.journal_error is not None:
            self.counters["busy"] += 1
            raise JournalDown(f"history cannot be written: {self.journal_error}")
        if len(self._queue) + len(events) > self.queue_size:
            self.counters["busy"] += 1
            raise QueueFull("ingest queue is full")
        self.ensure_started()
        if self.redactor.active:
            slices = Slices()  # a body's long lines are redacted between other requests' turns
            for event in events:
                self._redact(event)
                slices.pause_if_due()
        ticket = _Ticket(len(events))
        first = 0
        if self._inline and self._sleeping and not self._queue and len(events) <= INLINE_MAX:
            # The event greenlet is parked with nothing queued, and greenlets do not
            # preempt each other: applying here, without yielding, is exactly what it
            # would do, minus the hand-off (a wake-up and two switches a request).
            # Past one slice of work the rest goes to it, which pauses between slices.
            slices = Slices()
            while first < len(events) and not slices.used_up():
                event = events[first]
                self._handle(Pending(event.type, event.data, event.key, event.received_at, event, ticket, first))
                first += 1
            self._maybe_freeze()
        if first < len(events):
            for i in range(first, len(events)):
                event = events[i]
                self._queue.append(Pending(event.type, event.data, event.key, event.received_at, event, ticket, i))
            self._wake()
            if not ticket.done.wait(timeout):
                raise QueueFull("events were queued but not applied in time")
        if ticket.failure is not None:
            raise JournalDown(f"history cannot be written: {ticket.failure}")
        acks = [a for a in ticket.acks if a is not None]
        if any(a.seq == 0 for a in acks):
            raise ApplyFailed("an event could not be applied")
        return acks

    def remember(self, rows: dict[str, Any]) -> None:
        """Keep small facts (a follower's cursor) in the journal's info table; a None value deletes the row.

        Never blocks: they ride with the next transaction (within :data:`FLUSH_DELAY` when idle),
        so a fact written after a :meth:`submit` returned is never on disk before those events.
        Without a journal they are dropped. Safe from any thread.
        """
        if self.journal is None or not rows:
            return
        self._info.update(rows)
        self._wake()

    def note_rejected(self) -> None:
        """Count an ingest body or message refused as invalid before any of it was queued (once, whatever it held)."""
        self.counters["rejected"] += 1

    def delete(self, call_ids: list[str], timeout: float = 30.0) -> list[str]:
        """Delete calls from memory, disk and totals; the ids that existed. Announced as ``call_deleted``."""
        return self._operate(DELETE, list(call_ids), timeout)  # type: ignore[no-any-return]

    def delete_before(self, cutoff: float, timeout: float = 120.0) -> int:
        """Delete every finished call that started before ``cutoff``; how many.

        Live calls are left alone: they are not history yet, and their next
        event would only start them again (delete one by id if it is stuck).
        Done :data:`PURGE_BATCH` calls a transaction, each batch announced as
        one ``call_deleted``, so readers and ingest run in between.
        """
        return self._operate(DELETE_BEFORE, cutoff, timeout)  # type: ignore[no-any-return]

    def annotate(self, call_id: str, changes: dict[str, Any], timeout: float = 30.0) -> records.Call | None:
        """Set a call's tags, notes or rating (``changes``, from :func:`~patter_dash.model.annotations.parse_patch`).

        The call, live or finished, once the change is journaled, applied and
        announced as ``call_updated``; None when there is no such call.
        """
        result = self._operate(ANNOTATE, (call_id, changes), timeout)
        return None if result is NOT_FOUND else result  # type: ignore[no-any-return]

    def annotate_soon(self, call_id: str, changes: dict[str, Any]) -> None:
        """:meth:`annotate` without waiting for it, from any thread (a native one that measured a recording).

        Kept in the queue while the journal is down, like any event; a call
        deleted meanwhile is simply not found.
        """
        self._queue.append(Pending(ANNOTATE, (call_id, changes)))
        self._wake()

    def _operate(self, kind: str, data: Any, timeout: float) -> Any:
        """Queue an operation for the writer (deletions go through the one writer, in order with events) and wait."""
        if self.journal_error is not None:
            raise JournalDown(f"history cannot be written: {self.journal_error}")
        self.ensure_started()
        ticket = _Ticket(1)
        self._queue.append(Pending(kind, data, ticket=ticket))
        self._wake()
        if not ticket.done.wait(timeout):
            # The writer carries on; asking again finishes what is left (deleting and annotating are idempotent).
            raise QueueFull("the change was queued but not done in time")
        if ticket.failure is not None:
            raise JournalDown(f"history cannot be written: {ticket.failure}")
        return ticket.result

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
        self._ticked_at = time.monotonic()
        while not self._stopping:
            try:
                self._turn()
            except Exception:  # a bug in one duty must not end the writer: every ingest would wait for good
                self.counters["errors"] += 1
                log.exception("patter-dash: the event thread failed a turn and goes on")
                wakeup.wait(0.05)  # not a hot loop if it fails again at once
            self._sleeping = True
            # A notification means "read the log now", but not while the database is out: the writer's retry
            # comes first (the listener's reconnection notifies; spinning on it starved the loop).
            follow_now = self._log_notified and self.journal_error is None
            if (not self._queue or (self.journal_error is not None and time.monotonic() < self._retry_at)) and not follow_now:
                flush_in = 0.5 if self._flush_due is None else self._flush_due - time.monotonic()
                wakeup.wait(max(0.0, min(0.5, flush_in)))
            self._sleeping = False
        if self.journal is not None and self.journal_error is None:
            # A clean stop leaves the file folded (snapshots written, their events gone).
            self._take_dirty()
            try:
                while self.journal_error is None and (self._queue or self._pending_writes()):
                    self._drain_journaled(self.journal, flush=True)
            except JournalUnavailable:
                pass
            if self._announcing:
                self._write_announced(self.journal)

    def _turn(self) -> None:
        """One pass of the event thread: the next batch written and applied, then the duties now due."""
        if self.journal is None:
            self._drain()
        else:
            # While the database is down the writer's retries find it back; a commit then catches up first.
            if self.shared and self.journal_error is None and (
                self._log_notified or time.monotonic() - self._followed_at >= FOLLOW_INTERVAL
            ):
                self._follow(self.journal)
            self._drain_journaled(self.journal)
            self._flush_when_idle(self.journal)
            self._index_when_due(self.journal)
            if self._announcing and self.journal_error is None:
                self._write_announced(self.journal)
        self._maybe_freeze()
        now = time.monotonic()
        if now - self._ticked_at < 1.0:
            return
        self._ticked_at = now
        self.hub.reap()
        if self.shared:
            self._check_jobs(self.journal)  # type: ignore[arg-type]
        self._close_stale()
        for tick in self.on_tick:
            try:
                tick(time.time())
            except Exception:  # an observer's bug must not stop the writer
                log.exception("patter-dash: a periodic hook failed")
        if self.journal is not None:
            self._purge(self.journal)
            self._take_dirty()
            if self.journal_stats["commits"] != self._checkpointed_at:
                self._checkpoint(self.journal)

    def _flush_when_idle(self, journal: Journal) -> None:
        """Write what applying derived on its own when no event waits, at most every :data:`FLUSH_DELAY`.

        Under load it goes with the next batch (one transaction, not two per
        request); idle, within a fraction of a second, so the file holds
        finished calls whole and does not wait for the next event.
        """
        if not self._pending_writes():
            self._flush_due = None
        elif self._flush_due is None:
            self._flush_due = time.monotonic() + FLUSH_DELAY
        elif not self._queue and time.monotonic() >= self._flush_due:
            self._flush_due = None
            self._drain_journaled(journal, flush=True)

    def _index_when_due(self, journal: Journal) -> None:
        """Add written calls to ``q``'s index in batches, on a background thread: every
        :data:`INDEX_INTERVAL` while events come, at once when quiet or past :data:`INDEX_BACKLOG`.

        Not in the commit an acknowledgement waits for: a call's trigrams cost
        ~1 ms in a transaction of its own and ~0.3 ms a call in a batch, and
        they are computed in C beside the event thread's own work.
        """
        if self._indexing or self._stopping or not journal.unindexed or self.journal_error is not None:
            return
        now = time.monotonic()
        quiet = not self._queue and now - self._committed_at >= FLUSH_DELAY
        if not quiet and now - self._indexed_at < INDEX_INTERVAL and journal.unindexed < INDEX_BACKLOG:
            return
        self._indexed_at = now
        self._indexing = True

        def run() -> None:
            try:
                journal.index_pending(INDEX_BATCH)
            except JournalUnavailable as exc:  # the next commit says so if it matters; the calls wait, found on their text
                log.debug("patter-dash: q's index could not be brought up to date: %s", exc)
            finally:
                self._indexing = False
                self._wake()  # quiet, with more waiting: the next batch at once

        in_background(run)

    def _drain(self) -> None:
        """Apply up to :data:`BATCH_MAX` queued items (the event thread's other duties run between two drains)."""
        slices = Slices()  # readers run during a burst
        for _ in range(min(len(self._queue), BATCH_MAX)):
            item = self._queue.popleft()
            if item.type in OPERATIONS:
                self._operation(item, None)
            else:
                self._handle(item)
            if slices.pause_if_due():
                self._maybe_freeze()

    # -------------------------------------------------------------- journal

    def _drain_journaled(self, journal: Journal, *, flush: bool = False) -> None:
        """Write the next batch of what queued as one transaction, then apply and acknowledge it.

        One batch (or one queued operation) a call: the event thread's
        once-a-second duties run between two, also under ingest that never
        pauses (looping here until the queue was empty starved them for as
        long as ingest lasted). What applying derives (finished calls whole,
        event ids) rides with the next batch's transaction; ``flush`` writes
        it on its own when nothing is queued (idle, or stopping). It can
        wait: the events it comes from are on disk already.
        """
        if not (self._queue or (flush and self._pending_writes()) or self.journal_error is not None):
            return
        if self.journal_error is not None and time.monotonic() < self._retry_at:
            return
        if self._queue and self._queue[0].type in OPERATIONS:
            self._operation(self._queue.popleft(), journal)
            return
        items, isolating = self._take()
        slices = Slices()
        accepted = []
        for item in items:
            if self._validate(item):
                accepted.append(item)
            slices.pause_if_due()
        batch = self._batch([item.event for item in accepted if item.event is not None], derived=not isolating)
        try:
            self._commit(journal, batch, accepted)
        except JournalUnavailable:
            # Nothing of the batch is on disk: those who wait are told (503), and
            # what the runtime fed goes back to the front of the queue.
            for item in accepted:
                if item.ticket is not None:
                    item.ticket.fail(self.journal_error or "")
            self._queue.extendleft(reversed([i for i in accepted if i.ticket is None]))
            return
        except Exception:  # the writer must outlive any value the history cannot hold
            self._unwritable(batch, accepted)
            return
        slices = Slices()
        for item in accepted:
            self._handle(item)
            if slices.pause_if_due():
                self._maybe_freeze()
        self.store.release()

    def _take(self) -> tuple[list[Pending], bool]:
        """The queued items the next transaction writes, and whether it leaves derived writes out.

        Normally up to :data:`BATCH_MAX` events with what applying derived.
        After a batch that failed for a reason other than the disk
        (:meth:`_unwritable`): first the derived writes alone, then its
        events one a transaction.
        """
        if self._derived_first:
            self._derived_first = False
            return [], False
        most = 1 if self._suspects else BATCH_MAX
        items: list[Pending] = []
        while self._queue and len(items) < most and self._queue[0].type not in OPERATIONS:
            items.append(self._queue.popleft())
        isolating = self._suspects > 0 and bool(items)
        self._suspects = max(0, self._suspects - len(items))
        return items, isolating

    def _unwritable(self, batch: Batch, accepted: list[Pending]) -> None:
        """A batch failed for a reason other than the disk: a value the history cannot hold got past validation.

        Nothing of it is on disk. Its events go back to be written one a
        transaction, apart from what applying derived; the one event, or the
        derived writes, that then fail alone are refused (a 500 to whoever
        waits) or left out, and everything else is written. Before, the
        exception ended the event thread: ingest answered 503 for good, and a
        history holding such an event killed it again at every start.
        """
        self.counters["errors"] += 1
        log.exception("patter-dash: a transaction could not be written for a reason other than the disk")
        derived = bool(batch.snapshots or batch.seen or batch.info)
        if len(accepted) > 1 or (accepted and derived):
            self._queue.extendleft(reversed(accepted))
            self._suspects += len(accepted)
            self._derived_first = derived
        elif accepted:
            self._answer(accepted[0], Ack(0, False))
        else:  # derived writes alone: their calls stay in memory, their events on disk (replayed at start)
            log.error("patter-dash: %d finished call(s) left unwritten: %s", len(batch.snapshots),
                      ", ".join(call.call_id for call, _, _ in batch.snapshots)[:500])
            self._unwritten.clear()
            self._unwritten_seen = []
            self._info.clear()

    def _pending_writes(self) -> bool:
        """Whether something applied is not on disk yet (the next transaction takes it, events or none).

        Finished calls too: left waiting for the next event, a call that ended
        idle stays on disk as events only, and a clean stop leaves it unfolded.
        """
        return bool(self._unwritten or self._unwritten_seen or self._info or self.store.has_dirty())

    def _validate(self, item: Pending) -> bool:
        """Make the item's event (a fed one is checked here); a refused one is answered now."""
        if item.event is not None:
            return True
        try:
            item.event = self._redact(make_event(item.type, item.data, item.key, now=item.received))
            return True
        except ValidationError as exc:
            self.counters["rejected"] += 1
            log.debug("rejected event: %s %s", exc.message, exc.details)
            self._answer(item, Ack(0, False))
            return False

    def _take_dirty(self) -> None:
        """Finished calls changed since the last transaction go into the next one.

        A batch takes them too; without events (a quiet second, a call closed
        as stale, a stop) this writes them all the same, so the file does not
        wait for the next event to hold them whole.
        """
        self.store.take_dirty(self._unwritten)

    def _batch(self, events: list[Event], *, derived: bool = True) -> Batch:
        """The next transaction: new events (not those already seen), finished calls, applied ids.

        ``derived=False`` leaves finished calls and applied ids for a later one.
        """
        fresh: list[Event] = []
        keys: set[str] = set()
        for event in events:
            key = event.key
            if key is None or (key not in self._seen and key not in keys):
                fresh.append(event)
                if key is not None:
                    keys.add(key)
        after = self._seq if self.shared else None
        if not derived:
            return Batch(fresh, last_seq=self._seq, after=after)
        self._take_dirty()
        snapshots = [(call, call.done, _counted(call)) for call in self._unwritten.values()]
        return Batch(fresh, snapshots, self._unwritten_seen, last_seq=self._seq, info=dict(self._info), after=after)

    def _commit(self, journal: Journal, batch: Batch, accepted: list[Pending]) -> None:
        """Write ``batch`` off the loop; fetch the finished calls its events name that are only on disk."""
        started = time.monotonic()
        ids = {item.event.call_id for item in accepted if item.event is not None}
        store = self.store
        cold = [i for i in ids if i not in store.completed and i not in store.active]

        committed = False

        def write() -> list[records.Call]:
            nonlocal committed
            journal.commit(batch)  # first: a call pushed out before it was written is read back fresh
            committed = True
            if batch.before:  # other processes' events, applied ahead of these: their finished calls too
                cold.extend({e.call_id for e in batch.before} - set(store.completed) - set(store.active) - ids)
            return journal.load_many(cold) if cold else []

        try:
            found = offload(write)
        except JournalUnavailable as exc:
            self._journal_failed(exc)
            if not committed:
                raise
            # On disk already: answered as written and applied once, never written again (a fed
            # event queued anew would be), once what it names can be read back.
            found = self._read_back(journal, cold)
        except Exception:
            if not committed:
                raise  # nothing of it on disk: _unwritable
            log.exception("patter-dash: the stored calls a written batch names could not be read back")
            found = []  # on disk all the same: acknowledged and applied once
        if self.journal_error is not None:
            log.warning("patter-dash: history is written again (before, %s)", self.journal_error)
            self.journal_error = None
        # The calls these events name stay in memory until they are applied: calls finishing
        # earlier in the batch would otherwise push them out, and an event for a call no
        # longer held would start a new one.
        store.pin(ids)
        for call in found:
            if self._counted_here(call):
                store.adopt_cold(call)
        if batch.snapshots:
            self._unwritten.clear()
        if batch.seen:
            self._unwritten_seen = []
        if batch.before:
            store.pin(e.call_id for e in batch.before)
            for event in batch.before:
                self._apply_logged(event)
        for name, value in batch.info.items():
            if self._info.get(name, self) is value:  # not changed again while this was written
                del self._info[name]
        self._committed_at = time.monotonic()
        stats = self.journal_stats
        stats["commits"] += 1
        stats["events"] += len(batch.events)
        stats["last_commit_ms"] = round((time.monotonic() - started) * 1000, 2)
        if stats["commits"] - self._checkpointed_at >= CHECKPOINT_EVERY:
            self._checkpoint(journal)

    def _read_back(self, journal: Journal, call_ids: list[str]) -> list[records.Call]:
        """The stored calls a committed batch names, read again until the history answers (or the thread stops)."""
        while not self._stopping:
            time.sleep(RETRY_INTERVAL)  # the event thread's own wait: a greenlet's under gevent
            try:
                return offload(journal.load_many, call_ids)  # type: ignore[no-any-return]
            except JournalUnavailable as exc:
                self._journal_failed(exc)
        return []

    def _checkpoint(self, journal: Journal) -> None:
        """Have the WAL copied into the file beside the commits, not waited for (its fsync is nobody's wait)."""
        if self._checkpointing:
            return
        self._checkpointing = True
        self._checkpointed_at = self.journal_stats["commits"]

        def run() -> None:
            try:
                journal.checkpoint()
            except JournalUnavailable as exc:
                log.debug("patter-dash: WAL checkpoint failed (the next commit reports it if it matters): %s", exc)
            finally:
                self._checkpointing = False

        in_background(run)

    def _journal_failed(self, exc: JournalUnavailable) -> None:
        if self.journal_error is None:
            log.error("patter-dash: cannot write history (%s); ingest answers 503 until it can", exc)
        self.journal_error = str(exc)
        self.journal_stats["failures"] += 1
        self._retry_at = time.monotonic() + RETRY_INTERVAL

    def _operation(self, item: Pending, journal: Journal | None) -> None:
        """Run a queued deletion or annotation and answer whoever waits on it."""
        failure = None
        what = "an annotation" if item.type == ANNOTATE else "a deletion"
        try:
            if item.type == DELETE:
                result: Any = self._delete(item.data, journal)
            elif item.type == ANNOTATE:
                result = self._annotate(*item.data, journal)
            else:
                result = self._delete_before(item.data, journal)
        except Exception:  # the writer must survive whatever an operation meets
            log.exception("patter-dash: %s failed", what)
            result, failure = None, f"{what} failed (see the server log)"
        ticket = item.ticket
        if ticket is None:
            return
        if result is None:
            ticket.fail(failure or self.journal_error or f"{what} failed")
        else:
            ticket.result = result
            ticket.done.set()

    def _delete(self, call_ids: list[Any], journal: Journal | None) -> list[str] | None:
        """Delete calls: journal first, then memory and totals; the ids that existed (None: the journal failed)."""
        ids = [i for i in dict.fromkeys(call_ids) if isinstance(i, str) and i]
        if self.shared and journal is not None and ids:
            # An event of the log: every process deletes the calls from its memory as it reads it.
            event = Event(LOG_DELETE, "", {"call_ids": ids}, None, time.time())
            done = self._log(journal, [event])
            return None if done is None else done[0] or []
        store = self.store
        on_disk: list[tuple[Any, ...]] = []
        if journal is not None and ids:
            try:
                on_disk = offload(journal.forget, ids)
            except JournalUnavailable as exc:
                self._journal_failed(exc)
                return None
        deleted = []
        for call_id in ids:
            if store.delete(call_id, self._unwritten.pop(call_id, None)) is not None:
                deleted.append(call_id)
        cold = {row[0]: row for row in on_disk}
        for call_id, row in cold.items():
            if call_id not in deleted:
                _, started_at, status, duration_ms, *cost = row
                store.uncount(started_at, status, (duration_ms, cost[:5], cost[5]))
                deleted.append(call_id)
        if deleted:
            self.deletions += 1
            self._seq += 1
            self.hub.publish(self._seq, CALL_DELETED, deleted[0] if len(deleted) == 1 else "",
                             {"seq": self._seq, "type": CALL_DELETED, "call_ids": deleted}, deleted)
            for listener in self.on_deleted:
                listener(deleted)
        return deleted

    def _annotate(self, call_id: str, changes: dict[str, Any], journal: Journal | None) -> Any:
        """Change a call's annotations as an event of its own: journaled, then applied, then announced.

        An event, not a write of the call's state: a live call is rebuilt from
        its events after a restart, so the change must be among them; a
        finished call's snapshot takes it up (the store marks it changed) and
        its events go, as for a late line. The call (NOT_FOUND: none; None:
        the journal failed).
        """
        if self.history._in_memory(call_id) is None and (journal is None or offload(journal.load, call_id) is None):
            return NOT_FOUND
        event = Event(CALL_UPDATED, call_id, changes, None, time.time())
        if journal is not None:
            try:
                self._commit(journal, self._batch([event]), [Pending(event.type, changes, event=event)])
            except JournalUnavailable:
                return None
        if self.shared:
            self._seq = max(self._seq, event.seq)  # numbered by the commit; followers apply it as theirs
        else:
            event.seq = self._seq + 1
        applied = self.store.apply(event)
        self.store.release()
        if applied.changed:
            self._seq = max(self._seq, event.seq)
            self.hub.publish(event.seq, CALL_UPDATED, call_id, self._payload(event, applied))
        return applied.call

    def _delete_before(self, cutoff: float, journal: Journal | None) -> int | None:
        """Delete the finished calls started before ``cutoff``, a batch at a time; how many (None: the journal failed).

        Memory is looked at too: a call may have finished after the last
        transaction (not on disk yet), and without a journal it is all there is.
        """
        # Only the writer changes ``completed`` (under gevent also a request applying inline, which
        # cannot interleave with this loop: it does not yield): reading it here needs no lock.
        held = [call_id for call_id, call in self.store.completed.items() if call.started_at < cutoff]
        total = 0
        for start in range(0, len(held), PURGE_BATCH):
            deleted = self._delete(held[start : start + PURGE_BATCH], journal)
            if deleted is None:
                return None
            total += len(deleted)
            let_others_run()
        while journal is not None and not self._stopping:
            ids = offload(journal.started_before, cutoff, PURGE_BATCH)
            if not ids:
                break
            deleted = self._delete(ids, journal)
            if deleted is None:
                return None
            if not deleted:
                break  # nothing the disk named was there to delete: do not ask again for ever
            total += len(deleted)
            let_others_run()
        return total

    def _purge(self, journal: Journal) -> None:
        """Retention: delete calls started before the cutoff, a small batch at a time."""
        if not self.retention_days or self.journal_error is not None or not self.runs_jobs:
            return
        now = time.monotonic()
        if now - self._last_purge < PURGE_INTERVAL:
            return
        self._last_purge = now
        try:
            self._delete_before(time.time() - self.retention_days * 86_400, journal)
        except Exception:  # the next pass tries again; the writer must not die of it
            log.exception("patter-dash: the retention purge failed")

    def _close_stale(self) -> None:
        if not self.call_timeout:
            return
        if not self.shared:
            if self.store.close_stale(time.time() - self.call_timeout):
                self._announce_closed()
            return
        if not self.runs_jobs or self.journal is None or self.journal_error is not None:
            return
        # One process decides; the close is an event of the log (one a call), so every process closes it alike.
        cutoff = time.time() - self.call_timeout
        stale = []
        for call in self.store.least_recent():
            if call.last_event_at >= cutoff or len(stale) >= CLOSE_BATCH:
                break
            stale.append(Event(LOG_CLOSE, call.call_id, {"flag": "stale_timeout"}, None, time.time()))
        if stale:
            self._log(self.journal, stale)

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
        try:
            event = item.event or self._redact(make_event(item.type, item.data, item.key, now=item.received))
            ack = self._apply(event)
        except ValidationError as exc:
            self.counters["rejected"] += 1
            log.debug("rejected event: %s %s", exc.message, exc.details)
            ack = Ack(0, False)
        except Exception:
            self.counters["errors"] += 1
            log.exception("patter-dash failed to apply an event")
            ack = Ack(0, False)
        self._answer(item, ack)

    @staticmethod
    def _answer(item: Pending, ack: Ack) -> None:
        ticket = item.ticket
        if ticket is not None:
            ticket.acks[item.index] = ack
            ticket.remaining -= 1
            if ticket.remaining == 0:
                ticket.done.set()

    def _apply(self, event: Event, *, own: bool = True) -> Ack:
        """Apply and publish one event; ``own=False``: another process's, read from a shared journal."""
        if self.shared:
            # Numbered by the log; past it whatever happens next (a failed event is not read again).
            self._seq = max(self._seq, event.seq)
        if event.key is not None:
            seen = self._seen.get(event.key)
            if seen is not None:
                self.counters["duplicates"] += 1
                return Ack(seen, True)
        if self.shared and not event.seq:  # not written: a repeat of an id within its batch
            self.counters["duplicates"] += 1
            return Ack(0, True)
        if not self.shared:
            event.seq = self._seq + 1
        applied = self.store.apply(event)
        call, changed = applied.call, applied.changed
        if changed and not self.shared:
            self._seq = event.seq  # only now: readers take a gap in ids for a lost event
        if event.key is not None:  # only once applied: a failed event may be retried
            self._seen[event.key] = call.seq
            if self.journal is not None and own:  # the process that took it keeps its id
                self._unwritten_seen.append((event.key, call.seq))
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        if not changed:
            self.counters["duplicates"] += 1
            return Ack(call.seq, True)
        if own:
            self.counters["accepted"] += 1
        if self.shared:
            # Calls closed to make room for this one come first, in its group (the frame with the id ends it).
            self._announce_closed(event.seq)
            self.hub.publish(event.seq, event.type, event.call_id, self._payload(event, applied))
        else:
            self.hub.publish(event.seq, event.type, event.call_id, self._payload(event, applied))
            self._announce_closed()
        for hook in self.on_event:
            hook(event, call)
        return Ack(event.seq, False)

    def announce(self, event_type: str, payload: dict[str, Any], call_id: str = "") -> None:
        """Publish a frame that is not a call event (an alert) on the live stream.

        Event thread only (an ``on_tick`` or ``on_event`` hook): the hub has one writer.
        A shared journal writes it to the log first (by the event thread, once
        this hook's batch is applied): every process publishes it as it reads
        it, under the log's number, and tells :attr:`on_announced`.
        """
        if self.shared:
            self._announcing.append(Event(LOG_ANNOUNCE, call_id, {"type": event_type, "payload": payload}, None, time.time()))
            if len(self._announcing) > ANNOUNCE_HELD:
                log.warning("patter-dash: the log cannot be written; an announcement (%s) is dropped",
                            self._announcing.pop(0).data["type"])
            return
        self._seq += 1
        payload["seq"] = self._seq
        self.hub.publish(self._seq, event_type, call_id, payload)

    def _announce_closed(self, group: int | None = None, *, last_has_id: bool = False) -> None:
        """Publish the calls closed without a call_end; ``group``: a shared journal's number they share."""
        closed_calls = self.store.take_closed()
        for n, closed in enumerate(closed_calls, 1):
            # A live call closed without its call_end (room, timeout) ends on every
            # open page as if its status said so.
            if group is None:
                self._seq = closed.seq = self._seq + 1
                seq = self._seq
            else:
                seq = closed.seq = group
            payload = {"seq": seq, "type": "call_status", "call_id": closed.call_id,
                       "call": records.summary(closed, time.time(), with_metrics=False)}
            self.hub.publish(seq, "call_status", closed.call_id, payload,
                             with_id=group is None or (last_has_id and n == len(closed_calls)))

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
        status = "ok" if self.running else "starting"
        if self.journal_error is not None:
            status = "degraded"
        return {
            "status": status,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "pid": os.getpid(),
            "queue": {"depth": len(self._queue), "capacity": self.queue_size},
            "events": {**self.counters, "last_seq": self._seq},
            "store": self.store.sizes(),
            "subscribers": {"count": self.hub.subscriber_count, "max": self.hub.max_subscribers, "overflows": self.hub.overflows},
            "history": self._history_view(),
        }

    def _history_view(self) -> dict[str, Any]:
        """Where history is kept and how it is doing (health and the UI header)."""
        journal = self.journal
        if journal is None:
            return {"mode": "memory", "calls": self.store.aggregates.total.calls}
        return {
            "mode": journal.engine,
            "path": journal.path,
            "bytes": journal.bytes_on_disk(),
            "calls": self.store.aggregates.total.calls,
            "status": "ok" if self.journal_error is None else "degraded",
            "error": self.journal_error,
            # Events fed but not yet on disk (queued, or held while the journal cannot write).
            "lag": len(self._queue),
            **self.journal_stats,
            **({"database": "ok" if self.journal_error is None else "unreachable", "log": self.log_view()} if self.shared else {}),
        }


def _counted(call: records.Call) -> tuple[Any, ...]:
    """What a finished call adds to analytics, as the journal stores it beside the call."""
    duration_ms, cost, latency = contribution(call)
    latency_us = min(round(latency * 1000), MAX_PER_CALL) if latency is not None and latency > 0 else None
    return (
        duration_ms, *cost, latency, int(call.started_at // HOUR) * HOUR,
        latency_us, latency_bin(latency) if latency_us is not None else None,
    )

