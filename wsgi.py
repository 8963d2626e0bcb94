"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from patter_dash.run.app import create_app

app = create_app(standalone=True)
