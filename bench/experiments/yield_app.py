"""Experiment only: the benchmark app with one cooperative yield per request.

Served by ``fairness.py`` to show what the W3 tail looks like when each request
yields once to the gevent hub before it is handled. ``YIELD_MODE``: ``sleep0``
(``gevent.sleep(0)``) or ``idle`` (``gevent.idle()``).
"""

import os

import gevent

from bench.preload_app import app as flask_app

MODE = os.environ.get("YIELD_MODE", "sleep0")


def app(environ, start_response):
    if MODE == "idle":
        gevent.idle()
    else:
        gevent.sleep(0)
    return flask_app(environ, start_response)


app.extensions = flask_app.extensions  # gunicorn's post_worker_init hook looks here
