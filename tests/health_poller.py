"""A health poller in its own process: ``python tests/health_poller.py URL SECONDS``.

Prints JSON ``{"count", "errors", "ms": [...]}``: the latency of each
``GET URL`` made every 50 ms. In its own process it measures the server,
not the test's other threads contending for the test process's GIL.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from urllib.parse import urlsplit


def poll(url: str, seconds: float, interval: float = 0.05) -> dict[str, object]:
    parts = urlsplit(url)
    connect = lambda: http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)  # noqa: E731
    conn, latencies, errors = connect(), [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            conn.request("GET", parts.path)
            response = conn.getresponse()
            response.read()
            errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = connect()
        latencies.append(round((time.perf_counter() - start) * 1000, 2))
        time.sleep(interval)
    return {"count": len(latencies), "errors": errors, "ms": latencies}


if __name__ == "__main__":
    print(json.dumps(poll(sys.argv[1], float(sys.argv[2]))))
