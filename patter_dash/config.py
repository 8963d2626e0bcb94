"""Config: the ``PATTER_DASH_*`` settings, read from ``app.config`` or the environment.

Each key may be set in ``app.config`` (wins) or as an environment variable of
the same name; values are parsed and checked once at start, and a bad value
stops the app with a message naming the key (rq-dashboard's convention).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A ``PATTER_DASH_*`` value that cannot be used."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a positive integer")
    number = int(value)
    if number <= 0:
        raise ValueError("expected a positive integer")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a positive number")
    return number


def _prefix(value: Any) -> str:
    text = str(value or "").strip()
    if not text or text == "/":
        return ""
    if not text.startswith("/") or "?" in text or "#" in text or "//" in text:
        raise ValueError("expected a path like /ops/voice")
    return text.rstrip("/")


def _token(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not text:
        return None
    if not text.isascii() or not text.isprintable() or " " in text or len(text) > 1024:
        raise ValueError("expected printable ASCII without spaces, at most 1024 characters")
    return text


def _path(value: Any) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    if "\x00" in text:
        raise ValueError("expected a directory path")
    return text


def _non_negative(value: Any) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("expected a number >= 0 (0 turns it off)")
    return number


def _database(value: Any) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    if "\x00" in text:
        raise ValueError("expected a file path, a postgresql:// URL, or :memory: to keep history in memory only")
    return text


def _secret(value: Any) -> str | None:
    text = _token(value)
    if text is not None and len(text) < 16:
        raise ValueError("expected at least 16 characters (a random string: openssl rand -hex 32)")
    return text


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return parse


def _list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value or "").split(",")
    return tuple(item.strip().lower() for item in items if item.strip())


def _paths(value: Any) -> tuple[str, ...]:
    """Directories separated by ``os.pathsep`` (``:`` on POSIX), or a list of them."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(os.pathsep)
    out = tuple(str(item).strip() for item in items if str(item).strip())
    if any("\x00" in item for item in out):
        raise ValueError("expected directory paths separated by " + repr(os.pathsep))
    return out


def setting(default: Any, parse: Callable[[Any], Any]) -> Any:
    """A settings field: its default, and the parser its raw value (config or environment) goes through."""
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default and its parser. The field name minus the prefix is the key."""

    TOKEN: str | None = setting(None, _token)
    #: A second token that opens ``GET /metrics`` only (Bearer), for a Prometheus scraper.
    METRICS_TOKEN: str | None = setting(None, _token)
    URL_PREFIX: str = setting("", _prefix)
    UI: bool = setting(True, _bool)
    DEMO: bool = setting(False, _bool)
    MAX_CALLS: int = setting(10_000, _positive_int)
    QUEUE_SIZE: int = setting(10_000, _positive_int)
    REPLAY_SIZE: int = setting(10_000, _positive_int)
    SUBSCRIBER_QUEUE: int = setting(2_000, _positive_int)
    MAX_SUBSCRIBERS: int = setting(1_000, _positive_int)
    HEARTBEAT: float = setting(15.0, _positive_float)
    MAX_BODY: int = setting(1_048_576, _positive_int)
    WS_MAX_MESSAGE: int = setting(1_048_576, _positive_int)
    WS_PING_INTERVAL: float = setting(20.0, _positive_float)
    ALLOWED_HOSTS: tuple[str, ...] = setting((), _list)
    CORS_ORIGINS: tuple[str, ...] = setting((), _list)
    LOOPBACK_INGEST: bool = setting(True, _bool)
    MAX_CALL_TEXT: int = setting(2_000_000, _positive_int)
    MAX_ACTIVE_CALLS: int = setting(10_000, _positive_int)
    BODY_TIMEOUT: float = setting(30.0, _positive_float)
    SESSION_MAX_AGE: int = setting(43_200, _positive_int)
    DATA_DIR: str | None = setting(None, _path)
    #: Where history is kept: an SQLite file, or None / ``:memory:`` for memory only.
    DB: str | None = setting(None, _database)
    DB_SYNC: str = setting("normal", _choice("normal", "full"))
    RETENTION_DAYS: float = setting(90.0, _non_negative)
    CALL_TIMEOUT: float = setting(7200.0, _non_negative)
    ALLOW_INSECURE: bool = setting(False, _bool)
    #: The alert rules and destinations: a TOML file (schema in patter_dash/ops/alert_config.py); None: no alerts.
    ALERTS: str | None = setting(None, _path)
    #: What of callers' numbers and words is kept (patter_dash/model/redact.py): off, numbers, pii, metadata.
    REDACT: str = setting("off", _choice("off", "numbers", "pii", "metadata"))
    #: The key of the caller / callee hashes; None: a random one, made once and kept in the database.
    REDACT_KEY: str | None = setting(None, _secret)
    #: A Patter log root (``PATTER_LOG_DIR``: it holds ``calls/YYYY/MM/DD/<id>/``) the standalone server follows
    #: while it runs (patter_dash/run/follow.py); None: none.
    PATTER_LOG_DIR: str | None = setting(None, _path)
    #: Follow it by polling recent day folders instead of filesystem notifications (inotify).
    PATTER_LOG_POLL: bool = setting(False, _bool)
    #: The only directories recordings are ever served from (web/recordings.py); uploads go beside the history file.
    RECORDINGS_DIRS: tuple[str, ...] = setting((), _paths)
    #: Bytes an uploaded recording may have (PUT .../recording): 256 MiB is about 70 minutes of Patter's stereo WAV.
    RECORDING_MAX_BYTES: int = setting(268_435_456, _positive_int)

    def replace(self, **changes: Any) -> Settings:
        return Settings(**{**self.__dict__, **changes})


PREFIX = "PATTER_DASH_"


def check_names(options: Mapping[str, Any]) -> None:
    """Refuse an option no setting has (``tokn=`` would otherwise be silently ignored)."""
    known = {f.name for f in fields(Settings)}
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        names = ", ".join(f"{n.lower()}=" for n in unknown)
        raise ConfigError(f"unknown option(s) {names}; known: {', '.join(sorted(k.lower() for k in known))}")


def load_settings(
    app_config: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every key: explicit override, then app.config, then the environment."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    check_names(overrides)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = PREFIX + f.name
        if f.name in overrides and overrides[f.name] is not None:
            raw = overrides[f.name]
        elif key in app_config:
            raw = app_config[key]
        elif key in environ:
            raw = environ[key]
        else:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}={raw!r} is invalid: {exc}") from None
    return Settings(**values)
