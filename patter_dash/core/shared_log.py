"""The shared log: what a pipeline does when several processes share its journal (PostgreSQL).

The journal is then one ordered log. Each process's event thread follows it
(:meth:`SharedLog._follow`, woken by the journal's ``LISTEN`` thread and at
least once a second), applying what other processes wrote to its own store
in the log's order, under the log's numbers: the same numbers are every
process's SSE ids. Deletions, the stale-call rule's closes and announced
frames (alerts) are rows of the log too (:meth:`SharedLog._log`), so every
process applies them alike; the once-only jobs run in the process holding
the journal's jobs lock (:meth:`SharedLog._check_jobs`).

:class:`SharedLog` is a part of :class:`~patter_dash.core.pipeline.Pipeline`
(its base class), kept apart so that the single-process path reads without
it; its methods run on the event thread and use the pipeline's state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..journal import LOG_ANNOUNCE, LOG_CLOSE, LOG_DELETE, Journal, JournalUnavailable
from ..model import records
from ..model.events import EVENT_TYPES, Event
from ..model.views import CALL_DELETED
from .cooperative import Slices, offload
from .store import CallStore

log = logging.getLogger("patter_dash")

#: Seconds between two reads of the log when no notification came (one may be missed).
FOLLOW_INTERVAL = 1.0
#: Completion numbers an event's log number leaves room for (calls one event closes; see CallStore.done_scale).
DONE_SCALE = 1_000
#: How far past its own head a resuming reader's Last-Event-ID may be (another process served it; this
#: one gets there within a moment) before it is taken for a stranger's.
AHEAD_ALLOWED = 10_000_000
#: Announcements held while the database is out, at most (then the oldest go).
ANNOUNCE_HELD = 10_000
#: What the log holds: call events, and the deletions, closes and announcements every process applies.
LOGGED_TYPES = frozenset((*EVENT_TYPES, LOG_DELETE, LOG_CLOSE, LOG_ANNOUNCE))
#: What a starting process replays of the log's unfolded rows (an announcement's state comes with on_restore).
REPLAYED_TYPES = LOGGED_TYPES - {LOG_ANNOUNCE}


class SharedLog:
    """Following the shared log, and writing the operations every process applies (see the module)."""

    def _notified(self, number: int) -> None:
        """The LISTEN thread: a commit (``number``: its highest event) or a (re)connection (0). Any thread."""
        if number > self._log_tip:
            self._log_tip = number
        self._log_notified = True
        if self._wakeup is not None:
            self._wakeup.send()

    def _check_jobs(self, journal: Journal) -> None:
        """Take (or keep) the jobs lock if it is free; about once a second."""
        try:
            held = offload(journal.runs_jobs)  # type: ignore[attr-defined]
        except Exception:  # a lost database: not the jobs' process until it is back
            log.exception("patter-dash: could not look at the jobs lock")
            held = False
        if held != self.runs_jobs:
            log.info("patter-dash: this process %s the jobs (retention, stale calls, alerts)",
                     "now runs" if held else "no longer runs")
            self._last_purge = 0.0
        self.runs_jobs = held

    def _follow(self, journal: Journal) -> None:
        """Read what other processes wrote past this process's position and apply it, in order."""
        self._log_notified = False
        self._followed_at = time.monotonic()
        while not self._stopping:
            try:
                events, trimmed = offload(journal.tail, self._seq)  # type: ignore[attr-defined]
            except JournalUnavailable as exc:
                # The database is gone for this process's writes too: health says so and ingest answers 503
                # now, not at its first commit; the writer's retries find it back.
                self._journal_failed(exc)
                return
            if trimmed > self._seq and (not events or events[0].seq > self._seq + 1):
                self._reload(journal, trimmed)
                return
            if not events:
                break
            store = self.store
            ids = {e.call_id for e in events if e.call_id}
            cold = [i for i in ids if i not in store.completed and i not in store.active]
            if cold:
                try:
                    for call in offload(journal.load_many, cold):
                        if self._counted_here(call):
                            store.adopt_cold(call)
                except JournalUnavailable as exc:
                    self._journal_failed(exc)
                    return
            store.pin(ids)
            slices = Slices()
            for event in events:
                self._apply_logged(event)
                if slices.pause_if_due():
                    self._maybe_freeze()
            store.release()
            self._log_tip = max(self._log_tip, self._seq)
            if len(events) < 2_000:
                break
        self._behind_since = None if self._log_tip <= self._seq else (self._behind_since or time.monotonic())

    def _counted_here(self, call: records.Call) -> bool:
        """Whether a finished call read back from disk is one this process counted (it applied its end).

        Shared: another process may have written the call whole before this one
        read its events; taken back then, it would never be counted here. Its
        completion number says which event finished it: one past this process's
        position is left for the events to build, as every process does.
        """
        return not self.shared or call.done // DONE_SCALE <= self._seq

    def _apply_logged(self, event: Event) -> list[str] | None:
        """Apply one event read from the shared log (another process's, or this one's operation); once, in order."""
        if event.seq <= self._seq:
            self.follow_stats["skipped"] += 1
            return None
        self.follow_stats["followed"] += 1
        if event.type not in LOGGED_TYPES:  # never wedges the follower: counted, logged with its number, passed
            self._seq = event.seq
            self.counters["errors"] += 1
            log.warning("patter-dash: event %d of the log is of no type this release reads (%.40r): skipped",
                        event.seq, event.type)
            return None
        if event.type == LOG_DELETE:
            self._seq = event.seq
            return self._forget_logged(event)
        if event.type == LOG_CLOSE:
            self._seq = event.seq
            if self.store.close_logged(event.call_id, event.seq):
                self._announce_closed(event.seq, last_has_id=True)
            return None
        if event.type == LOG_ANNOUNCE:
            self._seq = event.seq
            self._announced(event)
            return None
        held = self.store.get(event.call_id)
        if held is not None and held.seq >= event.seq:  # read back from disk already holding it
            self._seq = event.seq
            return None
        try:
            self._apply(event, own=False)
        except Exception:  # never wedges the follower: counted, logged with its number, passed
            self.counters["errors"] += 1
            log.exception("patter-dash: event %d of the log could not be applied (skipped)", event.seq)
        return None

    def _forget_logged(self, event: Event) -> list[str]:
        """A deletion read from the log: out of memory and totals here (the journal did the disk)."""
        store = self.store
        deleted = []
        for call_id in event.data.get("call_ids") or ():
            if store.delete(call_id, self._unwritten.pop(call_id, None)) is not None:
                deleted.append(call_id)
        for row in event.data.get("rows") or ():
            call_id, started_at, status, duration_ms, *cost = row
            if call_id not in deleted:
                store.uncount(started_at, status, (duration_ms, cost[:5], cost[5]))
                deleted.append(call_id)
        if deleted:
            self.deletions += 1
            self.hub.publish(event.seq, CALL_DELETED, deleted[0] if len(deleted) == 1 else "",
                             {"seq": event.seq, "type": CALL_DELETED, "call_ids": deleted}, deleted)
        return deleted

    def _reload(self, journal: Journal, trimmed: int) -> None:
        """Fallen behind what the log keeps: load the memory window again from the calls (readers get a reset)."""
        log.warning("patter-dash: this process fell behind the log (at %d, trimmed to %d): reloading history",
                    self._seq, trimmed)
        self.follow_stats["reloads"] += 1
        self.store = CallStore(**self._store_options)
        self.store.make_lock()
        self._unwritten.clear()
        self._restore(journal)

    def _write_announced(self, journal: Journal) -> None:
        """Write the held announcements to the log as one transaction; each is published as it is applied."""
        held, self._announcing = self._announcing, []
        if self._log(journal, held) is None:
            self._announcing[:0] = held  # kept in order for the next try (the database is out)

    def _log(self, journal: Journal, events: list[Event]) -> list[list[str] | None] | None:
        """Write operations of the shared log (closes, deletions, announcements), then apply each here.

        What applying each answered (a deletion: the calls it removed); None when the log could not be written.
        """
        try:
            self._commit(journal, self._batch(events), [])
        except JournalUnavailable:
            return None
        return [self._apply_logged(event) for event in events]

    def _announced(self, event: Event) -> None:
        """An announcement read from the log: told to :attr:`on_announced`, then published under its number."""
        kind, payload = event.data.get("type"), event.data.get("payload")
        if not isinstance(kind, str) or not isinstance(payload, dict):
            self.counters["errors"] += 1
            log.warning("patter-dash: announcement %d of the log has no type or payload (skipped)", event.seq)
            return
        for hook in self.on_announced:
            try:
                hook(kind, dict(payload))
            except Exception:  # an observer's bug must not stop the follower
                log.exception("patter-dash: a hook failed on announcement %d", event.seq)
        self.hub.publish(event.seq, kind, event.call_id, {**payload, "seq": event.seq})

    def log_view(self) -> dict[str, Any]:
        """A shared journal: where this process is in the log, how far behind, and whether it runs the jobs."""
        behind = max(0, self._log_tip - self._seq)
        since = self._behind_since
        return {
            "position": self._seq,
            "written": max(self._log_tip, self._seq),
            "behind": behind,
            "behind_seconds": round(time.monotonic() - since, 3) if behind and since is not None else 0.0,
            "runs_jobs": self.runs_jobs,
            **self.follow_stats,
        }
