"""PostgreSQL journal: ``PATTER_DASH_DB=postgresql://...``, shared by any number of dashboard processes.

The same tables and meaning as :mod:`.sqlite` (``events``, ``calls``, ``seen``,
``info``), in the schema the URL's connection lands in (``search_path``; add
``?options=-csearch_path%3Dname`` for another than ``public``), with a
migrations list of its own versioned in ``patter_dash_schema``. ``q`` is the
same substring test over the same folded text (:meth:`Call.search_text`): a
``pg_trgm`` GIN index answers ``LIKE`` for terms of three characters or more
(wildcards escaped: every character is itself), ``strpos`` scans for the
shorter ones, as SQLite's FTS5 trigram index and ``instr`` do.

The ``events`` table is the one ordered log every process follows: each
commit takes a transaction-scoped advisory lock before it inserts, so numbers
become visible in order (a reader that sees number n sees every number below
it), reads what others wrote since this process's position (applied first),
and notifies the processes that ``LISTEN`` (:meth:`listen`). Events a
snapshot in ``calls`` describes are marked ``folded``, not deleted: another
process may still be reading them; folded rows older than :data:`LOG_KEPT`
seconds are trimmed, and a process that fell further behind than that reloads
from ``calls`` (:meth:`tail` says so). Jobs that must run once hold a session
advisory lock on a connection of their own (:meth:`runs_jobs`), which a
process that dies (or loses its connection) leaves to the next one asking.

Per process: one writer connection (commits, deletions, the secret) and a few
read-only connections kept for reuse (:mod:`.pgreaders`), each read one
``REPEATABLE READ`` transaction (a page and its count see one history). Every
method blocks; the pipeline runs them on native threads, off the gevent loop.
A connection lost (server stopped, restarted, failed over) is
:class:`JournalUnavailable` (ingest answers 503, health says degraded) and is
opened again on the next call; a URL that cannot be used at all (wrong host,
password, database, a server too old, a database of another application or of
a newer release) is :class:`JournalError`, naming ``PATTER_DASH_DB``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from ..model import quality, search
from ..model.events import Event
from ..model.records import Call
from . import LOG_ANNOUNCE, LOG_DELETE, UNREADABLE, Batch, Filter, JournalError, JournalUnavailable, Restored, summed
from .codec import freeze, pack_event, thaw, unpack_event
from .pgreaders import Readers
from .sqlite import SEEN_KEPT, TAG_SEPARATOR, _labels_column, _tags_column

log = logging.getLogger("patter_dash")

SETTING = "PATTER_DASH_DB"
#: Schema versions in order; each entry migrates from the one before (index + 1 = version).
MIGRATIONS: tuple[str, ...] = (
    # 1: everything SQLite's six versions built, at once. ``search`` is the folded text, fields one a line;
    # ``gin_trgm_ops`` indexes its trigrams (case as stored: Python folded it) for ``LIKE '%term%'``.
    """
    CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        call_id TEXT NOT NULL,
        type TEXT NOT NULL,
        key TEXT,
        received_at DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE INDEX events_by_call ON events (call_id);
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        done BIGINT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        direction TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        provider_mode TEXT NOT NULL,
        duration_ms BIGINT NOT NULL,
        cost_stt BIGINT NOT NULL,
        cost_tts BIGINT NOT NULL,
        cost_llm BIGINT NOT NULL,
        cost_telephony BIGINT NOT NULL,
        cost_total BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION,
        hour BIGINT NOT NULL,
        latency_us BIGINT,
        latency_bin INTEGER,
        state BYTEA NOT NULL,
        search TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '',
        has_notes BOOLEAN NOT NULL DEFAULT FALSE,
        labels TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX calls_by_done ON calls (done);
    CREATE INDEX calls_by_start ON calls (started_at);
    CREATE INDEX calls_by_filter ON calls (done, status, direction, provider_mode, started_at);
    CREATE INDEX calls_search ON calls USING gin (search gin_trgm_ops);
    CREATE TABLE seen (key TEXT PRIMARY KEY, seq BIGINT NOT NULL);
    CREATE INDEX seen_by_seq ON seen (seq);
    CREATE TABLE info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: conversation quality (model/quality.py), for its range filters (filled from the state blobs: _FILLS)
    """
    ALTER TABLE calls ADD COLUMN interruptions BIGINT;
    ALTER TABLE calls ADD COLUMN dead_air_ms BIGINT;
    ALTER TABLE calls ADD COLUMN talk_over_ms BIGINT;
    ALTER TABLE calls ADD COLUMN tool_failures BIGINT;
    """,
    # 3: several processes on one database. Events stay in the log once a snapshot holds them (``folded``)
    # until every process has read them; a snapshot is kept only over an older one (``seq``: the journal
    # number of the last event it holds), as processes write the same finished call. (IF NOT EXISTS: a database
    # brought back from version 1 by hand, as the quality test does, may hold these already.)
    """
    ALTER TABLE events ADD COLUMN IF NOT EXISTS folded BOOLEAN NOT NULL DEFAULT FALSE;
    UPDATE events SET folded = TRUE WHERE call_id IN (SELECT call_id FROM calls);
    CREATE INDEX IF NOT EXISTS events_unfolded ON events (id) WHERE NOT folded;
    CREATE INDEX IF NOT EXISTS events_folded ON events (received_at) WHERE folded;
    ALTER TABLE calls ADD COLUMN IF NOT EXISTS seq BIGINT NOT NULL DEFAULT 0;
    """,
    # 4: alert notifications not yet delivered (ops/outbox.py): sent after a restart, or by the process
    # that takes the jobs over
    """
    CREATE TABLE IF NOT EXISTS alert_outbox (
        id BIGSERIAL PRIMARY KEY,
        destination TEXT NOT NULL,
        letter_id TEXT NOT NULL,
        body BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    """,
)
#: Python steps of a migration, by the version they complete (what SQL alone cannot compute).
_FILLS: dict[int, Any] = {}


