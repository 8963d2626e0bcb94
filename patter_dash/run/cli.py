"""CLI: ``patter-dash serve [...]`` runs the dashboard; ``backup FILE`` copies its history; ``import DIR`` reads Patter's call logs into it."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from urllib.parse import quote

from ..config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patter-dash", description="Live call dashboard for Patter voice agents")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the standalone dashboard under gunicorn + gevent")
    run.add_argument("--port", type=int, default=int(os.environ.get("PATTER_DASH_PORT", "8000")))
    run.add_argument("--host", default=os.environ.get("PATTER_DASH_HOST", "127.0.0.1"))
    run.add_argument("--token", default=None, help="require this token (default: $PATTER_DASH_TOKEN)")
    run.add_argument("--demo", action="store_true", help="also run a simulated voice runtime feeding calls")
    run.add_argument("--no-ui", dest="ui", action="store_false", help="serve ingest and the API only")
    run.add_argument("--url-prefix", default=None, help="mount everything under this path, e.g. /ops/voice")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--db", default=None, metavar="PATH|URL",
                       help="keep history in this SQLite file or postgresql:// database (default: $PATTER_DASH_DB, else <data dir>/history.db)")
    where.add_argument("--memory", action="store_true", help="keep history in memory only: lost at every restart")
    copy = sub.add_parser("backup", help="copy the history into FILE while the server runs (SQLite's backup API)")
    copy.add_argument("file", metavar="FILE", help="where the copy goes; must not exist yet")
    copy.add_argument("--db", default=None, metavar="PATH",
                      help="the history to copy (default: $PATTER_DASH_DB, else <data dir>/history.db)")
    logs = sub.add_parser("import", help="backfill every call under a Patter log root (PATTER_LOG_DIR) into the history")
    logs.add_argument("dir", metavar="DIR", help="the log root: the folder that holds calls/YYYY/MM/DD/<call id>/")
    logs.add_argument("--db", default=None, metavar="PATH",
                      help="the history to write (default: $PATTER_DASH_DB, else <data dir>/history.db)")
    args = parser.parse_args(argv)

    try:
        if args.command == "backup":
            return backup(args.db or standalone_db(), args.file)
        if args.command == "import":
            from ..config import load_settings
            from .importer import run_import

            db = args.db or standalone_db()
            return run_import(args.dir, db, load_settings({}, {"DB": db}))
        from .server import serve

        serve(
            port=args.port,
            dashboard=args.ui,
            dashboard_token=args.token,
            host=args.host,
            demo=args.demo or None,
            url_prefix=args.url_prefix,
            db=":memory:" if args.memory else args.db,
        )
    except ConfigError as exc:
        print(f"patter-dash: {exc}", file=sys.stderr)
        return 2
    return 0


def standalone_db() -> str:
    """The history file the standalone server uses with the current environment (as ``create_app`` resolves it)."""
    from .app import DEFAULT_DATA_DIR, DEFAULT_DB_NAME

    data_dir = os.environ.get("PATTER_DASH_DATA_DIR") or DEFAULT_DATA_DIR
    return os.environ.get("PATTER_DASH_DB") or os.path.join(data_dir, DEFAULT_DB_NAME)


def backup(source: str, target: str) -> int:
    """An online copy of ``source`` into the new file ``target``; the server may run and ingest meanwhile."""
    from ..journal import is_postgres_url, open_journal
    from ..journal.sqlite import SQLiteJournal

    if is_postgres_url(source):
        journal = open_journal(source)
        assert journal is not None
        journal.backup(target)  # refused, naming pg_dump
    if source == ":memory:":
        raise ConfigError("history is kept in memory only (PATTER_DASH_DB=:memory:): there is no file to back up")
    if not os.path.isfile(source):
        raise ConfigError(f"no history at {source}; name it with --db PATH or PATTER_DASH_DB")
    if os.path.lexists(target):
        raise ConfigError(f"{target} exists; a backup never overwrites a file: name a new one")
    try:
        SQLiteJournal(source).backup(target)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot write the backup {target}: {exc}") from None
    # A URI, so the copy is only read; its path quoted, as "#", "?" or "%" in a file name are URI syntax.
    with sqlite3.connect(f"file:{quote(Path(target).resolve().as_posix())}?mode=ro", uri=True) as copy:
        calls = copy.execute("SELECT count(*) FROM calls").fetchone()[0]
        live = copy.execute("SELECT count(DISTINCT call_id) FROM events").fetchone()[0]
    print(f"patter-dash: copied {source} to {target} ({os.path.getsize(target)} bytes: {calls} finished calls, "
          f"{live} with events not yet folded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
