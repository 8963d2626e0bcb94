"""Processes: the standalone app and gunicorn server, the CLI, the remote client and the demo runtime."""
