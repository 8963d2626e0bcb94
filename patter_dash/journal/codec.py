"""Codec: a call's state and an accepted event as the bytes the journal keeps.

MessagePack (msgspec, already pinned): packed numbers stay ``bytes`` and
turns stay tuples of atoms, so a stored call decodes straight back into the
shapes :mod:`patter_dash.model.records` holds in memory. A snapshot is a map
by slot name, so a call written by an older release (fewer slots) still loads.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..model.events import Event
from ..model.records import STATE_SLOTS, Call, intern

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

_SLOTS = STATE_SLOTS


def freeze(call: Call) -> bytes:
    """One call's whole state."""
    return _encode({name: getattr(call, name) for name in _SLOTS})


def thaw(blob: bytes) -> Call:
    """A call from :func:`freeze`'s bytes, with the tuples and shared strings of a live one."""
    state: dict[str, Any] = _decode(blob)
    call = Call(state["call_id"], state["started_at"])
    for name in _SLOTS:
        if name in state:
            setattr(call, name, state[name])
    call.direction = intern(call.direction)
    call.status = intern(call.status)
    # (role, text, timestamp, extra); a call written before lines kept their extra fields has 3.
    call.transcript = [(intern(line[0]), line[1], line[2], line[3] if len(line) > 3 else None) for line in call.transcript]
    call.turns = tuple(tuple(turn) for turn in call.turns)
    call.flags = tuple(intern(f) for f in call.flags)
    call.tags = tuple(intern(t) for t in call.tags)  # a call written before annotations has none: ()
    call.status_history = tuple((intern(s), at) for s, at in call.status_history)
    if call.percentiles is not None:
        call.percentiles = tuple(call.percentiles)
    if call.meta:
        call.meta = {k: intern(v) for k, v in call.meta.items()}
    return call


def pack_event(event: Event) -> bytes:
    return _encode(event.data)


def unpack_event(kind: str, call_id: str, key: str | None, received_at: float, data: bytes) -> Event:
    """An event as it was accepted (already validated then: not checked again)."""
    return Event(kind, call_id, _decode(data), key, received_at)