def _fill_quality(db: psycopg.Connection) -> None:
    """Migration 2's step: the quality columns of the calls a database already holds, from their state blobs."""
    assignments = ", ".join(f"{name} = %s" for name in quality.COLUMNS)
    last = ""
    while True:
        rows = db.execute("SELECT call_id, state FROM calls WHERE call_id > %s ORDER BY call_id LIMIT 500", (last,)).fetchall()
        if not rows:
            return
        with db.cursor() as cur:
            cur.executemany(f"UPDATE calls SET {assignments} WHERE call_id = %s",
                            [(*quality.columns(thaw(bytes(state))), call_id) for call_id, state in rows])
        last = rows[-1][0]


_FILLS[2] = _fill_quality
SCHEMA_VERSION = len(MIGRATIONS)
#: The oldest server this release runs on (trusted extensions: a database owner may create pg_trgm).
MIN_SERVER = 130000
#: Advisory lock keys (per database): migrating; appending to the log (per transaction: numbers
#: become visible in order); the jobs that run in one process at a time (per session).
MIGRATE_LOCK = 0x50445348_0001
LOG_LOCK = 0x50445348_0003
JOBS_LOCK = 0x50445348_0004
#: The channel a commit NOTIFYs with its highest number; every process LISTENs.
CHANNEL = "patter_dash_log"
#: Seconds folded events stay in the log for processes still reading it (then trimmed).
LOG_KEPT = 600.0
#: Seconds between two trims of the log (by whichever process commits).
TRIM_EVERY = 30.0
#: Events read from the log at once by a follower.
TAIL_MAX = 2_000
#: Rows of the log that are done as they are written: followers read them, a starting process never replays them.
_DONE_WHEN_WRITTEN = frozenset((LOG_DELETE, LOG_ANNOUNCE))
CONNECT_TIMEOUT = 5
#: ``pg_database_size`` walks the database's files: asked at most this often, after a commit.
SIZE_EVERY = 10.0
_NUMBER_COLUMNS = "duration_ms, cost_stt, cost_tts, cost_llm, cost_telephony, cost_total, latency_ms"
#: PostgreSQL sums bigints as numeric (Decimal in Python, never overflowing): summed() makes them ints.
_COST_SUMS = "sum(duration_ms), sum(cost_stt), sum(cost_tts), sum(cost_llm), sum(cost_telephony), sum(cost_total)"
_CALL_COLUMNS = (
    f"call_id, done, started_at, status, direction, caller, callee, provider_mode, {_NUMBER_COLUMNS}, "
    "hour, latency_us, latency_bin, state, search, tags, has_notes, labels, " + ", ".join(quality.COLUMNS)
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


class PostgresJournal:
    """The journal in a PostgreSQL database (``PATTER_DASH_DB=postgresql://user:password@host:port/database``)."""

    engine = "postgres"
    shared = True
    unindexed = 0  # its trigram index is kept by the server itself (GIN's own pending list)

    def __init__(self, url: str, *, sync: str = "normal") -> None:
        try:
            params = pg_conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise JournalError(f"{SETTING} is not a usable PostgreSQL URL: {_first_line(exc)}") from None
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        self._conninfo = pg_conninfo.make_conninfo(**params)
        #: What logs, health and messages show: the URL without its password.
        self.path = _display(params)
        self.sync = sync  # the server's synchronous_commit decides; kept for the interface
        self._writer_db: psycopg.Connection | None = None
        self._pool: Readers | None = None
        self._seen_written = 0
        self._size = 0
        self._size_at = 0.0
        self._trimmed_at = time.monotonic()
        self._jobs_db: psycopg.Connection | None = None
        self._jobs_held = False
        #: Set by :meth:`close`: a :meth:`listen` loop ends.
        self._closing = False

    # ------------------------------------------------------------ lifecycle

    def check(self) -> None:
        """Connect, refuse what is not ours or too new, migrate forward (once, under an advisory lock), disconnect."""
        db = self._connect()
        try:
            self._migrate(db)
        finally:
            db.close()

    def open(self) -> None:
        """The writer connection (the readers connect when a read needs one)."""
        self._closing = False
        self._readers()
        try:
            self._writer(starting=True)
        except JournalUnavailable:
            pass  # commit reports it, and tries again each time

    def _readers(self) -> Readers:
        """The read-only connections, made on first use (each opened when a read needs it)."""
        if self._pool is None:
            self._pool = Readers(self._conninfo, application_name=_process_name())
        return self._pool

    def close(self) -> None:
        self._closing = True
        jobs, self._jobs_db = self._jobs_db, None
        self._jobs_held = False
        if jobs is not None:
            jobs.close()  # the jobs lock goes with it: another process takes them at its next look
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        db, self._writer_db = self._writer_db, None
        if db is not None:
            db.close()

    def checkpoint(self) -> None:
        """Nothing to do: the server writes its own pages back."""

    def index_pending(self, limit: int) -> int:
        """Nothing to do: the server keeps ``q``'s index in the commit."""
        return 0

    def _connect(self) -> psycopg.Connection:
        """A connection; a URL that cannot be used is :class:`JournalError` naming the setting."""
        try:
            db = psycopg.connect(self._conninfo, application_name=_process_name(), autocommit=True)
        except psycopg.OperationalError as exc:
            raise JournalError(
                f"cannot connect to PostgreSQL at {self.path} ({SETTING}): {_first_line(exc)}. "
                "Check the host, port, user, password and database in the URL, and that the server is running."
            ) from None
        try:
            self._inspect_server(db)
        except BaseException:
            db.close()
            raise
        return db

    def _inspect_server(self, db: psycopg.Connection) -> None:
        if db.info.server_version < MIN_SERVER:
            raise JournalError(
                f"PostgreSQL at {self.path} ({SETTING}) is version {db.info.server_version // 10000}; "
                f"patter-dash needs {MIN_SERVER // 10000} or newer"
            )
        encoding = db.execute("SHOW server_encoding").fetchone()[0]  # type: ignore[index]
        if encoding.upper() not in ("UTF8", "UTF-8"):
            raise JournalError(
                f"the database at {self.path} ({SETTING}) stores text as {encoding}; patter-dash keeps any language's "
                "text and needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
            )

    def _inspect(self, db: psycopg.Connection) -> int:
        """The database's schema version (0: empty); refuse one of a newer release or of another application."""
        schema = db.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        if schema is None:
            raise JournalError(f"the URL in {SETTING} ({self.path}) leaves no schema to create tables in (search_path)")
        if db.execute("SELECT to_regclass('patter_dash_schema')").fetchone()[0] is None:  # type: ignore[index]
            others = db.execute(
                "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'v') "
                "AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
            ).fetchone()[0]  # type: ignore[index]
            if others:
                raise JournalError(
                    f"the schema {schema} of the database at {self.path} ({SETTING}) holds tables of another application; "
                    "patter-dash will not write into it and left it untouched. Point PATTER_DASH_DB at a database of "
                    "its own, or give it a schema of its own (?options=-csearch_path%3Dpatter_dash)."
                )
            return 0
        version = int(db.execute("SELECT max(version) FROM patter_dash_schema").fetchone()[0] or 0)  # type: ignore[index]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the database at {self.path} ({SETTING}) was written by a newer patter-dash (schema {version}; this "
                f"release reads up to {SCHEMA_VERSION}). It was left untouched: upgrade patter-dash, or point "
                "PATTER_DASH_DB at another database."
            )
        return version

    def _migrate(self, db: psycopg.Connection) -> None:
        """Bring the schema forward; several processes starting together migrate once (the lock, then a fresh look)."""
        db.autocommit = True
        try:
            if self._inspect(db) == SCHEMA_VERSION:
                return
            db.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
            try:
                with db.transaction():
                    version = self._inspect(db)
                    if version == SCHEMA_VERSION:
                        return
                    if version == 0:
                        try:
                            with db.transaction():
                                db.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                        except psycopg.Error as exc:
                            raise JournalError(
                                f"the database at {self.path} ({SETTING}) needs the pg_trgm extension (search) and this "
                                f"user cannot create it ({_first_line(exc)}): as a superuser, run CREATE EXTENSION pg_trgm "
                                "in that database (Debian: in the postgresql-contrib package)."
                            ) from None
                        db.execute("CREATE TABLE patter_dash_schema (version INTEGER NOT NULL, migrated_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                    for reached, script in enumerate(MIGRATIONS[version:], version + 1):
                        db.execute(script)  # several statements: the simple query protocol takes them at once
                        if reached in _FILLS:
                            _FILLS[reached](db)
                        db.execute("INSERT INTO patter_dash_schema (version) VALUES (%s)", (reached,))
            finally:
                db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
        except psycopg.Error as exc:
            raise JournalError(f"cannot set up the database at {self.path} ({SETTING}): {_first_line(exc)}") from None

    def _writer(self, *, starting: bool = False) -> psycopg.Connection:
        """The writer connection, opened again after it was lost.

        ``starting``: a database that cannot be used refuses to start
        (:class:`JournalError`); later it is one more reason writing fails now.
        """
        db = self._writer_db
        if db is not None and not db.closed and not db.broken:
            return db
        self._writer_db = None
        if db is not None:
            db.close()
        try:
            db = self._connect()
        except JournalError as exc:
            raise JournalUnavailable(str(exc)) from None
        try:
            self._migrate(db)
            db.autocommit = False
        except JournalError as exc:
            db.close()
            if starting:
                raise
            raise JournalUnavailable(str(exc)) from None
        except psycopg.Error as exc:
            db.close()
            raise self._unavailable(exc) from None
        self._writer_db = db
        return db

    def _unavailable(self, exc: BaseException) -> JournalUnavailable:
        return JournalUnavailable(f"cannot reach PostgreSQL at {self.path} ({SETTING}): {_first_line(exc)}")

    # --------------------------------------------------------------- writing

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """One write transaction, rolled back whole on any failure; a failure is :class:`JournalUnavailable`."""
        db = self._writer()
        try:
            with db.transaction():
                yield db
        except psycopg.Error as exc:
            if db.broken or db.closed:
                self._writer_db = None
                db.close()
            raise self._unavailable(exc) from None
        self._note_size(db)

    def commit(self, batch: Batch) -> None:
        """Write ``batch`` as one transaction, in the log's order (see the module's docstring)."""
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (LOG_LOCK,))
            gone: set[str] = set()
            if batch.after is not None:
                batch.before = self._read_log(db, batch.after, None)
                for event in batch.before:
                    if event.type == LOG_DELETE:
                        gone.update(event.data.get("call_ids") or ())
            self._write(db, batch, gone)
            if time.monotonic() - self._trimmed_at >= TRIM_EVERY:
                self._trimmed_at = time.monotonic()
                self._trim(db)

    @staticmethod
    def _read_log(db: psycopg.Connection, after: int, limit: int | None) -> list[Event]:
        rows = db.execute(
            "SELECT id, type, call_id, key, received_at, data FROM events WHERE id > %s ORDER BY id"
            + (" LIMIT %s" if limit else ""),
            (after, limit) if limit else (after,),
        ).fetchall()
        return [_logged(*row) for row in rows]

    @staticmethod
    def _trim(db: psycopg.Connection) -> None:
        """Drop folded events older than :data:`LOG_KEPT`; remember the highest number dropped."""
        gone = db.execute(
            "WITH gone AS (DELETE FROM events WHERE folded AND received_at < %s RETURNING id) SELECT max(id) FROM gone",
            (time.time() - LOG_KEPT,),
        ).fetchone()[0]  # type: ignore[index]
        if gone is not None:
            db.execute(
                "INSERT INTO info (name, value) VALUES ('log_trimmed', %s) ON CONFLICT (name) DO UPDATE "
                "SET value = GREATEST(info.value::bigint, EXCLUDED.value::bigint)::text",
                (str(gone),),
            )

    def _write(self, db: psycopg.Connection, batch: Batch, gone: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        snapshots = [s for s in batch.snapshots if s[0].call_id not in gone]  # deleted meanwhile by another process
        with db.cursor() as cur:
            if snapshots:
                rows = [
                    (
                        call.call_id, done, call.started_at, call.status, call.direction, call.caller, call.callee,
                        call.meta_value("provider_mode") or "", *counted, freeze(call), call.search_text(),
                        _tags_column(call.tags), bool(call.notes), _labels_column(call), *quality.columns(call),
                        call.seq,
                    )
                    for call, done, counted in snapshots
                ]
                names = [*_CALL_COLUMNS.split(", "), "seq"]
                # Every process writes the calls it saw finish: a snapshot replaces only an older one.
                cur.executemany(
                    f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
                    f"ON CONFLICT (call_id) DO UPDATE SET {', '.join(f'{n} = EXCLUDED.{n}' for n in names[1:])} "
                    "WHERE calls.seq <= EXCLUDED.seq",
                    rows,
                )
                # The snapshot holds what these events did (those up to this process's position), so a starting
                # process does not replay them; they stay for the processes still reading the log.
                ids = [call.call_id for call, _, _ in snapshots]
                if batch.after is None:
                    cur.execute("UPDATE events SET folded = TRUE WHERE call_id = ANY(%s) AND NOT folded", (ids,))
                else:
                    cur.execute("UPDATE events SET folded = TRUE WHERE call_id = ANY(%s) AND id <= %s AND NOT folded",
                                (ids, batch.after))
            if batch.seen:
                cur.executemany(
                    "INSERT INTO seen (key, seq) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET seq = EXCLUDED.seq",
                    batch.seen,
                )
                self._seen_written += len(batch.seen)
                if self._seen_written > SEEN_KEPT // 10:
                    self._seen_written = 0
                    cur.execute(
                        "DELETE FROM seen WHERE seq < (SELECT seq FROM seen ORDER BY seq DESC LIMIT 1 OFFSET %s)", (SEEN_KEPT,)
                    )
            for event in batch.events:
                if event.type == LOG_DELETE:
                    self._delete_in(cur, event)
            if batch.events:
                cur.executemany(
                    "INSERT INTO events (call_id, type, key, received_at, data, folded) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    # A deletion or an announcement is done as it is written: never replayed, only read by followers.
                    [(e.call_id, e.type, e.key, e.received_at, pack_event(e), e.type in _DONE_WHEN_WRITTEN)
                     for e in batch.events],
                    returning=True,
                )
                for event in batch.events:
                    event.seq = cur.fetchone()[0]  # type: ignore[index]
                    cur.nextset()
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(batch.events[-1].seq)))
            if batch.last_seq:
                cur.execute(
                    "INSERT INTO info (name, value) VALUES ('last_seq', %s) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    (str(batch.last_seq),),
                )
            if batch.info:
                cur.execute("DELETE FROM info WHERE name = ANY(%s)", ([n for n, v in batch.info.items() if v is None],))
                cur.executemany(
                    "INSERT INTO info (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    [(n, json.dumps(v)) for n, v in batch.info.items() if v is not None],
                )

    def info(self, prefix: str) -> dict[str, Any]:
        """The info rows set through :attr:`Batch.info` whose name starts with ``prefix`` (values as given)."""
        with self._reader() as db:
            # starts_with, not LIKE: the prefix is a path and may hold % or _.
            rows = db.execute("SELECT name, value FROM info WHERE starts_with(name, %s)", (prefix,)).fetchall()
        out: dict[str, Any] = {}
        for name, value in rows:
            try:
                out[name] = json.loads(value)
            except (TypeError, ValueError):
                continue  # a row this release did not write (last_seq, secrets)
        return out

    def outbox(self) -> PostgresOutbox:
        return PostgresOutbox(self._conninfo, self.path)

    def _note_size(self, db: psycopg.Connection) -> None:
        """Refresh :meth:`bytes_on_disk`'s figure now and then, on the writer's thread (health reads it on the loop)."""
        now = time.monotonic()
        if now - self._size_at < SIZE_EVERY:
            return
        self._size_at = now
        try:
            db.autocommit = True
            try:
                self._size = int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            finally:
                db.autocommit = False
        except psycopg.Error:
            pass  # a figure for health only: the next commit reports a lost connection

    def secret(self, name: str) -> bytes:
        """A random 32-byte secret kept in the database under ``name``, made the first time (the first process wins)."""
        row_name = f"secret:{name}"
        with self._transaction() as db:
            db.execute("INSERT INTO info (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                       (row_name, os.urandom(32).hex()))
            return bytes.fromhex(db.execute("SELECT value FROM info WHERE name = %s", (row_name,)).fetchone()[0])  # type: ignore[index]

    @staticmethod
    def _delete_in(cur: psycopg.Cursor[Any], event: Event) -> None:
        """A deletion in the log: the calls and their events go; the rows that existed ride in the event (totals)."""
        call_ids = _storable(event.data.get("call_ids") or ())
        found = cur.execute(
            f"DELETE FROM calls WHERE call_id = ANY(%s) RETURNING call_id, started_at, status, {_NUMBER_COLUMNS}",
            (call_ids,),
        ).fetchall()
        cur.execute("DELETE FROM events WHERE call_id = ANY(%s)", (call_ids,))
        event.data["rows"] = [list(row) for row in found]

    def tail(self, after: int, limit: int = TAIL_MAX) -> tuple[list[Event], int]:
        """Events numbered above ``after``, in order (at most ``limit``), and the highest number trimmed."""
        with self._reader() as db:
            events = self._read_log(db, after, limit)
            row = db.execute("SELECT value FROM info WHERE name = 'log_trimmed'").fetchone()
        return events, int(row[0]) if row else 0

    def runs_jobs(self) -> bool:
        """Whether this process holds the jobs lock now (taken if free); asked about once a second.

        A session lock on a connection of its own: a process killed, or cut
        off from the server, loses it with the connection, and the next
        process to ask takes it.
        """
        db = self._jobs_db
        try:
            if db is None or db.closed or db.broken:
                self._jobs_held = False
                if db is not None:
                    db.close()
                self._jobs_db = db = psycopg.connect(self._conninfo, application_name=_process_name() + " jobs",
                                                     autocommit=True)
            if self._jobs_held:
                db.execute("SELECT 1")  # still connected, so still held
            else:
                self._jobs_held = bool(db.execute("SELECT pg_try_advisory_lock(%s)", (JOBS_LOCK,)).fetchone()[0])  # type: ignore[index]
        except psycopg.Error:
            self._jobs_held = False
            if self._jobs_db is not None:
                self._jobs_db.close()
                self._jobs_db = None
        return self._jobs_held

    def listen(self, notified: Any) -> None:
        """LISTEN for commits until :meth:`close`, calling ``notified(number)`` for each; blocks (a thread of its own).

        A lost connection is opened again (every second); the follower's
        timer covers what was missed meanwhile.
        """
        while not self._closing:
            try:
                with psycopg.connect(self._conninfo, application_name=_process_name() + " listen", autocommit=True) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    notified(0)  # connected: whatever was missed before is read now
                    while not self._closing:
                        for note in db.notifies(timeout=1.0):
                            try:
                                notified(int(note.payload))
                            except ValueError:
                                continue
            except psycopg.Error:
                time.sleep(1.0)

    def forget(self, call_ids: list[str]) -> list[tuple[Any, ...]]:
        """Delete calls and their events; the (call_id, started_at, status, numbers...) rows that existed."""
        call_ids = _storable(call_ids)
        if not call_ids:
            return []
        with self._transaction() as db:
            found = db.execute(
                f"DELETE FROM calls WHERE call_id = ANY(%s) RETURNING call_id, started_at, status, {_NUMBER_COLUMNS}",
                (call_ids,),
            ).fetchall()
            db.execute("DELETE FROM events WHERE call_id = ANY(%s)", (call_ids,))
        return [tuple(row) for row in found]

    # --------------------------------------------------------------- reading

    @contextmanager
    def _reader(self) -> Iterator[psycopg.Connection]:
        """A read-only connection, in one REPEATABLE READ transaction; failures are :class:`JournalUnavailable`."""
        try:
            with self._readers().connection() as db:
                yield db
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def restore(self, keep: int) -> Restored:
        """What a starting process needs: totals of every call, the newest ``keep`` whole, events to replay."""
        with self._reader() as db:
            hours = summed(db.execute(f"SELECT hour, status, count(*), {_COST_SUMS} FROM calls GROUP BY hour, status"))
            latencies = summed(db.execute(
                "SELECT hour, latency_bin, count(*), sum(latency_us) FROM calls WHERE latency_us IS NOT NULL "
                "GROUP BY hour, latency_bin"
            ))
            newest = db.execute("SELECT state FROM calls ORDER BY done DESC LIMIT %s", (keep,)).fetchall()
            calls = [thaw(row[0]) for row in reversed(newest)]
            events = [_logged(*row) for row in db.execute(
                "SELECT id, type, call_id, key, received_at, data FROM events WHERE NOT folded ORDER BY id"
            )]
            named = [thaw(row[0]) for row in db.execute(
                "SELECT state FROM calls WHERE call_id = ANY(%s)", (list({e.call_id for e in events}),)
            )]
            # Where this snapshot's history stands in the log: its newest row, or what the trim took past it.
            # Never the id sequence: it counts numbers taken by transactions not committed yet, and a
            # process starting from one of those skipped the events committed under it (a call short).
            log_seq = db.execute(
                "SELECT GREATEST((SELECT coalesce(max(id), 0) FROM events), (SELECT coalesce(max(seq), 0) FROM calls), "
                "(SELECT coalesce(max(value::bigint), 0) FROM info WHERE name = 'log_trimmed'))"
            ).fetchone()[0]  # type: ignore[index]
            seen = [tuple(r) for r in db.execute("SELECT key, seq FROM seen ORDER BY seq DESC LIMIT %s", (SEEN_KEPT,))]
            seen.reverse()
            row = db.execute("SELECT value FROM info WHERE name = 'last_seq'").fetchone()
            done = db.execute("SELECT max(done) FROM calls").fetchone()[0] or 0  # type: ignore[index]
            self._size = int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        return Restored(hours, latencies, calls, events, seen, int(row[0]) if row else 0, int(done), int(log_seq),  # type: ignore[arg-type]
                        named)

    def started_before(self, cutoff: float, limit: int) -> list[str]:
        """Ids of up to ``limit`` stored calls that started before ``cutoff`` (the retention purge)."""
        with self._reader() as db:
            return [row[0] for row in db.execute(
                "SELECT call_id FROM calls WHERE started_at < %s ORDER BY started_at LIMIT %s", (cutoff, limit)
            )]

    def numbers_between(self, lo: float, hi: float) -> list[tuple[Any, ...]]:
        """(call_id, started_at, status, numbers) of the stored calls started in [lo, hi), for a range's edge hours."""
        with self._reader() as db:
            found = db.execute(
                f"SELECT call_id, started_at, status, {_NUMBER_COLUMNS} FROM calls WHERE started_at >= %s AND started_at < %s",
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
        """Stored calls matching ``flt`` with ``done < below`` (not those in ``skip``), newest first (see SQLite's)."""
        where, args = _where(flt, below, list(skip))
        with self._reader() as db:  # one transaction: the count and the page see the same history
            total = None
            if count and flt.query:  # as SQLite's: a q is counted up to the limit, then stops
                total = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM calls WHERE {where} LIMIT %s) AS found",
                                   (*args, search.COUNT_LIMIT + 1)).fetchone()[0]  # type: ignore[index]
            elif count:
                total = db.execute(f"SELECT count(*) FROM calls WHERE {where}", args).fetchone()[0]  # type: ignore[index]
            ids = [row[0] for row in db.execute(
                f"SELECT call_id FROM calls WHERE {where} ORDER BY done DESC LIMIT %s OFFSET %s", (*args, limit, offset)
            )]
            calls: list[Call] = []
            read = 0
            for start in range(0, len(ids), 20):  # a few at a time: a page stops at max_bytes without reading further
                chunk = ids[start : start + 20]
                states = dict(db.execute("SELECT call_id, state FROM calls WHERE call_id = ANY(%s)", (chunk,)).fetchall())
                for call_id in chunk:
                    state = states.get(call_id)
                    if state is None:
                        continue
                    calls.append(thaw(state))
                    read += len(state)
                    if max_bytes is not None and read >= max_bytes:
                        return calls, total
        return calls, total

    def by_start(
        self, flt: Filter, below: int, skip: Iterable[int], limit: int, after: tuple[float, int] | None = None
    ) -> list[tuple[float, int]]:
        """(started_at, done) of the stored calls :meth:`page` would list, newest start first (ties: newest done)."""
        where, args = _where(flt, below, list(skip))
        if after is not None:
            where += " AND (started_at < %s OR (started_at = %s AND done < %s))"
            args += [after[0], after[0], after[1]]
        with self._reader() as db:
            return [tuple(row) for row in db.execute(  # type: ignore[misc]
                f"SELECT started_at, done FROM calls WHERE {where} ORDER BY started_at DESC, done DESC LIMIT %s", (*args, limit)
            )]

    def load_done(self, marks: list[int]) -> dict[int, Call]:
        """The stored calls with these completion numbers, by number (those deleted meanwhile are missing)."""
        with self._reader() as db:
            return {done: thaw(state) for done, state in db.execute(
                "SELECT done, state FROM calls WHERE done = ANY(%s)", (list(marks),)
            )}

    def load(self, call_id: str) -> Call | None:
        if "\x00" in call_id:  # no stored id holds one, and PostgreSQL's text cannot
            return None
        with self._reader() as db:
            row = db.execute("SELECT state FROM calls WHERE call_id = %s", (call_id,)).fetchone()
        return thaw(row[0]) if row else None

    def load_many(self, call_ids: Iterable[str]) -> list[Call]:
        ids = _storable(call_ids)
        if not ids:
            return []
        with self._reader() as db:
            return [thaw(row[0]) for row in db.execute("SELECT state FROM calls WHERE call_id = ANY(%s)", (ids,))]

    def bytes_on_disk(self) -> int:
        """The database's size as last measured (health reads it on the gevent loop: no query here)."""
        return self._size

    def backup(self, target: str) -> None:
        """Refused: PostgreSQL has its own online backup, which also knows its roles and settings."""
        raise JournalError(
            f"patter-dash backup copies an SQLite history; this one is in PostgreSQL ({self.path}). "
            f"Use PostgreSQL's own online backup: pg_dump --format=custom --file={target} '{self.path}' "
            "(it asks for the password, or reads PGPASSWORD / ~/.pgpass)"
        )


