"""Alert configuration: the TOML file named by ``PATTER_DASH_ALERTS``, checked whole at start.

A bad file is a :class:`~patter_dash.config.ConfigError` naming the file, the
line and the problem, so the server refuses to start rather than run without
the alerts someone relied on. The schema (README, "Alerts")::

    [settings]                # optional
    cooldown = 300            # default per rule: seconds before a resolved rule may notify again
    history = 50              # notifications kept per rule for GET /api/v1/alerts

    [[destinations]]
    name = "ops"              # what rules name
    type = "webhook"          # webhook (signed JSON) | slack (incoming-webhook body)
    url = "https://hooks.example.com/patter"
    secret = "..."            # webhook: required, the HMAC-SHA256 key
    timeout = 5               # seconds per attempt
    max_attempts = 8          # then the notification is dropped, counted and logged
    queue = 1000              # notifications waiting at most; past it the oldest is dropped

    [[rules]]
    name = "slow-turn"
    kind = "turn_latency"     # see KINDS
    threshold = 1500          # in the kind's unit
    window = 300              # seconds; windowed kinds only
    min_calls = 5             # failure_rate, cost_per_call: fewer calls in the window never fire
    cooldown = 300
    destinations = ["ops"]    # default: every destination
    scope = { direction = "inbound", callee = "+15550001234", provider = "deepgram", model = "nova-3" }

Only URLs written here are ever called; nothing a request sends names one.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import ConfigError

#: kind -> (unit, windowed, description)
KINDS: dict[str, tuple[str, bool, str]] = {
    "turn_latency": ("ms", False, "a live call's turn answered slower than threshold ms (agent_response_ms, else total_ms)"),
    "stuck_call": ("s", False, "a live call with no event for threshold seconds"),
    "p95_latency": ("ms", True, "P95 of turn response latency over the window above threshold ms"),
    "failure_rate": ("%", True, "failed / no-answer / busy / timeout calls over the window above threshold %"),
    "cost_per_call": ("USD", True, "average cost of the calls that ended in the window above threshold USD"),
    "cost_per_hour": ("USD", True, "cost of the calls that ended in the window, per hour, above threshold USD"),
    "cost_per_day": ("USD", True, "cost of the calls that ended in the window, per day, above threshold USD"),
    "no_calls": ("s", False, "no call started for threshold seconds"),
}
SCOPE_KEYS = ("callee", "direction", "provider", "model")
DESTINATION_TYPES = ("webhook", "slack")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_RULE_KEYS = {"name", "kind", "threshold", "window", "min_calls", "cooldown", "destinations", "scope"}
_DEST_KEYS = {"name", "type", "url", "secret", "timeout", "max_attempts", "queue"}
_SETTINGS_KEYS = {"cooldown", "history"}
_TOP_KEYS = {"settings", "destinations", "rules"}
#: Past a float's exact integers no setting means anything (and a huge TOML integer overflows a float).
_MAX_NUMBER = 2**53
_MAX_URL = 2048


@dataclass(frozen=True)
class Destination:
    name: str
    type: str
    url: str
    secret: str | None = None
    timeout: float = 5.0
    max_attempts: int = 8
    queue: int = 1000


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    threshold: float
    window: float = 300.0
    min_calls: int = 1
    cooldown: float = 300.0
    destinations: tuple[str, ...] = ()
    scope: dict[str, str] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return KINDS[self.kind][0]

    @property
    def windowed(self) -> bool:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class AlertConfig:
    rules: tuple[Rule, ...] = ()
    destinations: tuple[Destination, ...] = ()
    history: int = 50


def load_alerts(path: str) -> AlertConfig:
    """Read and check the whole file; a :class:`ConfigError` with ``<file>:<line>: <problem>`` if anything is wrong."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"PATTER_DASH_ALERTS: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)"
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Checker(path, text).check(data)


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    # -------------------------------------------------------- locating

    def _table_line(self, table: str, index: int | None) -> int:
        """The line of ``[table]`` or of the ``index``-th ``[[table]]`` (1-based; 0 if not found)."""
        header = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]" if index is not None else rf"^\s*\[\s*{table}\s*\]")
        seen = -1
        for n, line in enumerate(self.lines, 1):
            if header.match(line):
                seen += 1
                if index is None or seen == index:
                    return n
        return 0

    def _line(self, table: str, index: int | None, key: str | None) -> int:
        start = self._table_line(table, index)
        if key is None or not start:
            return start
        pattern = re.compile(rf"^\s*(\"{re.escape(key)}\"|{re.escape(key)})\s*[=.]")
        inline = re.compile(rf"[{{,]\s*{re.escape(key)}\s*=")
        for n in range(start + 1, len(self.lines) + 1):
            line = self.lines[n - 1]
            if re.match(r"^\s*\[", line):
                break
            if pattern.match(line) or inline.search(line):
                return n
        return start

    def fail(self, problem: str, table: str = "", index: int | None = None, key: str | None = None) -> ConfigError:
        line = self._line(table, index, key) if table else 0
        where = f"{self.path}:{line}" if line else self.path
        what = f"{table}[{index}]" if index is not None else table
        if key:
            what = f"{what}.{key}" if what else key
        return ConfigError(f"{where}: {what + ': ' if what else ''}{problem}")

    # --------------------------------------------------------- checking

    def check(self, data: dict[str, Any]) -> AlertConfig:
        for key in data:
            if key not in _TOP_KEYS:
                raise self.fail(f"unknown table {key!r}; expected settings, destinations, rules")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise self.fail("must be a table", "settings")
        self._unknown(settings, _SETTINGS_KEYS, "settings", None)
        cooldown = self._number(settings, "cooldown", 300.0, "settings", None, minimum=0)
        history = int(self._number(settings, "history", 50, "settings", None, minimum=1, integer=True, maximum=1000))
        destinations = self._list(data, "destinations")
        rules = self._list(data, "rules")
        dests = tuple(self._destination(d, i) for i, d in enumerate(destinations))
        names = [d.name for d in dests]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self.fail(f"destination {name!r} is named twice", "destinations", i, "name")
        parsed = tuple(self._rule(r, i, cooldown, set(names)) for i, r in enumerate(rules))
        rule_names = [r.name for r in parsed]
        for i, name in enumerate(rule_names):
            if name in rule_names[:i]:
                raise self.fail(f"rule {name!r} is named twice", "rules", i, "name")
        return AlertConfig(parsed, dests, history)

    def _list(self, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
        items = data.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self.fail(f"must be written as [[{key}]] tables", key)
        return items

    def _unknown(self, table: dict[str, Any], allowed: set[str], name: str, index: int | None) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown field; expected one of {', '.join(sorted(allowed))}", name, index, key)

    def _string(self, table: dict[str, Any], key: str, where: str, index: int | None, required: bool = True) -> str | None:
        if key not in table:
            if required:
                raise self.fail(f"{key} is required", where, index)
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail("must be a non-empty string", where, index, key)
        return value

    def _number(self, table: dict[str, Any], key: str, default: float, where: str, index: int | None, *,
                minimum: float = 0, maximum: float = _MAX_NUMBER, integer: bool = False, strict: bool = False) -> float:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.fail(f"must be {'an integer' if integer else 'a number'}", where, index, key)
        # TOML integers are unbounded: compared as they are, never turned into a float (which overflows).
        if (isinstance(value, float) and not math.isfinite(value)) or value < minimum or (strict and value <= minimum) or value > maximum:
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            if maximum != _MAX_NUMBER or value > maximum:
                bound += f" and <= {maximum:g}"
            shown = repr(value) if abs(value) < 1e16 or isinstance(value, float) else "a number of more than 16 digits"
            raise self.fail(f"must be {bound} (got {shown})", where, index, key)
        return value

    def _destination(self, table: dict[str, Any], i: int) -> Destination:
        where = "destinations"
        self._unknown(table, _DEST_KEYS, where, i)
        name = self._string(table, "name", where, i)
        assert name is not None
        if not _NAME.match(name):
            raise self.fail("must be 1-64 letters, digits, '_', '.', ':' or '-'", where, i, "name")
        kind = self._string(table, "type", where, i)
        if kind not in DESTINATION_TYPES:
            raise self.fail(f"must be one of {', '.join(DESTINATION_TYPES)} (got {kind!r})", where, i, "type")
        url = self._string(table, "url", where, i)
        assert url is not None
        if len(url) > _MAX_URL or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
            raise self.fail(f"must be a URL of at most {_MAX_URL} characters, without spaces or control characters", where, i, "url")
        try:
            parts = urlsplit(url)
            port = parts.port  # raises for a port that is not a number from 0 to 65535
        except ValueError as exc:
            raise self.fail(f"is not a URL ({exc})", where, i, "url") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise self.fail("must be an http:// or https:// URL with a host (and a port from 1 to 65535)", where, i, "url")
        secret = self._string(table, "secret", where, i, required=kind == "webhook")
        return Destination(
            name, kind, url, secret,
            timeout=self._number(table, "timeout", 5.0, where, i, minimum=0, maximum=60, strict=True),
            max_attempts=int(self._number(table, "max_attempts", 8, where, i, minimum=1, maximum=100, integer=True)),
            queue=int(self._number(table, "queue", 1000, where, i, minimum=1, maximum=100_000, integer=True)),
        )

    def _rule(self, table: dict[str, Any], i: int, cooldown: float, destinations: set[str]) -> Rule:
        where = "rules"
        self._unknown(table, _RULE_KEYS, where, i)
        name = self._string(table, "name", where, i)
        assert name is not None
        if not _NAME.match(name):
            raise self.fail("must be 1-64 letters, digits, '_', '.', ':' or '-'", where, i, "name")
        kind = self._string(table, "kind", where, i)
        if kind not in KINDS:
            raise self.fail(f"must be one of {', '.join(KINDS)} (got {kind!r})", where, i, "kind")
        if "threshold" not in table:
            raise self.fail(f"threshold is required (in {KINDS[kind][0]})", where, i)
        threshold = self._number(table, "threshold", 0, where, i, minimum=0)
        if not KINDS[kind][1] and "window" in table:
            raise self.fail(f"a {kind} rule has no window", where, i, "window")
        window = self._number(table, "window", 300.0, where, i, minimum=0, maximum=7 * 86_400, strict=True)
        min_calls = int(self._number(table, "min_calls", 1, where, i, minimum=1, integer=True, maximum=1_000_000))
        rule_cooldown = self._number(table, "cooldown", cooldown, where, i, minimum=0)
        named = table.get("destinations")
        if named is None:
            targets: tuple[str, ...] = tuple(sorted(destinations))
        else:
            if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
                raise self.fail("must be a list of destination names", where, i, "destinations")
            for n in named:
                if n not in destinations:
                    raise self.fail(f"names no destination {n!r}", where, i, "destinations")
                if named.count(n) > 1:
                    raise self.fail(f"names destination {n!r} twice (each notification would be sent twice)", where, i, "destinations")
            targets = tuple(named)
        scope = table.get("scope", {})
        if not isinstance(scope, dict):
            raise self.fail("must be a table", where, i, "scope")
        for key, value in scope.items():
            if key not in SCOPE_KEYS:
                raise self.fail(f"unknown scope field {key!r}; expected one of {', '.join(SCOPE_KEYS)}", where, i, "scope")
            if not isinstance(value, str) or not value:
                raise self.fail(f"scope.{key} must be a non-empty string", where, i, "scope")
        return Rule(name, kind, float(threshold), float(window), min_calls, float(rule_cooldown), targets, dict(scope))
