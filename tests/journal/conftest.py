"""The journal tests run against both engines where they are about what the journal means.

``new_db()`` gives a fresh, empty history (an SQLite file's path or a
PostgreSQL database's URL, as ``PATTER_DASH_DB`` takes it); :func:`query`
looks behind the journal at its tables, which have the same names and columns
in both. A test about SQLite's own file (corruption, WAL, the schema-1
fixture, the online backup) does not take ``engine``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def new_db(engine: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Callable[[], str]:
    if engine == "sqlite":
        return lambda: str(tmp_path_factory.mktemp("history") / "history.db")
    return request.getfixturevalue("pg_database")  # type: ignore[no-any-return]


def query(setting: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` (no parameters) on the history ``setting`` names, committed; its rows."""
    if setting.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(setting, autocommit=True) as db:
            cur = db.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    db = sqlite3.connect(setting)
    try:
        with db:
            return db.execute(sql).fetchall()
    finally:
        db.close()
