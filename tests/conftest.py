"""Shared fixtures: real gunicorn + gevent servers on free loopback ports, payloads, apps."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
#: Real payloads from the Patter SDK, copied from shared/patter-payloads (see its README).
PAYLOADS = ROOT / "tests" / "fixtures" / "patter-payloads"


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """gunicorn -c gunicorn.conf.py wsgi:app, as the README runs it, on a free port."""

    def __init__(self, tmp: Path, config: dict[str, Any], extra_args: list[str] | None = None, data: str = "data",
                 launcher: list[str] | None = None) -> None:
        self.port = free_port()
        # The standalone server keeps state (the generated token, its history) in a
        # data directory: the test's own, never the checkout's; one per server, as
        # one server writes one history file (start() again reuses it: a restart).
        # Many tests replay calls at fixed dates long past: the retention purge (its own
        # tests set it) would delete them under the test.
        self.config = {
            "PATTER_DASH_DATA_DIR": str(tmp / data),
            "PATTER_DASH_RETENTION_DAYS": "0",
            **{k: str(v) for k, v in config.items()},
        }
        self.extra_args = extra_args or []
        #: A command the server runs under, e.g. ``setpriv`` to drop privileges.
        self.launcher = launcher or []
        self.prefix = self.config.get("PATTER_DASH_URL_PREFIX", "").rstrip("/")
        self.token = self.config.get("PATTER_DASH_TOKEN")
        self.log_path = tmp / f"gunicorn-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, wait: bool = True) -> LiveServer:
        # Nothing may block the gevent loop: the monitor thread reports any
        # stall over 0.5 s, and the fixture fails the test when it does.
        env = {
            **os.environ,
            "GEVENT_MONITOR_THREAD_ENABLE": "true",
            "GEVENT_MAX_BLOCKING_TIME": "0.5",
            **self.config,
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [*self.launcher, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{self.port}", *self.extra_args, "wsgi:app"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if requests.get(f"{self.url}/api/v1/health", headers=self.headers, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pid(self) -> int:
        return requests.get(f"{self.url}/api/v1/health", headers=self.headers, timeout=5).json()["pid"]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers={**self.headers, **kwargs.pop("headers", {})}, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post_events(self, envelopes: list[dict[str, Any]]) -> requests.Response:
        response = requests.post(f"{self.url}/api/v1/ingest", json={"events": envelopes}, headers=self.headers, timeout=10)
        assert response.status_code in (200, 202), response.text
        return response

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """kill -9 the master and its worker, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``live_server(PATTER_DASH_TOKEN="...", ...)`` → a started :class:`LiveServer`."""
    servers: list[LiveServer] = []

    def start(extra_args: list[str] | None = None, *, launcher: list[str] | None = None, **config: Any) -> LiveServer:
        server = LiveServer(tmp_path, config, extra_args, data=f"data-{len(servers) + 1}" if servers else "data", launcher=launcher)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
    blocked = [s.logs() for s in servers if BLOCKED in s.logs()]
    # The report itself (what ran while the hub waited), not the log's tail.
    assert not blocked, "the gevent hub was blocked for more than 0.5 s:\n" + blocked[0][blocked[0].index(BLOCKED):][:6000]


BLOCKED = "appears to be blocked"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL server for the session (tests/pg.py), started by the first test that asks for it."""
    from tests.pg import PostgresServer

    server = PostgresServer().init().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_database(pg_server: Any) -> Iterator[Any]:
    """Factory: ``pg_database()`` → the URL of a new, empty database, dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(pg_server.database())
        return made[-1]

    yield make
    if not (pg_server.data / "postmaster.pid").exists():  # a test stopped it: bring it back for the next
        pg_server.start()
    for url in made:
        pg_server.drop(url)


@pytest.fixture
def app():
    from patter_dash.run.app import create_app

    application = create_app({"TESTING": True})
    yield application
    application.extensions["patter_dash"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


def post(target: Any, event_type: str, data: dict[str, Any], *, id: str | None = None,
         headers: dict[str, str] | None = None, status: int = 202) -> dict[str, Any]:
    """POST one event envelope to ``/api/v1/ingest`` and assert its status (202: applied); the JSON ack.

    ``target`` is a Flask test client or a :class:`LiveServer` (its prefix and token are used).
    """
    envelope: dict[str, Any] = {"type": event_type, "data": data}
    if id is not None:
        envelope["id"] = id
    if isinstance(target, FlaskClient):
        response = target.post("/api/v1/ingest", json=envelope, headers=headers or {})
        body = response.get_json()
    else:  # by duck type: tests import this module both as conftest and as tests.conftest
        response = requests.post(f"{target.url}/api/v1/ingest", json=envelope,
                                 headers={**target.headers, **(headers or {})}, timeout=10)
        body = response.json()
    assert response.status_code == status, body
    return body


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
