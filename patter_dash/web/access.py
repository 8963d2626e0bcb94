"""Access: who may use the dashboard, decided once when the app starts.

Four modes, as Patter 0.7.0 has them and one more:

* ``token``: ``PATTER_DASH_TOKEN`` is set; every request needs it.
* ``auto-token``: no token, but a data directory (``PATTER_DASH_DATA_DIR``; the
  standalone server has one by default): a strong token is generated once and
  kept there (``dashboard-token``, mode 0600), so it survives restarts. Local
  requests (a loopback peer, no proxy header, a loopback ``Host``) stay open as
  in local development; a request from another machine or through a proxy
  needs the token. The server prints a sign-in URL when bound beyond loopback.
* ``local``: no token and no data directory (an app embedding the blueprint):
  only local requests are served, others get 403.
* ``insecure``: ``PATTER_DASH_ALLOW_INSECURE`` opts out: open to anyone, with a
  warning at every start.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings

log = logging.getLogger("patter_dash")
TOKEN_FILE = "dashboard-token"


@dataclass(frozen=True)
class Access:
    mode: str  # token | auto-token | local | insecure
    token: str | None = None
    token_file: str | None = None

    def view(self) -> dict[str, Any]:
        """What health shows: the mode and whether a token is required, never the token."""
        return {"mode": self.mode, "token": self.token is not None, "token_file": self.token_file}


def resolve(settings: Settings) -> Access:
    if settings.TOKEN is not None:
        return Access("token", settings.TOKEN)
    if settings.ALLOW_INSECURE:
        return Access("insecure")
    if settings.DATA_DIR is not None:
        path = Path(settings.DATA_DIR) / TOKEN_FILE
        return Access("auto-token", load_or_create_token(path), str(path))
    return Access("local")


def load_or_create_token(path: Path) -> str:
    """The token kept in ``path``, created once (0600) if there is none yet.

    Written whole to a file of its own, then linked to ``path`` (which fails if
    it exists): the gunicorn master and its workers starting together agree on
    one token, and none reads a file another is still writing.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(token + "\n")
            os.link(draft, path)
            return token
        except FileExistsError:
            pass  # another process made it first: its token counts
        finally:
            os.unlink(draft)
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty: delete it to have a new token generated")
    return token


def announce(access: Access, urls: list[str]) -> None:
    """Log how to sign in at start: the URL with the token for each address beyond loopback (as Jupyter does)."""
    if access.mode == "insecure":
        log.warning(
            "patter-dash: PATTER_DASH_ALLOW_INSECURE is on: every call, transcript and number is readable by "
            "anyone who can reach this server"
        )
    elif access.mode == "auto-token":
        for url in urls:
            log.warning("patter-dash: no PATTER_DASH_TOKEN set; sign in from other machines at %s?token=%s", url, access.token)
        log.info("patter-dash: requests from other machines or through a proxy need the token in %s", access.token_file)
