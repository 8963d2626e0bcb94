"""A small SSE test client over requests that keeps the raw bytes."""

from __future__ import annotations

import json
import time
from typing import Any

import requests


class SSEClient:
    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, timeout))
        self.raw = b""
        self._buffer = b""
        self._chunks = self.response.iter_content(chunk_size=None)

    @property
    def status(self) -> int:
        return self.response.status_code

    def _fill(self) -> bool:
        try:
            chunk = next(self._chunks)
        except (StopIteration, requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
            return False
        self.raw += chunk
        self._buffer += chunk
        return True

    def next_block(self, deadline: float | None = None) -> str | None:
        """The next blank-line-terminated block (event or comment), or None at end of stream."""
        while b"\n\n" not in self._buffer:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("no SSE block before the deadline")
            if not self._fill():
                return None
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        return block.decode()

    def next_event(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next real event (comments skipped) as {id, event, data}."""
        deadline = time.monotonic() + timeout
        while True:
            block = self.next_block(deadline)
            if block is None:
                return None
            fields: dict[str, Any] = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "event" in fields or "data" in fields:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                if "id" in fields:
                    fields["id"] = int(fields["id"])
                return fields

    def close(self) -> None:
        self.response.close()


def open_streams(url: str, n: int, timeout: float = 10.0) -> list[SSEClient]:
    """``n`` connected SSE clients, each past its first (``retry:``) block."""
    streams = [SSEClient(url, timeout=timeout) for _ in range(n)]
    for stream in streams:
        stream.next_block()
    return streams
