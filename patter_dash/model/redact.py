"""Redaction at ingest (``PATTER_DASH_REDACT``): what of a caller's words and numbers is kept.

Applied by the pipeline to each accepted event's cleaned data, once, before
it is journaled, applied, published or alerted on, so nothing unredacted
reaches the disk, memory, a live stream or an export. The modes build on one
another:

``off``       nothing changes (the default).
``numbers``   caller and callee (and number fields Patter and Twilio send under other names, anywhere in
              the event) are shown as ``+1555•••4567``; beside the top-level ones, ``caller_hash`` /
              ``callee_hash`` hold a keyed hash (HMAC-SHA256, 16 hex digits) so one caller's calls
              still group together.
``pii``       also every text a caller could have filled (transcript lines, turns' words, tool fields,
              unknown fields, even dict keys): e-mail addresses → ``[email]``, Luhn-valid card numbers
              → ``[card]``, phone numbers → ``[phone]``, any other number of 6+ digits → ``[number]``
              (and numeric values of 6+ digits in fields patter-dash does not model).
``metadata``  as ``pii``, and no transcript or other text at all: line texts and turn words are
              emptied, a line's own fields (tool arguments and results) dropped, call_end's transcript
              left out, and the strings of fields patter-dash does not model become null (numbers and
              booleans stay: metrics and costs).

Every pattern runs in time linear in the text (no backtracking across a
run): a 20,000-character line of adversarial digits is redacted in
milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

MODES = ("off", "numbers", "pii", "metadata")

#: Replacement tokens (documented in the README).
EMAIL, CARD, PHONE, NUMBER = "[email]", "[card]", "[phone]", "[number]"
MASK = "•••"
#: Hex digits of the keyed hash kept beside a masked number (64 bits: collisions are not a concern).
HASH_DIGITS = 16

#: Fields that hold a phone number (or SIP / client address) wherever they appear in an event.
NUMBER_KEYS = frozenset({
    "caller", "callee", "from", "to", "from_number", "to_number", "phone", "phone_number", "caller_id",
    "caller_number", "callee_number", "called", "forwarded_from",
})
#: Identity and labels: never redacted (an id must still name its call; providers and models are not caller text).
_STRUCTURAL = frozenset({
    "call_id", "role", "status", "direction", "provider_mode", "stt_provider", "tts_provider", "llm_provider",
    "telephony_provider", "stt_model", "tts_model", "llm_model",
})
#: Modelled fields of a turn, a line and CallMetrics that hold numbers only (left as they are).
_TURN_NUMBERS = frozenset({"turn_index", "latency", "stt_audio_seconds", "tts_characters", "timestamp"})
_LINE_NUMBERS = frozenset({"timestamp", "turnIndex"})
_EVENT_NUMBERS = frozenset({"timestamp", "started_at", "ended_at", "cost_so_far", "llm_ttft_ms"})
_METRICS_NUMBERS = frozenset({
    "duration_seconds", "cost", "latency_avg", "latency_p50", "latency_p90", "latency_p95", "latency_p99",
})
#: Events whose top-level caller / callee become the call's own (the store reads them there).
_IDENTITY_EVENTS = frozenset({"call_initiated", "call_start", "call_status", "call_end"})

# --------------------------------------------------------------- patterns

# Each match can start only where a run starts (the lookbehinds) and its
# quantifiers are possessive, so no character is scanned more than a bounded
# number of times: linear, whatever the text (Python >= 3.11).
_LOCAL = r"[\w.%+'\-]"
_EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}++@[\w\-]++(?:\.[\w\-]++)++")
_SEP = r"[ .\-()]"
#: A number as people write it: digits joined by at most two of space . - ( ), maybe after + or (.
_DIGITS = re.compile(rf"(?<!\d)(?<!\d{_SEP})(?<!\d{_SEP}{{2}})[+(]?\d(?:{_SEP}{{0,2}}\d)*+")
_NOT_DIGIT = re.compile(r"\D")


def luhn(digits: str) -> bool:
    """Whether ``digits`` pass the Luhn check (payment card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _number(match: re.Match[str]) -> str:
    found = match.group()
    digits = _NOT_DIGIT.sub("", found)
    n = len(digits)
    if n < 6:
        return found  # a time, an amount, a count: not identifying
    if 13 <= n <= 19 and luhn(digits):
        return CARD
    if 7 <= n <= 15 and (found[0] in "+(" or len(found) > n or n in (10, 11)):
        return PHONE
    return NUMBER


def redact_text(text: str) -> str:
    """``text`` with e-mail addresses, card numbers, phone numbers and 6+ digit numbers replaced by tokens."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    return _DIGITS.sub(_number, text)


def _normal_number(value: str) -> str:
    """A phone number without its spacing (``+1 (555) 123-4567`` → ``+15551234567``); other addresses as sent."""
    stripped = value.strip()
    compact = re.sub(r"[ .\-()]", "", stripped)
    if compact[1:].isdigit() if compact.startswith("+") else compact.isdigit():
        return compact
    return stripped


def mask_number(value: str) -> str:
    """``+15551234567`` → ``+1555•••4567``: the first five and last four characters, or only the mask when short."""
    value = _normal_number(value)
    if not value:
        return ""
    if len(value) < 10:
        return MASK
    return f"{value[:5]}{MASK}{value[-4:]}"


def number_hash(key: bytes, value: str) -> str:
    """A keyed hash of a number (HMAC-SHA256, :data:`HASH_DIGITS` hex digits): same number, same hash, per key."""
    return hmac.new(key, _normal_number(value).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:HASH_DIGITS]


#: A search that is a whole phone number (spacing aside), nothing else.
_WHOLE_NUMBER = re.compile(r"\+?\d{7,15}")


def hash_query(redactor: Redactor, query: str) -> str:
    """A search for a whole phone number, as the hash its calls keep (the number itself is not stored)."""
    normal = _normal_number(query)
    return redactor.hash(normal) if _WHOLE_NUMBER.fullmatch(normal) else query


# ------------------------------------------------------------------ events


class Redactor:
    """One mode and its hashing key, applied to events' data in place."""

    def __init__(self, mode: str, key: bytes) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown redaction mode {mode!r}")
        self.mode = mode
        self.key = key
        self.text: Callable[[str], str] = (lambda s: s) if mode in ("off", "numbers") else redact_text
        self.drop_transcript = mode == "metadata"

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def hash(self, value: str) -> str:
        return number_hash(self.key, value)

    def event(self, event_type: str, data: dict[str, Any]) -> None:
        """Redact one event's cleaned, validated ``data`` in place; it stays valid for its type."""
        if self.mode == "off":
            return
        for name in list(data):
            value = data[name]
            if name in _STRUCTURAL or name in _EVENT_NUMBERS:
                continue
            if name.lower() in NUMBER_KEYS:
                data[name] = self._number(value)
                if name in ("caller", "callee") and event_type in _IDENTITY_EVENTS and isinstance(value, str) and value:
                    data[f"{name}_hash"] = self.hash(value)
            elif name == "text" and event_type == "transcript":
                data[name] = "" if self.drop_transcript else self.text(value)
            elif name == "turnIndex" and event_type == "transcript":
                continue
            elif name == "turn" and event_type == "turn":
                self._turn(value)
            elif name in ("transcript", "conversation_history") and event_type == "call_end":
                if self.drop_transcript:
                    del data[name]
                elif isinstance(value, list):
                    for line in value:
                        self._line(line)
            elif name == "metrics" and isinstance(value, dict):
                self._metrics(value)
            elif self.drop_transcript and event_type == "transcript":
                del data[name]  # a line's own fields (tool arguments, results) are transcript too
            else:
                self._put(data, name, self._any(value))

    def _put(self, fields: dict[str, Any], name: str, value: Any) -> None:
        """Set an unmodelled field, its name redacted too (a name is caller text as much as a value)."""
        clean = self.text(name)
        if clean != name:
            del fields[name]
        fields[clean] = value

    def _number(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_number(value)
        if type(value) in (int, float):
            return mask_number(str(int(value)))  # a number sent as a JSON number
        return self._any(value)

    def _line(self, line: Any) -> None:
        if not isinstance(line, dict):
            return
        for name in list(line):
            value = line[name]
            if name == "role" or name in _LINE_NUMBERS:
                continue
            if name == "text" and isinstance(value, str):
                line[name] = self.text(value)
            else:
                self._put(line, name, self._any(value))

    def _turn(self, turn: Any) -> None:
        if not isinstance(turn, dict):
            return
        for name in list(turn):
            value = turn[name]
            if name in _TURN_NUMBERS:
                continue
            if name in ("user_text", "agent_text") and isinstance(value, str):
                turn[name] = "" if self.drop_transcript else self.text(value)
            else:
                self._put(turn, name, self._any(value))

    def _metrics(self, metrics: dict[str, Any]) -> None:
        for name in list(metrics):
            value = metrics[name]
            if name in _STRUCTURAL or name in _METRICS_NUMBERS:
                continue
            if name == "turns" and isinstance(value, list):
                for turn in value:
                    self._turn(turn)
            else:
                self._put(metrics, name, self._any(value))

    def _any(self, value: Any) -> Any:
        """A field patter-dash does not model: every string in it, keys too; number fields masked.

        ``metadata`` keeps no text there at all (a summary, a note): its strings become null.
        """
        if isinstance(value, str):
            return None if self.drop_transcript else self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                out[self.text(k)] = self._number(v) if k.lower() in NUMBER_KEYS else self._any(v)
            return out
        if isinstance(value, list):
            return [self._any(v) for v in value]
        if self.mode != "numbers" and type(value) in (int, float) and abs(value) >= 100_000:
            return NUMBER  # a phone or card number sent as a number
        return value
