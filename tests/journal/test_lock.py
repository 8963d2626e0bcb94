"""One writer a history: a worker replacing another of the same master waits for it, on a native thread, under gevent.

gunicorn starts a HUP's new worker before the old one has let go of the
history; the new one opens its journal on a native thread (the pipeline's
``offload``) and waits there. Two real sibling processes (children of this
test, as two workers are children of one master): the first holds the
history for a while, the second, gevent-patched as in a worker (its monitor
thread on, as the tests' servers run), must wait for it and then open
(SQLite: without making a gevent hub on that native thread). On PostgreSQL
processes share the database, so the second opens at once, on that thread too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from patter_dash.journal import open_journal
journal = open_journal(sys.argv[1])
journal.open()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
journal.close()
"""

WAITER = """
from gevent import monkey
monkey.patch_all()
import sys, time
from patter_dash.core.cooperative import offload
from patter_dash.journal import open_journal
journal = open_journal(sys.argv[1])
started = time.monotonic()
offload(journal.open)
waited = time.monotonic() - started
# gevent's sleep on a native thread builds that thread a hub of its own (and its monitor thread), which
# failed now and then (BlockingSwitchOutError on an import lock): the worker then failed to boot.
from gevent._hub_local import get_hub_if_exists
print("hub on the native thread:", offload(lambda: get_hub_if_exists() is not None), flush=True)
print(f"opened after {waited:.2f}", flush=True)
journal.close()
"""


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEVENT_MONITOR_THREAD_ENABLE": "true"}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_a_sibling_worker_waits_on_its_native_thread_for_the_one_it_replaces(new_db: Callable[[], str], engine: str) -> None:
    db = new_db()
    holder = _python(HOLDER, db, "1.5")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held", holder.stderr
    waiter = _python(WAITER, db)
    out, err = waiter.communicate(timeout=60)
    holder.communicate(timeout=30)
    assert waiter.returncode == 0, err
    if engine == "sqlite":  # psycopg, seeing gevent's patches, waits on its sockets through gevent's select anyway
        assert "hub on the native thread: False" in out, out
    waited = float(out.split()[-1])
    if engine == "sqlite":  # one process writes a file: it did wait, then opened
        assert waited >= 0.5, f"opened after {waited} s while the other held the history"
    else:  # processes share a PostgreSQL database (each follows the others' log): no wait at all
        assert waited < 0.5, f"waited {waited} s for a process it shares the database with"
    assert "Traceback" not in err and "BlockingSwitchOutError" not in err, err
