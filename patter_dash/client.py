"""``patter_dash.client``: kept for the import users write; the client lives in :mod:`patter_dash.run.client`."""

from .run.client import DashboardClient

__all__ = ["DashboardClient"]
