"""Debian's nginx in front of a test server, configured with the README's snippet."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, wait_for

#: The README's "Behind nginx" locations for a dashboard under /ops/voice, as shipped.
README_LOCATIONS = """
        location /ops/voice/ {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
            gzip off;
        }}
""" + "".join(
    """
        location /ops/voice/api/v1/%s {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
""" % websocket
    for websocket in ("ws", "ingest/ws")  # the two WebSocket routes
)

CONF = """
worker_processes 1;
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    {http}
    server {{
        listen 127.0.0.1:{port};
        {locations}
    }}
}}
"""


@contextmanager
def nginx(tmp: Path, upstream: int, http: str = "", gzip: bool = False) -> Iterator[int]:
    """nginx proxying ``/ops/voice/`` to ``upstream`` on a free port (yielded), stopped afterwards.

    ``http`` adds directives to the ``http`` block; ``gzip`` drops the snippet's
    ``gzip off``, as a deployment that compresses everything would.
    """
    port = free_port()
    locations = README_LOCATIONS.format(upstream=upstream)
    if gzip:
        locations = locations.replace("gzip off;", "")
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(tmp=tmp, port=port, http=http, locations=locations))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"])
    try:
        wait_for(lambda: _listening(port), timeout=10, interval=0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