def _process_name() -> str:
    """``application_name``: who holds a connection (pg_stat_activity names each process's connections by it)."""
    return f"{_sibling_prefix()}pid={os.getpid()}"[:63]


def _sibling_prefix() -> str:
    """What the processes of one gunicorn master on one host share in :func:`_process_name`."""
    return f"patter-dash host={socket.gethostname()[:24]} ppid={os.getppid()} "


def _logged(seq: int, kind: str, call_id: str, key: str | None, received_at: float, data: bytes) -> Event:
    """A row of the log as an event numbered ``seq``; one that cannot be decoded (written by something else,
    or damaged) comes back as :data:`UNREADABLE`, which readers count and pass, never stopping on it."""
    try:
        event = unpack_event(kind, call_id, key, received_at, bytes(data))
    except Exception:
        log.warning("patter-dash: event %d of the log cannot be decoded (skipped)", seq)
        event = Event(UNREADABLE, call_id, {}, None, received_at)
    event.seq = seq
    return event


def _display(params: dict[str, Any]) -> str:
    """The URL as it may be shown (logs, health, errors): never the password."""
    user = params.get("user")
    host = params.get("host") or "localhost"
    if "," not in host and ":" in host:
        host = f"[{host}]"
    port = params.get("port")
    database = params.get("dbname") or ""
    if host.startswith("/"):  # a Unix socket's directory
        return f"postgresql://{user + '@' if user else ''}/{database}?host={host}"
    return f"postgresql://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}/{database}"


