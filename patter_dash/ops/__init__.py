"""Ops: what operators plug into their own tooling (Prometheus metrics, alert rules and their delivery).

Reads the core's state and the calls it completes; imports core and model,
never web (the routes that serve it live in :mod:`patter_dash.web`).
"""
