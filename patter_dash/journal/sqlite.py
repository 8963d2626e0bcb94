"""SQLite journal: the embedded default (one file, WAL mode, no server to run).

Tables: ``events`` holds every accepted event of a call whose state is not
yet written whole; ``calls`` holds each completed call's state (snapshot) and
the numbers analytics sum; ``seen`` the recent event ids for de-duplication;
``info`` small facts (last sequence number). A call's events are deleted in
the transaction that writes its snapshot, so the events table stays the size
of what is live. Every method blocks (file I/O, fsync): the pipeline calls
them off the gevent loop, from one thread at a time.

``synchronous=NORMAL`` in WAL mode: a committed transaction survives the
process being killed (the OS holds it); a power loss can undo the last
transactions but never corrupts the file. ``PATTER_DASH_DB_SYNC=full`` makes
each commit wait for the disk as well.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..model import quality, search
from ..model.records import Call
from . import Batch, Filter, JournalError, JournalUnavailable, Restored, summed, wait_on_this_thread
from .codec import freeze, pack_event, thaw, unpack_event

#: Schema versions in order; each entry migrates from the one before (index + 1 = version).
MIGRATIONS: tuple[str, ...] = (
    # 1: the first release of the durable store
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        call_id TEXT NOT NULL,
        type TEXT NOT NULL,
        key TEXT,
        received_at REAL NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX events_by_call ON events (call_id);
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        done INTEGER NOT NULL,
        started_at REAL NOT NULL,
        status TEXT NOT NULL,
        direction TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        provider_mode TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        cost_stt INTEGER NOT NULL,
        cost_tts INTEGER NOT NULL,
        cost_llm INTEGER NOT NULL,
        cost_telephony INTEGER NOT NULL,
        cost_total INTEGER NOT NULL,
        latency_ms REAL,
        hour INTEGER NOT NULL,
        latency_us INTEGER,
        latency_bin INTEGER,
        state BLOB NOT NULL
    );
    CREATE UNIQUE INDEX calls_by_done ON calls (done);
    CREATE TABLE seen (key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE info (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
    """,
    # 2: date-range reads and the retention purge go by call start; history read from disk
    # (filters from one narrow index, in completion order; ``q`` in a lowercase text column);
    # completion order is an order, not a key (INSERT OR REPLACE must never drop another
    # call over a repeated number)
    """
    DROP INDEX calls_by_done;
    CREATE INDEX calls_by_done ON calls (done);
    CREATE INDEX calls_by_start ON calls (started_at);
    CREATE INDEX seen_by_seq ON seen (seq);
    CREATE INDEX calls_by_filter ON calls (done, status, direction, provider_mode, started_at);
    ALTER TABLE calls ADD COLUMN search BLOB;
    """,
    # 3: alert notifications not yet delivered (ops/outbox.py), sent again after a restart
    """
    CREATE TABLE IF NOT EXISTS alert_outbox (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        letter_id TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 4: an operator's annotations, for the history filters (tag, has_notes); the state blob holds them whole.
    # No fill: no call written before this release has any.
    """
    ALTER TABLE calls ADD COLUMN tags TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN has_notes INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the providers and models a call names, for the provider and model filters (filled from the state blobs)
    """
    ALTER TABLE calls ADD COLUMN labels TEXT NOT NULL DEFAULT '';
    """,
    # 6: ``q`` over the whole history from an index. ``search`` becomes text (folded by model/search.py,
    # fields one a line) and an FTS5 trigram index over it keyed by the row's rowid, its content read from
    # ``calls`` (stored once). Trigrams, not words: ``q`` finds any part of a word or number (``+1555``,
    # ``CA-12``), as memory's substring test does; the index folds nothing itself (``case_sensitive 1``):
    # both paths compare text folded by the same Python. Triggers keep it in the transaction that writes
    # ``calls``: an insert adds the row, a delete (forget, purge, and INSERT OR REPLACE's delete of the old
    # snapshot, with recursive_triggers on) takes it out with the text it was indexed with.
    """
    CREATE VIRTUAL TABLE calls_fts USING fts5(
        search, content='calls', content_rowid='rowid', tokenize='trigram case_sensitive 1'
    );
    CREATE TRIGGER calls_fts_insert AFTER INSERT ON calls BEGIN
        INSERT INTO calls_fts (rowid, search) VALUES (new.rowid, new.search);
    END;
    CREATE TRIGGER calls_fts_delete AFTER DELETE ON calls BEGIN
        INSERT INTO calls_fts (calls_fts, rowid, search) VALUES ('delete', old.rowid, old.search);
    END
    """,
    # 7: conversation quality (model/quality.py), for its range filters (filled from the state blobs)
    """
    ALTER TABLE calls ADD COLUMN interruptions INTEGER;
    ALTER TABLE calls ADD COLUMN dead_air_ms INTEGER;
    ALTER TABLE calls ADD COLUMN talk_over_ms INTEGER;
    ALTER TABLE calls ADD COLUMN tool_failures INTEGER;
    """,
    # 8: the index keyed by completion number (``done``), not by the row: history's order is the index's own,
    # so ``q`` reads a common word's newest matches first and stops at the page (and counts from the index
    # alone) instead of collecting every match to sort it. Contentless: the text is ``calls.search``, which
    # the delete trigger hands back to take a row's entry out.
    """
    DROP TRIGGER calls_fts_insert;
    DROP TRIGGER calls_fts_delete;
    DROP TABLE calls_fts;
    CREATE VIRTUAL TABLE calls_fts USING fts5(search, content='', tokenize='trigram case_sensitive 1');
    CREATE TRIGGER calls_fts_insert AFTER INSERT ON calls BEGIN
        INSERT INTO calls_fts (rowid, search) VALUES (new.done, new.search);
    END;
    CREATE TRIGGER calls_fts_delete AFTER DELETE ON calls BEGIN
        INSERT INTO calls_fts (calls_fts, rowid, search) VALUES ('delete', old.done, old.search);
    END;
    INSERT INTO calls_fts (rowid, search) SELECT done, search FROM calls WHERE search IS NOT NULL;
    """,
    # 9: the index is filled in batches, not in the commit an acknowledgement waits for: a call's trigrams
    # took ~1 ms in a transaction of its own (~0.3 ms a call a hundred at a time), half of what one event a
    # request cost with the journal on. A written call waits in ``fts_pending`` until :meth:`index_pending`
    # adds it; reads match the waiting ones on their text (``instr``, as for short terms). The delete
    # trigger takes out of the index only what is in it. (IF NOT EXISTS and emptied: a file set back a few
    # versions by hand, as the quality test does, runs 8 again, which indexes every call.)
    """
    CREATE TABLE IF NOT EXISTS fts_pending (done INTEGER PRIMARY KEY);
    DELETE FROM fts_pending;
    DROP TRIGGER calls_fts_insert;
    DROP TRIGGER calls_fts_delete;
    CREATE TRIGGER calls_fts_insert AFTER INSERT ON calls BEGIN
        INSERT OR IGNORE INTO fts_pending (done) VALUES (new.done);
    END;
    CREATE TRIGGER calls_fts_delete AFTER DELETE ON calls BEGIN
        INSERT INTO calls_fts (calls_fts, rowid, search)
            SELECT 'delete', old.done, old.search WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE done = old.done);
        DELETE FROM fts_pending WHERE done = old.done;
    END;
    """,
)
#: Python steps of a migration, by the version they complete (what SQL alone cannot compute).
_FILLS: dict[int, Any] = {}
SCHEMA_VERSION = len(MIGRATIONS)
#: Written in ``PRAGMA application_id``: tells our file from any other SQLite database.
APPLICATION_ID = 0x50445348  # "PDSH"
#: Between a call's tags in the ``tags`` column (and around them): a tag is matched whole as ``\x1f<tag>\x1f``.
#: No tag holds it (model/annotations.py refuses control characters).
TAG_SEPARATOR = "\x1f"
#: Event ids kept for de-duplication across restarts (as many as memory keeps).
SEEN_KEPT = 100_000
#: The WAL's size past which a checkpoint rewinds it to its start, and what it is cut back to then. Under
#: steady ingest a passive checkpoint never catches up with the writer, and SQLite only rewinds a WAL
#: that one did: without this it grew ~7 MB a second under single-event ingest, until the next quiet moment.
WAL_LIMIT = 32 << 20
_NUMBER_COLUMNS = "duration_ms, cost_stt, cost_tts, cost_llm, cost_telephony, cost_total, latency_ms"
_COST_SUMS = "total(duration_ms), total(cost_stt), total(cost_tts), total(cost_llm), total(cost_telephony), total(cost_total)"


