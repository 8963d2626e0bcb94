"""Operating durable history: online backup and restore, choosing the file or memory, where it lives by default."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from patter_dash.journal.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteJournal
from tests.conftest import ROOT, free_port, wait_for
from tests.test_history_crash import keyed_call
from tests.test_operations import preload


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patter_dash.run.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def test_backup_while_the_server_ingests_is_consistent_and_restores(live_server, tmp_path: Path):
    server = live_server(PATTER_DASH_MAX_BODY=str(8 << 20))
    preload(server, 10_000)  # ~10 MB: a backup made in steps would start over at every commit
    acked: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set():
            server.post_events(keyed_call("DURING", n))  # asserts 202 for each: the backup never blocks ingest
            acked.append(f"DURING-{n:04d}")
            n += 1

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    wait_for(lambda: len(acked) > 5, timeout=10)
    before_backup = list(acked)
    started = time.monotonic()
    # The default file is found the way the server finds it: from PATTER_DASH_DATA_DIR.
    done = cli("backup", str(tmp_path / "copy.db"), env={"PATTER_DASH_DATA_DIR": server.config["PATTER_DASH_DATA_DIR"]})
    took = time.monotonic() - started
    during = len(acked) - len(before_backup)
    stop.set()
    writer.join(10)
    assert done.returncode == 0, done.stderr
    assert "finished calls" in done.stdout and str(tmp_path / "copy.db") in done.stdout
    print(f"backup of {os.path.getsize(tmp_path / 'copy.db')} bytes took {took:.2f} s; {during} calls ingested meanwhile")
    assert during > 0, "ingest stalled during the backup"

    copy = tmp_path / "copy.db"
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}.partial").exists()

    # Restore, as the README says: the copy becomes the history file of a stopped server.
    restored = tmp_path / "restored" / "history.db"
    restored.parent.mkdir()
    restored.write_bytes(copy.read_bytes())
    again = live_server(PATTER_DASH_DB=str(restored), PATTER_DASH_MAX_CALLS="20000")
    overview = again.get("/api/v1/analytics/overview").json()["data"]
    assert overview["total_calls"] >= 10_000 + len(before_backup) - 1  # the last one may still have been live
    for call_id in before_backup[:-1]:
        detail = again.get(f"/api/v1/calls/{call_id}").json()["data"]
        assert detail["status"] == "completed" and len(detail["transcript"]) == 3
    assert again.get("/api/v1/calls/CA" + "0" * 31 + "1").json()["data"]["caller"] == "+15550000001"


def test_backup_refuses_what_it_cannot_do_with_a_message(tmp_path: Path):
    missing = cli("backup", "--db", str(tmp_path / "none.db"), str(tmp_path / "copy.db"))
    assert missing.returncode == 2 and f"no history at {tmp_path / 'none.db'}" in missing.stderr
    memory = cli("backup", str(tmp_path / "copy.db"), env={"PATTER_DASH_DB": ":memory:"})
    assert memory.returncode == 2 and "in memory only" in memory.stderr
    source = tmp_path / "history.db"
    db = sqlite3.connect(source)
    db.execute("CREATE TABLE t (x)")
    db.close()
    foreign = cli("backup", "--db", str(source), str(tmp_path / "copy.db"))
    assert foreign.returncode == 2 and "another application" in foreign.stderr
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "copy.db.partial").exists()
    ours = tmp_path / "ours.db"
    SQLiteJournal(str(ours)).check()  # an empty history
    nowhere = cli("backup", "--db", str(ours), str(tmp_path / "no" / "such" / "dir" / "copy.db"))
    assert nowhere.returncode == 2 and "cannot write the backup" in nowhere.stderr
    (tmp_path / "copy.db").write_text("precious")
    exists = cli("backup", "--db", str(ours), str(tmp_path / "copy.db"))
    assert exists.returncode == 2 and "never overwrites" in exists.stderr
    assert (tmp_path / "copy.db").read_text() == "precious"


def test_backup_to_a_name_with_uri_characters(tmp_path: Path):
    """'#', '?' and '%' are URI syntax: the copy was written, then read back through an unquoted URI
    (a stray file 'a' made, 'no such table', exit 1)."""
    ours = tmp_path / "ours.db"
    SQLiteJournal(str(ours)).check()
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in ("a#b.db", "a%41b.db", "q?mode=memory.db"):
        done = cli("backup", "--db", str(ours), str(folder / name))
        assert done.returncode == 0 and "finished calls" in done.stdout, (name, done.stderr)
        with sqlite3.connect(folder / name) as db:
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert sorted(p.name for p in folder.iterdir()) == ["a#b.db", "a%41b.db", "q?mode=memory.db"]


def _serve(cwd: Path, command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([*command[:1], *[a.replace("PORT", str(port)) for a in command[1:]]], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, port


def _history(port: int) -> dict | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).json()["history"]
    except (requests.RequestException, ValueError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    return proc.communicate(timeout=20)[0].decode(errors="replace")


def test_serve_persists_by_default_and_takes_db_or_memory(tmp_path: Path):
    python = sys.executable
    runs = {
        "default": [python, "-m", "patter_dash.run.cli", "serve", "--port", "PORT"],
        "db": [python, "-m", "patter_dash.run.cli", "serve", "--port", "PORT", "--db", str(tmp_path / "elsewhere" / "calls.db")],
        "memory": [python, "-m", "patter_dash.run.cli", "serve", "--port", "PORT", "--memory"],
        "python": [python, "-c", f"from patter_dash import serve; serve(port=PORT, db={str(tmp_path / 'py.db')!r})"],
    }
    for name, command in runs.items():
        cwd = tmp_path / name
        cwd.mkdir()
        proc, port = _serve(cwd, command)
        try:
            history = wait_for(lambda: _history(port), timeout=30, interval=0.2)
            requests.post(f"http://127.0.0.1:{port}/api/v1/ingest", json={"type": "call_end", "data": {"call_id": name}},
                          timeout=10).raise_for_status()
        finally:
            out = _stop(proc)
        expected = {
            "default": str(Path("patter-dash-data") / "history.db"),
            "db": str(tmp_path / "elsewhere" / "calls.db"),
            "python": str(tmp_path / "py.db"),
        }
        if name == "memory":
            assert history == {"mode": "memory", "calls": 0}, out
            assert not list(cwd.rglob("*.db")), "--memory wrote a file"
        else:
            assert history["mode"] == "sqlite" and history["path"] == expected[name], (history, out)
            path = cwd / expected[name] if name == "default" else Path(expected[name])
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:  # the call was written there
                assert db.execute("SELECT call_id FROM calls").fetchall() == [(name,)]
    both = cli("serve", "--db", "x.db", "--memory")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_make_run_on_a_fresh_checkout_keeps_history_in_the_data_dir(tmp_path: Path):
    """``make run``'s command (gunicorn -c gunicorn.conf.py wsgi:app) in a fresh directory makes patter-dash-data/history.db."""
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("gunicorn.conf.py", "wsgi.py"):
        (work / name).write_text((ROOT / name).read_text())
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "wsgi:app"],
                            cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        history = wait_for(lambda: _history(port), timeout=30, interval=0.2)
        requests.post(f"http://127.0.0.1:{port}/api/v1/ingest", json={"type": "call_end", "data": {"call_id": "MAKE-RUN"}},
                      timeout=10).raise_for_status()
    finally:
        out = _stop(proc)
    assert history["path"] == "patter-dash-data/history.db", out
    files = sorted(p.name for p in (work / "patter-dash-data").iterdir())
    assert "history.db" in files and "history.db-wal" not in files, files  # a clean stop leaves one file
    with sqlite3.connect(f"file:{work / 'patter-dash-data' / 'history.db'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT call_id FROM calls").fetchall() == [("MAKE-RUN",)]
