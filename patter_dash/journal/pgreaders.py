"""Read-only PostgreSQL connections kept for reuse by the journal's native threads.

Why not psycopg_pool: its pool keeps connections up with worker threads, and
under gevent's patches those are greenlets of the hub of the native thread
that opened the pool, which run only while that thread waits on gevent. After
a server restart the dead connections were then never replaced, and every
read (the log follower's too) waited out its timeout: ingest stalled for
seconds. Here nothing runs in the background: a read takes an idle connection
(checked with an empty query, as psycopg_pool's ``check_connection`` does) or
opens one on the calling thread; one that fails is closed, not kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


class Readers:
    """Up to ``keep`` idle read-only connections; each use is one REPEATABLE READ transaction. Thread-safe."""

    def __init__(self, conninfo: str, *, keep: int = 4, **connect: Any) -> None:
        self._conninfo = conninfo
        self._connect_args = connect
        self._keep = keep
        self._idle: deque[psycopg.Connection] = deque()  # append and pop are atomic: no lock to share
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for one read (a consistent snapshot), rolled back and kept after; errors are psycopg's."""
        db = self._take()
        try:
            yield db
        except BaseException:
            self._give_back(db)
            raise
        self._give_back(db)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _take(self) -> psycopg.Connection:
        while self._idle:
            db = self._idle.pop()
            if _alive(db):
                return db
            db.close()  # the server closed it (restart, failover): a fresh one below
        db = psycopg.connect(self._conninfo, **self._connect_args)
        db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        db.read_only = True
        return db

    def _give_back(self, db: psycopg.Connection) -> None:
        if not (db.closed or db.broken):
            try:
                db.rollback()  # ends the snapshot
            except psycopg.Error:
                db.close()
        if db.closed or db.broken or self._closed or len(self._idle) >= self._keep:
            db.close()
        else:
            self._idle.append(db)


def _alive(db: psycopg.Connection) -> bool:
    if db.closed or db.broken:
        return False
    try:
        db.autocommit = True  # an empty query outside a transaction: one round trip, nothing started
        db.execute("")
        db.autocommit = False
        return True
    except psycopg.Error:
        return False
