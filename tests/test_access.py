"""Access modes (issue 16, items 3 and 4): an exposed dashboard protects itself and stays usable.

Bound beyond loopback with no token, the standalone server generates a strong
token once, keeps it in its data directory (so it survives restarts), prints a
sign-in URL at start, and requires it from other machines; local requests stay
open. ``PATTER_DASH_TOKEN`` replaces it; ``PATTER_DASH_ALLOW_INSECURE`` opts out
loudly. Patter's own ``/?token=`` links sign in.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_for


class ExposedServer:
    """gunicorn as the README runs it, bound to 0.0.0.0 (every interface) on a free port."""

    def __init__(self, tmp: Path, **config: str) -> None:
        self.port = free_port()
        self.data = tmp / "data"
        self.log = tmp / f"gunicorn-{self.port}.log"
        self.config = {"PATTER_DASH_DATA_DIR": str(self.data), **config}
        self.proc: subprocess.Popen[bytes] | None = None
        self.public = f"{socket.gethostname()}:{self.port}"  # the Host another machine would send

    def start(self) -> ExposedServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATTER_DASH_")}
        env.update(self.config)
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"0.0.0.0:{self.port}", "wsgi:app"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._ready(), timeout=20, interval=0.05)
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, host: str | None = None, **kwargs) -> requests.Response:
        headers = {"Host": host or self.public, **kwargs.pop("headers", {})}
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=5, allow_redirects=False, **kwargs)


@pytest.fixture
def exposed(tmp_path: Path):
    servers: list[ExposedServer] = []

    def start(**config: str) -> ExposedServer:
        server = ExposedServer(tmp_path, **config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


SIGN_IN = re.compile(r"sign in from other machines at (http://\S+/dashboard/)\?token=(\S+)")


def test_exposed_without_a_token_generates_one_prints_where_to_sign_in_and_requires_it(exposed) -> None:
    server = exposed()
    found = SIGN_IN.search(server.logs())
    assert found, server.logs()[-2000:]
    url, token = found.groups()
    assert url == f"http://{server.public}/dashboard/" and len(token) >= 40
    token_file = server.data / "dashboard-token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    # Another machine: the API needs the token, the page offers the sign-in form.
    assert server.get("/api/v1/calls").status_code in (401, 403)
    assert server.get("/api/v1/calls", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page = server.get("/dashboard/")
    assert page.status_code == 401 and "Sign in" in page.text
    signed = server.get(f"/dashboard/?token={token}")
    assert signed.status_code == 303 and "token" not in signed.headers["Location"]
    cookie = signed.cookies.get("patter_dash_session")
    assert server.get("/api/v1/calls", cookies={"patter_dash_session": cookie}).status_code == 200
    # This machine, as in local development: open.
    assert server.get("/api/v1/calls", host=f"127.0.0.1:{server.port}").status_code == 200
    auth = server.get("/api/v1/health", host="127.0.0.1").json()["auth"]
    assert (auth["mode"], auth["token"], auth["token_file"]) == ("auto-token", True, str(token_file))
    assert token not in server.get("/api/v1/health", host="127.0.0.1").text
    # Never in the access log, though it came in the URL.
    assert all(token not in line for line in server.logs().splitlines() if '"GET ' in line)


def test_the_generated_token_survives_a_restart(exposed) -> None:
    first = exposed()
    token = SIGN_IN.search(first.logs()).group(2)
    first.stop()
    again = exposed()
    assert SIGN_IN.search(again.logs()).group(2) == token
    assert again.get("/api/v1/calls", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_an_explicit_token_replaces_the_generated_one(exposed) -> None:
    server = exposed(PATTER_DASH_TOKEN="explicit-token")
    assert not SIGN_IN.search(server.logs())
    assert not (server.data / "dashboard-token").exists()
    assert server.get("/api/v1/calls", headers={"Authorization": "Bearer explicit-token"}).status_code == 200
    assert server.get("/api/v1/calls", host="127.0.0.1").status_code == 401  # an explicit token binds everyone
    assert server.get("/api/v1/health", host="127.0.0.1", headers={"Authorization": "Bearer explicit-token"}).json()["auth"]["mode"] == "token"


def test_allow_insecure_opts_out_loudly(exposed) -> None:
    server = exposed(PATTER_DASH_ALLOW_INSECURE="1")
    assert "PATTER_DASH_ALLOW_INSECURE is on" in server.logs()
    assert server.get("/api/v1/calls").status_code == 200
    assert server.get("/api/v1/health").json()["auth"] == {"mode": "insecure", "token": False, "token_file": None, "loopback_ingest": False}


def test_patters_root_token_link_signs_in(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN="root-token")
    root = requests.get(f"{server.url}/?token=root-token", allow_redirects=False, timeout=5)
    assert root.status_code == 303 and root.headers["Location"].endswith("/dashboard/?token=root-token")
    page = requests.get(f"{server.url}/?token=root-token", timeout=5)  # followed: the dashboard swaps it for a cookie
    assert page.status_code == 200 and page.url == f"{server.url}/dashboard/"
    assert "token" not in page.url and any(r.cookies.get("patter_dash_session") for r in page.history)
    plain = requests.get(f"{server.url}/", allow_redirects=False, timeout=5)
    assert plain.status_code == 303 and plain.headers["Location"].endswith("/dashboard/")


def test_an_embedded_app_writes_no_token_file(tmp_path: Path, monkeypatch) -> None:
    from flask import Flask

    from patter_dash import PatterDashboard

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATTER_DASH_DATA_DIR", raising=False)
    dash = PatterDashboard(Flask("host"))
    assert dash.access.mode == "local" and not any(tmp_path.iterdir())
    dash.stop()


RACE = """
import sys
from pathlib import Path
from patter_dash.web.access import load_or_create_token
sys.stdin.readline()  # all started: go together
print(load_or_create_token(Path(sys.argv[1])))
"""


def test_processes_starting_together_agree_on_one_generated_token(tmp_path: Path) -> None:
    """gunicorn -w N (several workers on PostgreSQL): none reads the file while another is still writing it."""
    for attempt in range(5):
        path = tmp_path / f"data-{attempt}" / "dashboard-token"
        racers = [subprocess.Popen([sys.executable, "-c", RACE, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        answers = [racer.communicate("go\n", timeout=30) for racer in racers]
        assert all(racer.returncode == 0 for racer in racers), [err for _, err in answers]
        tokens = {out.strip() for out, _ in answers}
        assert tokens == {path.read_text().strip()} and len(tokens.pop()) >= 40
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and os.listdir(path.parent) == ["dashboard-token"]
