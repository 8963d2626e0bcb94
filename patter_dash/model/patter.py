"""Patter: the shapes Patter 0.7.0 itself sends, mapped onto events.

Its ``notify_dashboard`` POST (classified its way) and the four coroutine
callbacks its ``serve()`` awaits (``on_call_start``, ``on_transcript``,
``on_metrics``, ``on_call_end``), wired to a non-blocking feed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .clean import ValidationError
from .events import Event, make_event


def event_from_patter_notify(body: Any) -> Event:
    """The body Patter 0.7.0's ``notify_dashboard`` POSTs, classified its way."""
    if not isinstance(body, Mapping):
        raise ValidationError("body must be a JSON object", [{"field": "body", "error": "must be an object"}])
    if body.get("status") == "initiated":
        event_type = "call_initiated"
    elif body.get("ended_at") is not None:
        event_type = "call_end"
    else:
        event_type = "call_start"
    return make_event(event_type, body, copy=False)


Feed = Callable[..., bool]


def patter_callbacks(feed: Feed) -> dict[str, Callable[[Any], Awaitable[None]]]:
    """The four coroutine callbacks Patter's ``serve()`` awaits, wired to ``feed``.

    Patter awaits them on the call's event loop, so they only enqueue.
    """

    async def on_call_start(data: Any) -> None:
        feed("call_start", data)

    async def on_transcript(data: Any) -> None:
        feed("transcript", data)

    async def on_metrics(data: Any) -> None:
        feed("turn", data)

    async def on_call_end(data: Any) -> None:
        feed("call_end", data)

    return {
        "on_call_start": on_call_start,
        "on_transcript": on_transcript,
        "on_metrics": on_metrics,
        "on_call_end": on_call_end,
    }