def _storable(call_ids: Iterable[str]) -> list[str]:
    """The ids that can be stored at all (no NUL: PostgreSQL's text cannot hold one, and ingest cleans them out)."""
    return [i for i in call_ids if "\x00" not in i]


def _like(term: str) -> str:
    """``LIKE``'s pattern for a substring: every character itself (``\\``, ``%`` and ``_`` escaped)."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(flt: Filter, below: int, skip: list[int]) -> tuple[str, list[Any]]:
    """SQL for :meth:`PostgresJournal.page`'s filters: SQLite's ``_where``, clause for clause."""
    clauses, args = ["done < %s"], [below]
    texts = (flt.status, flt.direction, flt.provider_mode, flt.tag, flt.provider, flt.model)
    if any(value and "\x00" in value for value in texts):
        # No stored text holds a NUL (cleaned at ingest; PostgreSQL's text cannot): SQLite finds nothing too.
        clauses.append("FALSE")
        texts = ()
    for column, value in (("status", flt.status), ("direction", flt.direction), ("provider_mode", flt.provider_mode)):
        if value and texts:
            clauses.append(f"{column} = %s")
            args.append(value)
    if flt.start is not None:
        clauses.append("started_at >= %s")
        args.append(flt.start)
    if flt.end is not None:
        clauses.append("started_at < %s")
        args.append(flt.end)
    if flt.tag and texts:
        clauses.append("strpos(tags, %s) > 0")
        args.append(_tags_column((flt.tag,)))
    if flt.has_notes is not None:
        clauses.append("has_notes = %s")
        args.append(bool(flt.has_notes))
    for kind, value in (("p", flt.provider), ("m", flt.model)):
        if value and texts:
            clauses.append("strpos(labels, %s) > 0")
            args.append(f"{TAG_SEPARATOR}{kind}:{value}{TAG_SEPARATOR}")
    for column, lo, hi in flt.bounds():
        # A call without the number (no latency reported) is left out, as in memory: NULL fails both tests.
        clauses.append(f"{column} IS NOT NULL")
        if lo is not None:
            clauses.append(f"{column} >= %s")
            args.append(lo)
        if hi is not None:
            clauses.append(f"{column} <= %s")
            args.append(hi)
    if flt.query:
        found = search.terms(flt.query)
        short = search.short_terms(found)
        for term in found:
            if term in short:  # under a trigram: the index has nothing to narrow by, a scan (as SQLite's instr)
                clauses.append("strpos(search, %s) > 0")
                args.append(term)
            else:  # the trigram index narrows, LIKE's recheck decides: exactly the substring test
                clauses.append("search LIKE %s")
                args.append(_like(term))
    if skip:
        clauses.append("done <> ALL(%s)")
        args.append(skip)
    return " AND ".join(clauses), args


class PostgresOutbox:
    """The ``alert_outbox`` rows (the :class:`~patter_dash.journal.Outbox` of PostgreSQL), on a connection of its own."""

    def __init__(self, conninfo: str, path: str) -> None:
        self._conninfo = conninfo
        self.path = path
        self._db: psycopg.Connection | None = None
        self._lock = threading.Lock()  # native threads of the offload pool share the connection

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            try:
                if self._db is None or self._db.closed or self._db.broken:
                    self._db = psycopg.connect(self._conninfo, application_name=_process_name() + " outbox", autocommit=True)
                with self._db.transaction():
                    yield self._db
            except psycopg.Error as exc:
                raise JournalUnavailable(f"cannot use the alert outbox at {self.path} ({SETTING}): {_first_line(exc)}") from None

    def sync(self, destination: str, add: list[tuple[str, bytes]], remove: list[int]) -> list[int]:
        """One transaction: delete ``remove`` rows, insert ``add`` (letter id, body); the new rows' ids."""
        with self._connection() as db:
            if remove:
                db.execute("DELETE FROM alert_outbox WHERE id = ANY(%s)", (remove,))
            now = time.time()
            return [
                db.execute("INSERT INTO alert_outbox (destination, letter_id, body, created_at) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (destination, letter_id, body, now)).fetchone()[0]  # type: ignore[index]
                for letter_id, body in add
            ]

    def pending(self, destination: str) -> list[tuple[int, str, bytes]]:
        with self._connection() as db:
            rows = db.execute("SELECT id, letter_id, body FROM alert_outbox WHERE destination = %s ORDER BY id",
                              (destination,)).fetchall()
        return [(int(row), letter_id, bytes(body)) for row, letter_id, body in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
