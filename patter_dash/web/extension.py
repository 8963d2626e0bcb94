"""Extension: ``PatterDashboard``, the object a Flask app holds.

It resolves the ``PATTER_DASH_*`` settings, owns the :class:`Pipeline`
(queue, event thread, store, hub), registers the blueprint under the
configured prefix, and is the in-process feed API for the voice runtime::

    dash = PatterDashboard(app, token="secret")
    phone.serve(agent, port=8001, **dash.patter_callbacks())
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from flask import Flask

from ..config import Settings, check_names, load_settings
from ..core.cooperative import in_background
from ..core.measuring import RecordingMeasurer
from ..core.pipeline import Pipeline
from ..core.recordings import UPLOAD_DIR, Recordings
from ..core.store import CallStore
from ..journal import open_journal
from ..model.patter import patter_callbacks
from ..ops.alert_config import load_alerts
from ..ops.alerts import Alerts
from ..ops.metrics import Metrics
from . import access
from .access import Access
from .bodies import StreamStats
from .context import EXTENSION_KEY

log = logging.getLogger("patter_dash")


class PatterDashboard:
    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        """``options`` are settings by their short name (``token``, ``url_prefix``, ``ui``, ...).

        An unknown name is a :class:`~patter_dash.config.ConfigError` at once. The
        object keeps no reference to an app: what it serves is found through
        ``app.extensions`` (:mod:`patter_dash.web.context`).
        """
        self.options = {k.upper(): v for k, v in options.items()}
        check_names(self.options)
        self.settings = Settings()
        self.access = Access("local")
        self.pipeline = Pipeline()
        self.streams = StreamStats()
        self.metrics: Metrics | None = None
        self.alerts: Alerts | None = None
        #: What follows Patter's call logs into this dashboard (patter_dash/run/follow.py), when the server was told to.
        self.follower: Any = None
        self.recordings = Recordings((), None)
        self.measurer: RecordingMeasurer | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from .blueprint import build_blueprint

        self.settings = s = load_settings(app.config, self.options)
        self.access = access.resolve(s)
        alerts = load_alerts(s.ALERTS) if s.ALERTS else None  # a bad file stops the app here, with its line
        journal = open_journal(s.DB, sync=s.DB_SYNC)
        if journal is not None:
            journal.check()  # a corrupt, foreign or newer file stops the app here, by name
        self.pipeline = Pipeline(
            queue_size=s.QUEUE_SIZE,
            max_calls=s.MAX_CALLS,
            replay_size=s.REPLAY_SIZE,
            max_subscribers=s.MAX_SUBSCRIBERS,
            subscriber_queue=s.SUBSCRIBER_QUEUE,
            max_call_text=s.MAX_CALL_TEXT,
            max_active_calls=s.MAX_ACTIVE_CALLS,
            journal=journal,
            call_timeout=s.CALL_TIMEOUT or None,
            retention_days=s.RETENTION_DAYS,
            redact=s.REDACT,
            redact_key=s.REDACT_KEY.encode() if s.REDACT_KEY else None,
        )
        self.recordings = Recordings(recording_roots(s), upload_dir(s))
        # What was said goes with the call, however it was deleted (by id, by date, retention).
        self.pipeline.on_deleted.append(lambda ids: in_background(self.recordings.remove_uploads, ids))
        self.measurer = RecordingMeasurer(self.pipeline, self.recordings)
        self.metrics = Metrics(self.pipeline)  # this app's own registry: two dashboards in a process never clash
        self.alerts = Alerts(self.pipeline, alerts) if alerts is not None else None
        app.extensions[EXTENSION_KEY] = self
        # flask-sock reads its server options from app.config; a host app's own
        # values win, ours fill the gaps.
        sock_options = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
        sock_options.setdefault("max_message_size", s.WS_MAX_MESSAGE)
        sock_options.setdefault("ping_interval", s.WS_PING_INTERVAL)
        # Read whole frames at once: fewer wake-ups, and an oversized frame is
        # refused (close 1009) after it was read, not with a reset mid-send.
        sock_options.setdefault("receive_bytes", 65536)
        app.register_blueprint(build_blueprint(s), url_prefix=s.URL_PREFIX or None)
        if self.access.mode == "local":
            log.warning("patter-dash: no PATTER_DASH_TOKEN set; the dashboard is open to local requests only (loopback Host names)")
        elif self.access.mode == "auto-token":
            log.warning(
                "patter-dash: no PATTER_DASH_TOKEN set; local requests are open, others need the token generated in %s",
                self.access.token_file,
            )

    # ------------------------------------------------------------ runtime API

    def feed(self, event_type: str, data: Any, *, id: str | None = None) -> bool:
        """Hand one event to the dashboard. Never blocks, never raises."""
        try:
            self.pipeline.ensure_started()
        except Exception:  # the runtime must never see our failures
            log.exception("patter-dash could not start its event thread")
        return self.pipeline.feed(event_type, data, id=id)

    def patter_callbacks(self) -> dict[str, Callable[[Any], Awaitable[None]]]:
        """``on_call_start``, ``on_transcript``, ``on_metrics``, ``on_call_end`` for Patter's ``serve()``."""
        return patter_callbacks(self.feed)

    def start(self) -> None:
        """Start the event thread now (gunicorn's post_worker_init does this)."""
        self.pipeline.ensure_started()

    def stop(self, timeout: float = 5.0) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.alerts is not None:
            self.alerts.stop()
        self.pipeline.hub.shutdown()
        self.pipeline.stop(timeout)

    @property
    def store(self) -> CallStore:
        return self.pipeline.store

    def health(self) -> dict[str, Any]:
        # loopback_ingest: whether Patter's tokenless push is accepted from local clients
        # only because of the exemption (an explicit token is set and the setting is on).
        exempt = self.access.mode == "token" and self.settings.LOOPBACK_INGEST
        auth = {**self.access.view(), "loopback_ingest": exempt}
        view = {**self.pipeline.health(), "auth": auth, "export": self.streams.view()}
        if self.follower is not None:
            view["patter_logs"] = self.follower.view()
        return view


def recording_roots(settings: Settings) -> tuple[str, ...]:
    """``PATTER_DASH_RECORDINGS_DIRS``, else the Patter log root the dashboard follows (if that is set)."""
    if settings.RECORDINGS_DIRS:
        return settings.RECORDINGS_DIRS
    return (settings.PATTER_LOG_DIR,) if settings.PATTER_LOG_DIR else ()


def upload_dir(settings: Settings) -> str | None:
    """Where uploaded recordings are kept: beside the history file, else in the data directory; None in memory only."""
    if settings.DB and settings.DB != ":memory:":
        return os.path.join(os.path.dirname(os.path.abspath(settings.DB)), UPLOAD_DIR)
    if settings.DATA_DIR:
        return os.path.join(settings.DATA_DIR, UPLOAD_DIR)
    return None