def _unavailable(path: str, exc: BaseException) -> JournalUnavailable:
    message = str(exc)
    if "full" in message or getattr(exc, "errno", None) == errno.ENOSPC:
        reason = f"the disk holding {path} is full"
    elif "readonly" in message or "read-only" in message or getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES):
        reason = _read_only_reason(path) or f"{path} is read-only"
    else:
        reason = f"cannot write {path}: {message}"
    return JournalUnavailable(reason)


def _file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_read_only(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
    return getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)


def _read_only_reason(path: str) -> str | None:
    """Why ``path`` cannot be written, in the operator's terms (None: it looks writable)."""
    directory = os.path.dirname(path) or "."
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
    except OSError:
        pass
    for name in (path, f"{path}-wal", f"{path}-shm"):  # SQLite makes the last two with the first one's mode
        if os.path.exists(name) and not os.access(name, os.W_OK):
            return f"{name} is read-only (no write permission)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{path} is read-only: its directory {directory} cannot be written (SQLite needs to create {os.path.basename(path)}-wal there)"
    return None


class SQLiteOutbox:
    """The ``alert_outbox`` rows of one history file (the :class:`~patter_dash.journal.Outbox` of SQLite)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # native threads of the offload pool share the connection

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            # As the journal's own connection: WAL, and no fsync per transaction (the OS keeps a
            # committed row through a killed process); a per-notification fsync would stall the
            # journal's writer behind this connection's lock.
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    def sync(self, destination: str, add: list[tuple[str, bytes]], remove: list[int]) -> list[int]:
        """One transaction: delete ``remove`` rows, insert ``add`` (letter id, body); the new rows' ids."""
        with self._lock, _outbox_errors(self.path):
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                if remove:
                    db.executemany("DELETE FROM alert_outbox WHERE id = ?", [(row,) for row in remove])
                rows = []
                now = time.time()
                for letter_id, body in add:
                    cur = db.execute("INSERT INTO alert_outbox (destination, letter_id, body, created_at) VALUES (?, ?, ?, ?)",
                                     (destination, letter_id, body, now))
                    rows.append(int(cur.lastrowid or 0))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return rows

    def pending(self, destination: str) -> list[tuple[int, str, bytes]]:
        with self._lock, _outbox_errors(self.path):
            return self._conn().execute(
                "SELECT id, letter_id, body FROM alert_outbox WHERE destination = ? ORDER BY id", (destination,)
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None



@contextmanager
def _outbox_errors(path: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise JournalUnavailable(f"cannot use the alert outbox of {path}: {exc}") from None


class SQLiteJournal:
    """The journal in one SQLite file (``PATTER_DASH_DB``)."""

    engine = "sqlite"
    shared = False

    def __init__(self, path: str, *, sync: str = "normal") -> None:
        self.path = str(Path(path).expanduser())
        self.sync = sync
        self._db: sqlite3.Connection | None = None
        self._lock_file: Any = None
        #: Pooled read-only connections, each with the generation it was opened in.
        self._readers: list[tuple[int, sqlite3.Connection]] = []
        self._generation = 0
        self._seen_written = 0
        #: Written calls not yet in ``q``'s index (see :meth:`index_pending`), as this process counts them.
        self.unindexed = 0
        self._count_lock = threading.Lock()
        self.wal_limit = WAL_LIMIT
        self._rewind_due = False
        #: (device, inode) of the file and WAL the writer has open; why writing stopped if either changed.
        self._file: tuple[int, int] | None = None
        self._wal_id: tuple[int, int] | None = None
        self._replaced: str | None = None

    # ------------------------------------------------------------ lifecycle

    def check(self) -> None:
        """Open, refuse what is not ours or too new, migrate forward, close.

        Run where the app is made (before any fork), so a bad file stops the
        server at once with a message naming the file. A file that cannot be
        written (read-only file or file system) is checked read-only: the
        server then starts degraded, serving the history and refusing ingest.
        """
        try:
            db = self._connect()
        except JournalUnavailable as exc:
            db = self._connect_read_only()
            try:
                if self._inspect(db) != SCHEMA_VERSION:
                    raise JournalError(
                        f"{self.path} must be upgraded to schema {SCHEMA_VERSION} but cannot be written ({exc}). "
                        "Make it writable for one start, or point PATTER_DASH_DB at another file."
                    ) from None
            finally:
                db.close()
            return
        try:
            self._migrate(db)
        finally:
            db.close()

    def open(self) -> None:
        """Take the file for this process (one writer per file) and open it for writing.

        A file that cannot be written now is left to read-only connections:
        :meth:`commit` raises :class:`JournalUnavailable` and tries to open it
        for writing again on every call, so writing resumes by itself.
        """
        self._lock()
        try:
            db = self._connect()
        except JournalUnavailable:
            return
        self._migrate(db)
        self._db = db
        self._opened()
        self.unindexed = int(db.execute("SELECT count(*) FROM fts_pending").fetchone()[0])

    def close(self) -> None:
        readers, self._readers = self._readers, []
        for _, reader in readers:
            reader.close()
        if self._db is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _connect(self) -> sqlite3.Connection:
        """A connection for writing, in WAL mode; a file that is not ours is refused before anything in it changes.

        Raises :class:`JournalError` for a file that must not be used (corrupt,
        foreign, newer), :class:`JournalUnavailable` for one that cannot be
        written now.
        """
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the database {self.path}: {_read_only_reason(self.path) or exc}") from None
        try:
            # Before journal_mode: switching a foreign or newer file to WAL would rewrite its header.
            self._inspect(db)
            db.execute("PRAGMA journal_mode=WAL").fetchone()
            db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
            db.execute("PRAGMA foreign_keys=OFF")
            # INSERT OR REPLACE deletes the old snapshot's row: its search index entry goes with it only when
            # that delete fires the delete trigger (schema 6).
            db.execute("PRAGMA recursive_triggers=ON")
            # Commits never copy the WAL into the file themselves (with its fsync, ~10 ms every
            # thousand pages, on some acknowledgement's path): :meth:`checkpoint` does, beside them.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={self.wal_limit}")
        except JournalError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            # A WAL file on a read-only file system or directory cannot even be read
            # this way (SQLite cannot create its index): not damage, only no writing.
            reason = _read_only_reason(self.path)
            if reason is not None:
                raise JournalUnavailable(reason) from None
            raise self._unreadable(exc) from None
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection, also where SQLite cannot create the WAL index (read-only file system or directory).

        There nothing can write the file, so it is opened as immutable.
        """
        uri = "file:" + quote(Path(self.path).resolve().as_posix())
        error: sqlite3.DatabaseError | None = None
        for options in ("?mode=ro", "?mode=ro&immutable=1"):
            db = sqlite3.connect(uri + options, uri=True, check_same_thread=False, timeout=5.0)
            try:
                db.execute("PRAGMA schema_version").fetchone()
                return db
            except sqlite3.DatabaseError as exc:
                db.close()
                error = exc
        assert error is not None
        raise self._unreadable(error)

    def _unreadable(self, exc: BaseException) -> JournalError:
        return JournalError(
            f"{self.path} is not a readable patter-dash database ({exc}). It was left untouched: "
            "restore a backup (patter-dash backup) over it, or move it aside to start a new history."
        )

    def _inspect(self, db: sqlite3.Connection) -> int:
        """The file's schema version; refuse one written by a newer release or by another application."""
        version = db.execute("PRAGMA user_version").fetchone()[0]
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by a newer patter-dash (schema {version}; this release reads up to "
                f"{SCHEMA_VERSION}). It was left untouched: upgrade patter-dash, or point PATTER_DASH_DB at another file."
            )
        if tables and app_id != APPLICATION_ID:
            raise JournalError(
                f"{self.path} is an SQLite database of another application; patter-dash will not write into it "
                "and left it untouched. Point PATTER_DASH_DB at a new file."
            )
        return int(version)

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = self._inspect(db)
        if version == SCHEMA_VERSION:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            for reached, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                if reached in _FILLS:
                    _FILLS[reached](db)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.execute("ROLLBACK") if db.in_transaction else None
            raise JournalError(f"cannot upgrade {self.path} to schema {SCHEMA_VERSION}: {exc}") from None

    def _writer(self) -> sqlite3.Connection:
        """The connection for writing, opened again if the file could not be written before."""
        if self._db is not None:
            return self._db
        try:
            if self._lock_file is None:
                self._lock()
            db = self._connect()
            try:
                self._migrate(db)
            except JournalError:
                db.close()
                raise
        except JournalError as exc:
            raise JournalUnavailable(str(exc)) from None
        self._db = db
        self._opened()
        # Readers opened while the file was read-only may be immutable: they would not see new writes.
        self._generation += 1
        readers, self._readers = self._readers, []
        for _, reader in readers:
            reader.close()
        return db

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the file, on a connection of its own.

        PASSIVE: it neither waits for nor blocks the writer or readers, so it
        runs on a background thread while commits go on. Past :attr:`wal_limit`
        it asks the writer to rewind the WAL after its next commit
        (:meth:`_rewind`). Its connection is its own and closed here: nothing
        is shared with :meth:`close`.
        """
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            try:
                _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames * db.execute("PRAGMA page_size").fetchone()[0] > self.wal_limit:
                    self._rewind_due = True
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(self.path, exc) from None

    def _lost_writer(self, exc: BaseException) -> None:
        """After a read-only error, open the file anew next time: this connection may have been opened read-only."""
        if self._db is not None and _is_read_only(exc):
            self._db.close()
            self._db = None

    def _lock(self) -> None:
        """One process writes a file: a second server on it is refused, a restarting worker waits.

        gunicorn replaces a worker (HUP, a new release) by starting the new
        one before the old one has finished; both are children of one
        master, so the new one waits for the file. Any other holder is
        another server: refused with its process id.
        """
        try:
            handle = open(self.path + ".lock", "a+")
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise JournalError(f"cannot create the lock file {self.path}.lock: {exc}") from None
            try:
                handle = open(self.path + ".lock")  # flock needs no write access
            except OSError:
                return  # none exists and none can be made: no server can write this file either
        deadline = time.monotonic() + 30.0
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().split()
                sibling = len(holder) == 2 and holder[1] == str(os.getppid()) and os.getppid() != 1
                if not sibling or time.monotonic() > deadline:
                    handle.close()
                    who = f"process {holder[0]}" if holder else "another process"
                    raise JournalError(
                        f"{self.path} is in use by another patter-dash server ({who}). One server writes one "
                        "database: stop the other, or give this one its own PATTER_DASH_DB."
                    ) from None
                wait_on_this_thread(0.1)
        if handle.writable():
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {os.getppid()}\n")
            handle.flush()
        self._lock_file = handle

    # --------------------------------------------------------------- writing

    def commit(self, batch: Batch) -> None:
        """Write one batch in one transaction; raise :class:`JournalUnavailable` if it cannot be."""
        with self._transaction() as db:
            self._write(db, batch)
        if self._wal_id is None:  # made by the first write
            self._wal_id = _file_id(self.path + "-wal")
        if self._rewind_due:
            self._rewind(db)
        with self._count_lock:  # index_pending sets it from another thread
            self.unindexed += len(batch.snapshots)

    def _opened(self) -> None:
        """Note which file the writer has open (and, once written, which WAL): see :meth:`_check_files`."""
        self._file = _file_id(self.path)
        self._wal_id = None

    def _check_files(self) -> None:
        """Refuse to write once the file or its WAL at the path is not the one open.

        Removed or replaced while the server ran (``rm history.db-wal``, a copy
        put over the file), SQLite goes on writing into the unlinked one:
        every commit succeeds and is lost at the next start. Two ``stat``
        calls a transaction; once seen, writing stays refused (503, health
        degraded) until the server restarts and opens what the path holds.
        """
        if self._replaced is None:
            for name, known in ((self.path, self._file), (self.path + "-wal", self._wal_id)):
                if known is not None and _file_id(name) != known:
                    self._replaced = (
                        f"{name} was removed or replaced while the server ran: what is written now would be lost. "
                        "Restart the server (it reads what the path holds then); what was written since the last "
                        "checkpoint may be gone with the old file"
                    )
        if self._replaced is not None:
            raise JournalUnavailable(self._replaced)

    def _rewind(self, db: sqlite3.Connection) -> None:
        """Copy what the WAL holds beyond the file and have the next commit write it from its start.

        On the writer's own connection, between two of its commits: a
        checkpoint on another connection has to win the write lock from a
        writer that does not pause. It copies only what the last passive pass
        left, but syncs the file: once per :attr:`wal_limit` of writing, an
        acknowledgement waits for that. A reader holding an old snapshot (a
        long export) is waited for at most 100 ms; then it is tried again
        after the next passive pass.
        """
        self._rewind_due = False
        try:
            waits = db.execute("PRAGMA busy_timeout").fetchone()[0]  # the writer's own, set where it connects
            db.execute("PRAGMA busy_timeout=100")
            try:
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                db.execute(f"PRAGMA busy_timeout={int(waits)}")
        except sqlite3.Error:
            pass  # the commit stands; the WAL is only longer for now

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back whole on any failure; a write failure is :class:`JournalUnavailable`."""
        db = self._writer()
        self._check_files()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            self._lost_writer(exc)
            raise _unavailable(self.path, exc) from None

    def _write(self, db: sqlite3.Connection, batch: Batch) -> None:
        if batch.snapshots:
            rows = []
            for call, done, counted in batch.snapshots:
                rows.append((
                    call.call_id, done, call.started_at, call.status, call.direction, call.caller, call.callee,
                    call.meta_value("provider_mode") or "", *counted, freeze(call), call.search_text(),
                    _tags_column(call.tags), 1 if call.notes else 0, _labels_column(call), *quality.columns(call),
                ))
            db.executemany(
                f"INSERT OR REPLACE INTO calls (call_id, done, started_at, status, direction, caller, callee, "
                f"provider_mode, {_NUMBER_COLUMNS}, hour, latency_us, latency_bin, state, search, tags, has_notes, labels, "
                f"{', '.join(quality.COLUMNS)}) VALUES ({', '.join('?' * (23 + len(quality.COLUMNS)))})",
                rows,
            )
            # The snapshot holds what these events did; they were all applied before it was taken.
            db.executemany("DELETE FROM events WHERE call_id = ?", [(call.call_id,) for call, _, _ in batch.snapshots])
        if batch.seen:
            db.executemany("INSERT OR REPLACE INTO seen (key, seq) VALUES (?, ?)", batch.seen)
            self._seen_written += len(batch.seen)
            if self._seen_written > SEEN_KEPT // 10:
                self._seen_written = 0
                db.execute(
                    "DELETE FROM seen WHERE seq < (SELECT seq FROM seen ORDER BY seq DESC LIMIT 1 OFFSET ?)", (SEEN_KEPT,)
                )
        if batch.events:
            db.executemany(
                "INSERT INTO events (call_id, type, key, received_at, data) VALUES (?, ?, ?, ?, ?)",
                [(e.call_id, e.type, e.key, e.received_at, pack_event(e)) for e in batch.events],
            )
        if batch.last_seq:
            db.execute("INSERT OR REPLACE INTO info (name, value) VALUES ('last_seq', ?)", (batch.last_seq,))
        if batch.info:
            gone = [(name,) for name, value in batch.info.items() if value is None]
            db.executemany("DELETE FROM info WHERE name = ?", gone)
            db.executemany("INSERT OR REPLACE INTO info (name, value) VALUES (?, ?)",
                           [(name, json.dumps(value)) for name, value in batch.info.items() if value is not None])

    def index_pending(self, limit: int) -> int:
        """Add up to ``limit`` written calls to ``q``'s index, oldest first, in one transaction; how many.

        On a connection of its own (opened here, as :meth:`checkpoint`'s), so it
        may run on a background thread while the writer commits: SQLite takes
        the two transactions one after the other; the trigrams are computed in C,
        beside the event thread's Python work.
        """
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            try:
                db.execute("BEGIN IMMEDIATE")
                done = index_waiting(db, limit)
                left = int(db.execute("SELECT count(*) FROM fts_pending").fetchone()[0])
                db.execute("COMMIT")
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(self.path, exc) from None
        with self._count_lock:
            self.unindexed = left
        return done

    def info(self, prefix: str) -> dict[str, Any]:
        """The info rows set through :attr:`Batch.info` whose name starts with ``prefix`` (values as given)."""
        with self._reader() as db:
            # A range, not LIKE: the prefix is a path and may hold % or _.
            rows = db.execute("SELECT name, value FROM info WHERE name >= ? AND name < ?", (prefix, prefix + "\U0010ffff")).fetchall()
        out: dict[str, Any] = {}
        for name, value in rows:
            try:
                out[name] = json.loads(value)
            except (TypeError, ValueError):
                continue  # a row this release did not write
        return out

    def outbox(self) -> SQLiteOutbox:
        return SQLiteOutbox(self.path)

    def secret(self, name: str) -> bytes:
        """A random 32-byte secret kept in the file under ``name``, made the first time it is asked for.

        Kept with the history it protects (redaction's hashing key): a copy of
        the file hashes the same numbers the same way, another file does not.
        """
        row_name = f"secret:{name}"
        try:
            with self._transaction() as db:
                row = db.execute("SELECT value FROM info WHERE name = ?", (row_name,)).fetchone()
                if row is not None:
                    return bytes.fromhex(row[0])
                value = os.urandom(32)
                db.execute("INSERT INTO info (name, value) VALUES (?, ?)", (row_name, value.hex()))
                return value
        except JournalUnavailable:
            # A file that cannot be written now may still hold the secret: read it.
            with self._reader() as db:
                row = db.execute("SELECT value FROM info WHERE name = ?", (row_name,)).fetchone()
            if row is None:
                raise
            return bytes.fromhex(row[0])

    def forget(self, call_ids: list[str]) -> list[tuple[Any, ...]]:
        """Delete calls and their events; the (call_id, started_at, status, numbers...) rows that existed."""
        found: list[tuple[Any, ...]] = []
        with self._transaction() as db:
            for start in range(0, len(call_ids), 500):  # under SQLite's bound on parameters
                chunk = call_ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found += db.execute(
                    f"SELECT call_id, started_at, status, {_NUMBER_COLUMNS} FROM calls WHERE call_id IN ({marks})", chunk
                ).fetchall()
                db.execute(f"DELETE FROM calls WHERE call_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM events WHERE call_id IN ({marks})", chunk)
        return found

    def started_before(self, cutoff: float, limit: int) -> list[str]:
        """Ids of up to ``limit`` stored calls that started before ``cutoff`` (the retention purge)."""
        with self._reader() as db:
            return [row[0] for row in db.execute(
                "SELECT call_id FROM calls WHERE started_at < ? ORDER BY started_at LIMIT ?", (cutoff, limit)
            )]

    # --------------------------------------------------------------- reading

    def restore(self, keep: int) -> Restored:
        """What a starting process needs: totals of every call, the newest ``keep`` whole, events to replay."""
        db = self._db or self._connect_read_only()  # read-only: the history is served all the same
        try:
            return self._read_back(db, keep)
        except sqlite3.DatabaseError as exc:  # damage past the header: refuse to start, as for a corrupt file
            raise self._unreadable(exc) from None
        finally:
            if db is not self._db:
                db.close()

    def _read_back(self, db: sqlite3.Connection, keep: int) -> Restored:
        hours = summed(db.execute(f"SELECT hour, status, count(*), {_COST_SUMS} FROM calls GROUP BY hour, status"))
        latencies = summed(db.execute(
            "SELECT hour, latency_bin, count(*), total(latency_us) FROM calls WHERE latency_us IS NOT NULL "
            "GROUP BY hour, latency_bin"
        ))
        newest = db.execute("SELECT state FROM calls ORDER BY done DESC LIMIT ?", (keep,)).fetchall()
        calls = [thaw(row[0]) for row in reversed(newest)]
        events = [
            unpack_event(*row)
            for row in db.execute("SELECT type, call_id, key, received_at, data FROM events ORDER BY id")
        ]
        seen = db.execute("SELECT key, seq FROM seen ORDER BY seq DESC LIMIT ?", (SEEN_KEPT,)).fetchall()
        seen.reverse()
        row = db.execute("SELECT value FROM info WHERE name = 'last_seq'").fetchone()
        done = db.execute("SELECT max(done) FROM calls").fetchone()[0] or 0
        return Restored(hours, latencies, calls, events, seen, int(row[0]) if row else 0, done)

    def numbers_between(self, lo: float, hi: float) -> list[tuple[Any, ...]]:
        """(call_id, started_at, status, numbers) of the stored calls started in [lo, hi), for a range's edge hours."""
        with self._reader() as db:
            found = db.execute(
                f"SELECT call_id, started_at, status, {_NUMBER_COLUMNS} FROM calls WHERE started_at >= ? AND started_at < ?",
                (lo, hi),
            ).fetchall()
        return [
            (call_id, started_at, status, (duration, list(costs[:5]), costs[5]))
            for call_id, started_at, status, duration, *costs in found
        ]

    def page(
        self, flt: Filter, below: int, skip: Iterable[int], limit: int, offset: int = 0, *,
        count: bool = False, max_bytes: int | None = None,
    ) -> tuple[list[Call], int | None]:
        """Stored calls matching ``flt`` with ``done < below`` (but not those in ``skip``), newest first.

        ``limit`` calls from ``offset``, fewer once ``max_bytes`` of state is
        read (at least one), and with ``count`` how many match in all, read in
        the same snapshot (with ``q``, up to ``search.COUNT_LIMIT + 1``: more
        than the limit). The filters other than ``q`` are answered by one
        narrow index in completion order, so a page deep in history or a count
        reads the index, not the calls.
        """
        skip = list(skip)
        where, args, match, _ = _split_where(flt, below, skip)
        with self._reader() as db:
            db.execute("BEGIN")  # the count and the page see the same history
            try:
                total = _count(db, flt, below, skip) if count else None
                if match is None:
                    found = db.execute(f"SELECT done FROM calls WHERE {where} ORDER BY done DESC LIMIT ? OFFSET ?",
                                       (*args, limit, offset))
                elif _waiting_matches(db, flt, below, skip):
                    # Some matches wait for the index (a moment after they were written): all of them, in order.
                    where, args = _where(flt, below, skip)
                    found = db.execute(f"SELECT done FROM calls WHERE {where} ORDER BY done DESC LIMIT ? OFFSET ?",
                                       (*args, limit, offset))
                else:
                    # Newest first as the index holds them (its rowid is ``done``): it stops at the page's
                    # last match, where ``done IN (matches)`` collected and sorted every one.
                    found = db.execute(
                        "SELECT calls.done FROM calls_fts CROSS JOIN calls ON calls.done = calls_fts.rowid "
                        f"WHERE calls_fts MATCH ? AND calls_fts.rowid < ? AND {where} "
                        "ORDER BY calls_fts.rowid DESC LIMIT ? OFFSET ?",
                        (match, below, *args, limit, offset),
                    )
                marks = [row[0] for row in found]
                calls: list[Call] = []
                read = 0
                for done in marks:  # one lookup each: a page stops at max_bytes without reading further
                    row = db.execute("SELECT state FROM calls WHERE done = ?", (done,)).fetchone()
                    if row is None:
                        continue
                    calls.append(thaw(row[0]))
                    read += len(row[0])
                    if max_bytes is not None and read >= max_bytes:
                        break
            finally:
                db.execute("COMMIT")
        return calls, total

    def by_start(
        self, flt: Filter, below: int, skip: Iterable[int], limit: int, after: tuple[float, int] | None = None
    ) -> list[tuple[float, int]]:
        """(started_at, done) of the stored calls :meth:`page` would list, newest start first (ties: newest done).

        ``after``: only those that come after this key in that order (an
        export's next page). Keys only: the caller merges them with memory's
        calls and loads the few it keeps (:meth:`load_done`).
        """
        where, args = _where(flt, below, list(skip))
        if after is not None:
            where += " AND (started_at < ? OR (started_at = ? AND done < ?))"
            args += [after[0], after[0], after[1]]
        with self._reader() as db:
            return [tuple(row) for row in db.execute(
                f"SELECT started_at, done FROM calls WHERE {where} ORDER BY started_at DESC, done DESC LIMIT ?", (*args, limit)
            )]

    def load_done(self, marks: list[int]) -> dict[int, Call]:
        """The stored calls with these completion numbers, by number (those deleted meanwhile are missing)."""
        found: dict[int, Call] = {}
        with self._reader() as db:
            for start in range(0, len(marks), 500):
                chunk = json.dumps(marks[start : start + 500])
                for done, state in db.execute(
                    "SELECT done, state FROM calls WHERE done IN (SELECT value FROM json_each(?))", (chunk,)
                ):
                    found[done] = thaw(state)
        return found

    def load(self, call_id: str) -> Call | None:
        with self._reader() as db:
            row = db.execute("SELECT state FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return thaw(row[0]) if row else None

    def load_many(self, call_ids: Iterable[str]) -> list[Call]:
        ids = list(call_ids)
        found: list[Call] = []
        with self._reader() as db:
            for start in range(0, len(ids), 500):  # under SQLite's bound on parameters
                chunk = ids[start : start + 500]
                rows = db.execute(f"SELECT state FROM calls WHERE call_id IN ({', '.join('?' * len(chunk))})", chunk)
                found += [thaw(row[0]) for row in rows]
        return found

    def bytes_on_disk(self) -> int:
        """The file and its write-ahead log (health and the UI header show it); a stat, no query."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def backup(self, target: str) -> None:
        """An online, consistent copy (SQLite's backup API) while the server writes.

        The copy is taken in one step, inside one read transaction: in WAL
        mode that never blocks the server's commits, while a copy made in
        steps starts over each time another process commits, so under
        steady ingest it would never finish. It is written beside ``target``
        and renamed into place only once complete.
        """
        source = self._connect_read_only()  # never creates or changes the file it copies
        try:
            self._inspect(source)
            partial = f"{target}.partial"
            try:
                destination = sqlite3.connect(partial)
                try:
                    source.backup(destination)
                    destination.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
                finally:
                    destination.close()
                with open(partial, "rb") as copy:
                    os.fsync(copy.fileno())
                os.replace(partial, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                raise
        finally:
            source.close()

    def _reader(self) -> _Reader:
        return _Reader(self)


def index_waiting(db: sqlite3.Connection, limit: int) -> int:
    """Move up to ``limit`` calls from ``fts_pending`` into ``q``'s index, oldest first (inside the caller's
    transaction); how many."""
    marks = json.dumps([row[0] for row in db.execute("SELECT done FROM fts_pending ORDER BY done LIMIT ?", (limit,))])
    db.execute("INSERT INTO calls_fts (rowid, search) SELECT done, search FROM calls "
               "WHERE done IN (SELECT value FROM json_each(?)) AND search IS NOT NULL", (marks,))
    return int(db.execute("DELETE FROM fts_pending WHERE done IN (SELECT value FROM json_each(?))", (marks,)).rowcount)


def _where(flt: Filter, below: int, skip: list[int]) -> tuple[str, list[Any]]:
    """SQL for a read's filters on ``calls`` (``done < below``, not ``skip``), ``q``'s matches included:
    the index's, and those of the calls not indexed yet, on their text."""
    where, args, match, _ = _split_where(flt, below, skip)
    if match is None:
        return where, args
    # Every match collected: the other reads (by start, exports) combine them with orders of their own.
    waiting, waiting_args = _waiting(flt)
    return (f"{where} AND (calls.done IN (SELECT rowid FROM calls_fts WHERE calls_fts MATCH ?) OR {waiting})",
            [*args, match, *waiting_args])


def _waiting(flt: Filter) -> tuple[str, list[Any]]:
    """SQL for ``q``'s matches among the calls not in the index yet (``fts_pending``): every term in the text."""
    long = [t for t in search.terms(flt.query or "") if len(t) >= search.INDEXED_LENGTH]
    tests = ["calls.done IN (SELECT done FROM fts_pending)", *["instr(calls.search, ?) > 0"] * len(long)]
    return "(" + " AND ".join(tests) + ")", long


def _waiting_matches(db: sqlite3.Connection, flt: Filter, below: int, skip: list[int]) -> list[int]:
    """The completion numbers of the calls :meth:`SQLiteJournal.page` lists that are not in the index yet, newest first."""
    where, args, _, _ = _split_where(flt, below, skip)
    waiting, waiting_args = _waiting(flt)
    # From the few waiting calls (CROSS JOIN keeps that order), never a walk of every call below the window.
    return [row[0] for row in db.execute(
        f"SELECT calls.done FROM fts_pending CROSS JOIN calls ON calls.done = fts_pending.done "
        f"WHERE {where} AND {waiting} ORDER BY calls.done DESC", (*args, *waiting_args)
    )]


def _split_where(flt: Filter, below: int, skip: list[int]) -> tuple[str, list[Any], str | None, bool]:
    """:func:`_where` without the index: (tests on ``calls``, their arguments, the MATCH text, whether ``q`` is all of ``flt``)."""
    tests, args, match = _conditions(flt)
    alone = not tests
    tests.append("calls.done < ?")
    args.append(below)
    if skip:
        tests.append("calls.done NOT IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(skip))
    return " AND ".join(tests), args, match, alone


def _count(db: sqlite3.Connection, flt: Filter, below: int, skip: list[int]) -> int:
    """How many stored calls :meth:`SQLiteJournal.page` would list in all; with ``q``, up to ``COUNT_LIMIT + 1``."""
    where, args, match, alone = _split_where(flt, below, skip)
    if not flt.query:
        return int(db.execute(f"SELECT count(*) FROM calls WHERE {where}", args).fetchone()[0])
    most = search.COUNT_LIMIT + 1
    if match is None:  # short terms only: a scan of the stored text, stopped at the limit
        return int(db.execute(f"SELECT count(*) FROM (SELECT 1 FROM calls WHERE {where} LIMIT ?)", (*args, most)).fetchone()[0])
    return min(_indexed_count(db, flt, below, skip) + len(_waiting_matches(db, flt, below, skip)), most)


def _indexed_count(db: sqlite3.Connection, flt: Filter, below: int, skip: list[int]) -> int:
    """:func:`_count` of a ``q`` with a term of three characters or more, among the indexed calls."""
    where, args, match, alone = _split_where(flt, below, skip)
    most = search.COUNT_LIMIT + 1
    if alone:
        # ``q`` alone: the index counts its own entries below the window, reading no call, less those of the
        # calls memory holds below it (``skip``, few), each looked up by number.
        held = [done for done in skip if done < below]
        total = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM calls_fts WHERE calls_fts MATCH ? AND rowid < ? LIMIT ?)",
            (match, below, most + len(held)),
        ).fetchone()[0]
        for done in held:
            if db.execute("SELECT 1 FROM calls_fts WHERE calls_fts MATCH ? AND rowid = ?", (match, done)).fetchone():
                total -= 1
        # The limit was raised by every held call, matching or not: past the limit the count is still only
        # a lower bound, said as the limit's own figure (as the other counts stop at it).
        return min(int(total), most)
    return int(db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM calls_fts CROSS JOIN calls ON calls.done = calls_fts.rowid "
        f"WHERE calls_fts MATCH ? AND calls_fts.rowid < ? AND {where} LIMIT ?)",
        (match, below, *args, most),
    ).fetchone()[0])


def _conditions(flt: Filter) -> tuple[list[str], list[Any], str | None]:
    """The tests of ``flt`` on a ``calls`` row (as ``CallFilter.matches`` in memory), and ``q``'s index MATCH text."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("status", flt.status), ("direction", flt.direction), ("provider_mode", flt.provider_mode)):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    if flt.start is not None:
        clauses.append("started_at >= ?")
        args.append(flt.start)
    if flt.end is not None:
        clauses.append("started_at < ?")
        args.append(flt.end)
    if flt.tag:
        clauses.append("instr(tags, ?) > 0")
        args.append(_tags_column((flt.tag,)))
    if flt.has_notes is not None:
        clauses.append("has_notes = ?")
        args.append(1 if flt.has_notes else 0)
    for kind, value in (("p", flt.provider), ("m", flt.model)):
        if value:
            clauses.append("instr(labels, ?) > 0")
            args.append(f"{TAG_SEPARATOR}{kind}:{value}{TAG_SEPARATOR}")
    for column, lo, hi in flt.bounds():
        # A call without the number (no latency reported) is left out, as in memory: NULL fails both tests.
        clauses.append(f"{column} IS NOT NULL")
        if lo is not None:
            clauses.append(f"{column} >= ?")
            args.append(lo)
        if hi is not None:
            clauses.append(f"{column} <= ?")
            args.append(hi)
    match = None
    if flt.query:
        found = search.terms(flt.query)
        match = search.fts_query(found)
        for term in search.short_terms(found):  # under a trigram: the stored text, scanned (no case folding by SQLite)
            clauses.append("instr(calls.search, ?) > 0")
            args.append(term)
    return clauses, args, match


def _tags_column(tags: tuple[str, ...]) -> str:
    """The ``tags`` column: each tag between separators, so ``instr`` finds a whole tag, never part of one."""
    return f"{TAG_SEPARATOR}{TAG_SEPARATOR.join(tags)}{TAG_SEPARATOR}" if tags else ""


def _labels_column(call: Call) -> str:
    """The ``labels`` column: ``p:<provider>`` and ``m:<model>`` each between separators (as :func:`_tags_column`)."""
    providers, models = call.labels()
    names = [f"p:{v}" for v in providers] + [f"m:{v}" for v in models]
    return f"{TAG_SEPARATOR}{TAG_SEPARATOR.join(names)}{TAG_SEPARATOR}" if names else ""


def _filling(column: str, compute: Callable[[Call], Any]) -> Callable[[sqlite3.Connection], None]:
    """A migration step that computes a new column for the calls an older file holds, from their state blobs."""
    return _filling_columns((column,), lambda call: (compute(call),))


def _filling_columns(names: tuple[str, ...], compute: Callable[[Call], tuple[Any, ...]]) -> Callable[[sqlite3.Connection], None]:
    """:func:`_filling` for several columns computed together."""
    assignments = ", ".join(f"{name} = ?" for name in names)

    def fill(db: sqlite3.Connection) -> None:
        last = 0
        while True:
            rows = db.execute("SELECT rowid, state FROM calls WHERE rowid > ? ORDER BY rowid LIMIT 500", (last,)).fetchall()
            if not rows:
                return
            db.executemany(f"UPDATE calls SET {assignments} WHERE rowid = ?", [(*compute(thaw(state)), rowid) for rowid, state in rows])
            last = rows[-1][0]

    return fill


_FILLS[5] = _filling("labels", _labels_column)
_FILLS[7] = _filling_columns(quality.COLUMNS, quality.columns)


def _statements(script: str) -> Iterator[str]:
    """A migration's statements; a trigger's body holds semicolons of its own."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def _fill_search(db: sqlite3.Connection) -> None:
    """Schema 6: every stored call's search text (:meth:`Call.search_text`), 500 at a time.

    The text is computed from the state, not from schema 2's lowercased
    column: the folding is new. Schema 2 gives a schema-1 file the column and
    this fills it, once. Schema 8 indexes it (each upgrade runs to the newest
    schema in one transaction: schema 6's own index is never read).
    """
    last = 0
    while True:
        rows = db.execute(
            "SELECT rowid, state FROM calls WHERE rowid > ? ORDER BY rowid LIMIT 500", (last,)
        ).fetchall()
        if not rows:
            return
        db.executemany("UPDATE calls SET search = ? WHERE rowid = ?", [(thaw(state).search_text(), rowid) for rowid, state in rows])
        last = rows[-1][0]


_FILLS[6] = _fill_search


class _Reader:
    """A pooled read-only connection (WAL readers never wait for the writer)."""

    def __init__(self, journal: SQLiteJournal) -> None:
        self.journal = journal
        self.db: sqlite3.Connection | None = None
        self.generation = 0

    def __enter__(self) -> sqlite3.Connection:
        journal = self.journal
        try:
            self.generation, self.db = journal._readers.pop()  # list.pop and append are atomic: no lock to share with gevent
        except IndexError:
            self.generation, self.db = journal._generation, journal._connect_read_only()
        return self.db

    def __exit__(self, *exc: Any) -> None:
        assert self.db is not None
        if len(self.journal._readers) < 4 and self.generation == self.journal._generation:
            self.journal._readers.append((self.generation, self.db))
        else:
            self.db.close()

