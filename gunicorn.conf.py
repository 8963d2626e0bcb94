"""Gunicorn config for patter-dash: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The settings and hooks live in ``patter_dash/run/server.py`` (so ``patter-dash
serve`` uses the same ones when installed); the README's "Deployment" section
explains each. Bind with ``PATTER_DASH_BIND`` or ``-b``.
"""

from patter_dash.run.server import SETTINGS, on_starting, post_worker_init, worker_exit  # noqa: F401

globals().update(SETTINGS)
