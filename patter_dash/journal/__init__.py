"""Journal: where accepted events and finished calls are kept (one interface, engines beside it).

The pipeline hands the journal one :class:`Batch` per drained queue and acks
the events in it only once :meth:`commit` has returned; a starting process
reads back a :class:`Restored`. Engines: :mod:`.sqlite` (the embedded
default) and :mod:`.postgres` (``PATTER_DASH_DB=postgresql://...``). Every call blocks; the pipeline runs them off the gevent loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..config import ConfigError
from ..model.events import Event
from ..model.records import Call


def wait_on_this_thread(seconds: float) -> None:
    """Sleep the calling OS thread, also under gevent.

    Journals open on a native thread (the pipeline's offload), where gevent's
    patched ``time.sleep`` builds a hub of its own and may fail outright
    (``BlockingSwitchOutError``): a worker waiting there for the one a HUP
    replaces then failed to boot.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("time"):
        monkey.get_original("time", "sleep")(seconds)
    else:
        time.sleep(seconds)


def summed(rows: Iterable[Any]) -> list[tuple[Any, ...]]:
    """Rows of (two group columns, count, sums...) with whole-number sums.

    The engines sum in floats (SQLite's ``total()``) or decimals
    (PostgreSQL's ``sum()``): a sum of 64-bit integer columns past their
    range must not fail a restart (hostile costs once took it there).
    """
    return [(*row[:3], *(int(v) for v in row[3:])) for row in rows]


class JournalError(ConfigError):
    """The database cannot be used at all (corrupt, too new, someone else's, locked): refuse to start."""


class JournalUnavailable(Exception):
    """A write failed for now (disk full, read-only): nothing of the batch was kept; retry later."""


@dataclass(slots=True)
class Batch:
    """One transaction's worth of work."""

    #: Accepted events, to be acknowledged once committed.
    events: list[Event] = field(default_factory=list)
    #: Calls whose state is written whole (completed, or changed after): (call, completion number,
    #: what it adds to analytics: duration ms, 5 cost components in nano-units, latency ms or None,
    #: its UTC hour, latency µs and histogram bin or None).
    snapshots: list[tuple[Call, int, tuple[Any, ...]]] = field(default_factory=list)
    #: (event id, seq) pairs applied since the last batch.
    seen: list[tuple[str, int]] = field(default_factory=list)
    last_seq: int = 0
    #: Rows of the info table to set (a None value deletes the row): small facts such as a follower's cursor.
    info: dict[str, Any] = field(default_factory=dict)
    #: A shared journal (PostgreSQL): the last journal sequence number this process applied. The
    #: snapshots describe the calls as of it; the commit sets each written event's ``seq`` to its
    #: number and fills :attr:`before` with what other processes wrote after it, ahead of these.
    after: int | None = None
    before: list[Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.snapshots or self.seen or self.info)


class Restored(NamedTuple):
    #: Every stored call summed per (hour, status): count, duration ms, 5 cost components.
    hours: list[tuple[Any, ...]]
    #: Every stored call's latency summed per (hour, histogram bin): count, µs.
    latencies: list[tuple[Any, ...]]
    #: The newest calls whole, oldest first (the memory window).
    calls: list[Call]
    #: Events not yet folded into a snapshot, in arrival order (live calls, mostly).
    events: list[Event]
    #: Recent (event id, seq) pairs, oldest first.
    seen: list[tuple[str, int]]
    last_seq: int
    #: The highest completion number written.
    done: int
    #: A shared journal: the sequence number the rest of this history is as of (follow from there).
    log_seq: int = 0
    #: A shared journal: the stored calls those events name, read with the sums. Another process may
    #: write one whole meanwhile; read later, it would pass for counted in sums that never held it.
    named: list[Call] | None = None


class Filter(Protocol):
    """The history filters a read from disk applies (``core.store.CallFilter`` is one)."""

    status: str | None
    direction: str | None
    start: float | None  # started_at >= start
    end: float | None  # started_at < end
    query: str | None  # model/search.py's language: every term inside the id, caller, callee or one transcript line
    provider_mode: str | None
    tag: str | None  # one of the call's tags, exactly
    has_notes: bool | None  # whether the call's notes are non-empty
    provider: str | None  # one of the call's providers, exactly
    model: str | None  # one of the call's models, exactly

    def bounds(self) -> list[tuple[str, float | None, float | None]]: ...  # (column, lowest, highest), both included


#: Event types of a shared journal's log that are not call events: a deletion (its rows, for every
#: process's totals), the close of silent live calls (the stale-call rule, decided by one process) and
#: a frame announced on every process's live stream (an alert's firing or resolution).
LOG_DELETE = "__delete__"
LOG_CLOSE = "__close__"
LOG_ANNOUNCE = "__announce__"
#: The type a reader gives a log row it cannot decode (written by something else, or damaged).
UNREADABLE = "__unreadable__"


class Outbox(Protocol):
    """The ``alert_outbox`` rows of a history: notifications not yet delivered (ops/outbox.py).

    Its own connection; every call blocks (through offload) and a failure is :class:`JournalUnavailable`.
    """

    def sync(self, destination: str, add: list[tuple[str, bytes]], remove: list[int]) -> list[int]: ...
    def pending(self, destination: str) -> list[tuple[int, str, bytes]]: ...
    def close(self) -> None: ...


class Journal(Protocol):
    engine: str
    path: str
    #: Whether several processes share it (each follows the others' events): PostgreSQL.
    shared: bool
    #: Written calls not yet in ``q``'s index (SQLite fills it in batches, :meth:`index_pending`; else 0).
    unindexed: int

    def check(self) -> None: ...
    def open(self) -> None: ...
    def close(self) -> None: ...
    def commit(self, batch: Batch) -> None: ...
    def index_pending(self, limit: int) -> int: ...
    def checkpoint(self) -> None: ...
    def restore(self, keep: int) -> Restored: ...
    def load(self, call_id: str) -> Call | None: ...
    def load_many(self, call_ids: Iterable[str]) -> list[Call]: ...
    def forget(self, call_ids: list[str]) -> list[tuple[Any, ...]]: ...
    def started_before(self, cutoff: float, limit: int) -> list[str]: ...
    def numbers_between(self, lo: float, hi: float) -> list[tuple[Any, ...]]: ...
    def bytes_on_disk(self) -> int: ...
    def page(
        self, flt: Filter, below: int, skip: Iterable[int], limit: int, offset: int = 0, *,
        count: bool = False, max_bytes: int | None = None,
    ) -> tuple[list[Call], int | None]: ...
    def by_start(
        self, flt: Filter, below: int, skip: Iterable[int], limit: int, after: tuple[float, int] | None = None
    ) -> list[tuple[float, int]]: ...
    def load_done(self, marks: list[int]) -> dict[int, Call]: ...
    def backup(self, target: str) -> None: ...
    def secret(self, name: str) -> bytes: ...
    def info(self, prefix: str) -> dict[str, Any]: ...  # the info rows whose name starts with prefix
    def outbox(self) -> Outbox: ...


def is_postgres_url(value: str | None) -> bool:
    """Whether ``PATTER_DASH_DB`` names a PostgreSQL database rather than an SQLite file."""
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def open_journal(path: str | None, *, sync: str = "normal") -> Journal | None:
    """The journal for ``PATTER_DASH_DB`` (None or ``:memory:``: none, memory only; ``postgresql://``: PostgreSQL)."""
    if not path or path == ":memory:":
        return None
    if is_postgres_url(path):
        try:
            from .postgres import PostgresJournal
        except ImportError as exc:
            raise JournalError(
                f"PATTER_DASH_DB names a PostgreSQL database, but its driver is missing ({exc}): "
                "pip install 'patter-dash[postgres]'"
            ) from None
        return PostgresJournal(path, sync=sync)
    from .sqlite import SQLiteJournal

    return SQLiteJournal(path, sync=sync)
