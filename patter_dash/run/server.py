"""Server: running the standalone app under gunicorn with the gevent worker.

Owns the gunicorn settings and hooks (also loaded by the top-level
``gunicorn.conf.py``) and :func:`serve`, the Python equivalent of Patter's
``phone.serve(..., dashboard=True, dashboard_token=...)``. The README's
"Deployment" section explains each setting.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any

log = logging.getLogger("gunicorn.error")

#: Gunicorn settings, as a config file would set them.
SETTINGS: dict[str, Any] = {
    "bind": [os.environ.get("PATTER_DASH_BIND", "127.0.0.1:8000")],
    "worker_class": "gevent",
    # Calls live in memory in each process: more workers need a journal they share
    # (PATTER_DASH_DB=postgresql://...), which on_starting checks.
    "workers": 1,
    # Live subscribers (PATTER_DASH_MAX_SUBSCRIBERS, default 1000) + REST + ingest.
    "worker_connections": int(os.environ.get("PATTER_DASH_WORKER_CONNECTIONS", "2000")),
    # The gevent worker heartbeats from its own greenlet: long streams do not trip it.
    "timeout": 30,
    # Streams end within ~1 s of SIGTERM (post_worker_init); the rest gets this long.
    "graceful_timeout": 10,
    "keepalive": 5,
    "accesslog": "-",
    # %(U)s is the path without the query string: no ?token= in the logs.
    "access_log_format": '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms',
    # gunicorn's control socket can add workers at run time (and one shared
    # default path clashes between instances): this app must stay at one.
    "control_socket_disable": True,
}


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return address.startswith("unix:")


def on_starting(server: Any) -> None:
    if server.cfg.workers != 1 and not _shared_journal(server):
        raise SystemExit(
            f"patter-dash: refusing to start with {server.cfg.workers} workers: calls are kept in memory in each "
            "process, and an SQLite history (or none) is one process's, so more workers would split them. Run with "
            "-w 1 (the shipped default), or put the history in PostgreSQL (PATTER_DASH_DB=postgresql://...), where "
            "every worker follows one shared log and -w N works."
        )
    exposed = [address for address in server.cfg.bind if not _is_loopback(address)]
    if exposed:
        _announce_access(server, exposed)


def _shared_journal(server: Any) -> bool:
    """Whether the app's history is a journal several processes share (PostgreSQL)."""
    from ..journal import is_postgres_url

    return is_postgres_url({**os.environ, **server.cfg.env}.get("PATTER_DASH_DB"))


def _announce_access(server: Any, exposed: list[str]) -> None:
    """Bound beyond loopback: say how to sign in (the generated token's URL), or warn of the opt-out.

    The master resolves access the way the worker's app will (same settings,
    same token file, created once), so the URL printed is the one that works.
    """
    from ..config import ConfigError, load_settings
    from ..web import access
    from .app import DEFAULT_DATA_DIR

    environ = {**os.environ, **server.cfg.env}
    environ.setdefault("PATTER_DASH_DATA_DIR", DEFAULT_DATA_DIR)
    try:
        settings = load_settings({}, environ=environ)
    except ConfigError:
        return  # the app refuses to start with the message that names the setting
    urls = [f"http://{_public_host(address)}{settings.URL_PREFIX}/dashboard/" for address in exposed]
    access.announce(access.resolve(settings), urls)


def _public_host(address: str) -> str:
    host, _, port = address.rpartition(":")
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        host = socket.gethostname()  # a wildcard bind: the machine's name is what others type
    return f"{host}:{port}"


def post_worker_init(worker: Any) -> None:
    """Start the event thread in the worker, and end live streams promptly on shutdown."""
    import gevent

    dash = getattr(worker.wsgi, "extensions", {}).get("patter_dash")
    if dash is None:
        return
    dash.start()

    def watch_alive() -> None:
        # gunicorn flips worker.alive on SIGTERM; open streams would otherwise
        # hold the worker for the whole graceful_timeout.
        while worker.alive:
            gevent.sleep(0.25)
        dash.pipeline.hub.shutdown()  # worker_exit then writes what the event thread holds

    gevent.spawn(watch_alive)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker leaving cleanly (SIGTERM, a HUP's old worker) writes what it holds and closes its history.

    The file is then folded into one (no ``-wal`` beside it) and its lock is
    free at once for the worker that replaces this one. After kill -9 none of
    this runs, and nothing acknowledged depends on it.
    """
    dash = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("patter_dash")  # no wsgi: it failed to boot
    if dash is not None:
        dash.stop()
    # Last thing the worker does. Left to the interpreter's teardown, logging's handlers are freed after
    # gevent's modules are gone, and each one's weakref callback fails in gevent's get_ident: "Exception
    # ignored in _removeHandlerRef" and a traceback in the log at every clean stop. Flushed and closed
    # here, and off logging's own exit list, they go quietly.
    logging.shutdown()
    del logging._handlerList[:]  # type: ignore[attr-defined]


def serve(
    port: int = 8000,
    dashboard: bool = True,
    dashboard_token: str | None = None,
    *,
    host: str = "127.0.0.1",
    demo: bool = False,
    url_prefix: str | None = None,
    **settings: Any,
) -> None:
    """Run the standalone dashboard under gunicorn + gevent (blocks until stopped).

    ``dashboard=False`` serves ingest and the API without the UI; extra keyword
    arguments are ``PATTER_DASH_*`` settings by short name (``max_calls=...``).
    History persists to ``<data dir>/history.db`` unless ``db=`` names another
    file or a ``postgresql://`` database, or ``db=":memory:"`` keeps it in memory only.
    """
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    options = dict(token=dashboard_token, ui=dashboard, demo=demo, url_prefix=url_prefix, **settings)
    if dashboard_token:
        os.environ["PATTER_DASH_TOKEN"] = dashboard_token  # for on_starting's bind warning

    class _Standalone(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {**SETTINGS, "bind": [f"{host}:{port}"]}.items():
                self.cfg.set(key, value)
            self.cfg.set("on_starting", on_starting)
            self.cfg.set("post_worker_init", post_worker_init)
            self.cfg.set("worker_exit", worker_exit)

        def load(self) -> Any:
            return create_app(standalone=True, **{k: v for k, v in options.items() if v is not None})

    _Standalone().run()
