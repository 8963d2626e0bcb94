"""CLI: ``patter-dash serve [--port 8000] [--host 127.0.0.1] [--token ...] [--demo] [--no-ui]``."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patter-dash", description="Live call dashboard for Patter voice agents")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the standalone dashboard under gunicorn + gevent")
    run.add_argument("--port", type=int, default=int(os.environ.get("PATTER_DASH_PORT", "8000")))
    run.add_argument("--host", default=os.environ.get("PATTER_DASH_HOST", "127.0.0.1"))
    run.add_argument("--token", default=None, help="require this token (default: $PATTER_DASH_TOKEN)")
    run.add_argument("--demo", action="store_true", help="also run a simulated voice runtime feeding calls")
    run.add_argument("--no-ui", dest="ui", action="store_false", help="serve ingest and the API only")
    run.add_argument("--url-prefix", default=None, help="mount everything under this path, e.g. /ops/voice")
    args = parser.parse_args(argv)

    from .server import serve

    try:
        serve(
            port=args.port,
            dashboard=args.ui,
            dashboard_token=args.token,
            host=args.host,
            demo=args.demo or None,
            url_prefix=args.url_prefix,
        )
    except ConfigError as exc:
        print(f"patter-dash: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
