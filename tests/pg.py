"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, a throwaway cluster.

``initdb`` into a temporary directory (as the ``postgres`` user when the
tests run as root: the server refuses to run as root), ``pg_ctl start`` on a
free loopback port with its socket in that directory, one session for all the
tests; each test gets a database of its own (``CREATE DATABASE`` from
``template0``), dropped after it. ``fsync=off``: the cluster is thrown away,
and a server killed mid-test (``pg_ctl stop -m immediate``) still loses
nothing the OS holds; only a power loss would.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


#: The role that logs in with a password (:meth:`PostgresServer.password_role`).
PASSWORD_USER = "patter_pw"


def _bin_dir() -> Path | None:
    """``/usr/lib/postgresql/<newest version>/bin``, or None when the package is not installed."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "pg_ctl").exists()), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else None


class PostgresServer:
    """One cluster on a free loopback port; :meth:`database` makes a fresh database and gives its URL."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make system-deps does)")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="patter-dash-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:  # postgres will not run as root: the cluster is the postgres user's
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        # Trust for all but one role, which must give its password: a wrong one is a test case.
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
        )
        return self

    def start(self) -> PostgresServer:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        options = (f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        result = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                           "-t", "60", "start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.logs()}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)

    def password_role(self, password: str) -> None:
        """Create (or reset) :data:`PASSWORD_USER` with ``password``, allowed to create tables in ``public``."""
        with self.admin() as db:
            exists = db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_USER,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            db.execute(f"{verb} ROLE {PASSWORD_USER} LOGIN PASSWORD '{password}'")

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.admin() as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def wait_down(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (self.data / "postmaster.pid").exists():
            assert time.monotonic() < deadline, "PostgreSQL did not stop"
            time.sleep(0.05)
