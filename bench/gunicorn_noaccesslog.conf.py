"""The shipped gunicorn.conf.py minus the access log (benchmark variant only).

The peer's headline figures were taken with uvicorn's access log off; this
config lets the same comparison be made for patter-dash. Everything else is
the shipped configuration.
"""

from patter_dash.run.server import SETTINGS, on_starting, post_worker_init, worker_exit  # noqa: F401

globals().update(SETTINGS)
accesslog = None
