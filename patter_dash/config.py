"""Config: the ``PATTER_DASH_*`` settings, read from ``app.config`` or the environment.

Each key may be set in ``app.config`` (wins) or as an environment variable of
the same name; values are parsed and checked once at start, and a bad value
stops the app with a message naming the key (rq-dashboard's convention).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
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


def _list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value or "").split(",")
    return tuple(item.strip().lower() for item in items if item.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. The field name minus the prefix is the key."""

    TOKEN: str | None = None
    URL_PREFIX: str = ""
    UI: bool = True
    DEMO: bool = False
    MAX_CALLS: int = 10_000
    QUEUE_SIZE: int = 10_000
    REPLAY_SIZE: int = 10_000
    SUBSCRIBER_QUEUE: int = 2_000
    MAX_SUBSCRIBERS: int = 1_000
    HEARTBEAT: float = 15.0
    MAX_BODY: int = 1_048_576
    WS_MAX_MESSAGE: int = 1_048_576
    WS_PING_INTERVAL: float = 20.0
    ALLOWED_HOSTS: tuple[str, ...] = ()
    CORS_ORIGINS: tuple[str, ...] = ()
    LOOPBACK_INGEST: bool = True
    MAX_CALL_TEXT: int = 2_000_000
    MAX_ACTIVE_CALLS: int = 10_000
    BODY_TIMEOUT: float = 30.0
    SESSION_MAX_AGE: int = 43_200

    def replace(self, **changes: Any) -> Settings:
        return Settings(**{**self.__dict__, **changes})


PARSERS: dict[str, Callable[[Any], Any]] = {
    "TOKEN": _token,
    "URL_PREFIX": _prefix,
    "UI": _bool,
    "DEMO": _bool,
    "MAX_CALLS": _positive_int,
    "QUEUE_SIZE": _positive_int,
    "REPLAY_SIZE": _positive_int,
    "SUBSCRIBER_QUEUE": _positive_int,
    "MAX_SUBSCRIBERS": _positive_int,
    "HEARTBEAT": _positive_float,
    "MAX_BODY": _positive_int,
    "WS_MAX_MESSAGE": _positive_int,
    "WS_PING_INTERVAL": _positive_float,
    "ALLOWED_HOSTS": _list,
    "CORS_ORIGINS": _list,
    "LOOPBACK_INGEST": _bool,
    "MAX_CALL_TEXT": _positive_int,
    "MAX_ACTIVE_CALLS": _positive_int,
    "BODY_TIMEOUT": _positive_float,
    "SESSION_MAX_AGE": _positive_int,
}
PREFIX = "PATTER_DASH_"


def load_settings(
    app_config: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every key: explicit override, then app.config, then the environment."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
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
            values[f.name] = PARSERS[f.name](raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}={raw!r} is invalid: {exc}") from None
    return Settings(**values)
