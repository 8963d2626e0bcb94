"""The wheel built from setup.py installs into a fresh venv and serves its templates and static files."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from tests.conftest import ROOT

CHECK = """
import patter_dash, pathlib
from patter_dash import create_app
assert "site-packages" in patter_dash.__file__, patter_dash.__file__
client = create_app({"TESTING": True}).test_client()
page = client.get("/dashboard")
assert page.status_code == 200 and b"patter-dash" in page.data.lower(), page.status_code
css = client.get("/dashboard/static/css/dashboard.css")
assert css.status_code == 200 and len(css.data) > 100, css.status_code
print("ok", patter_dash.__file__)
"""


def test_wheel_installs_and_serves_templates(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True, cwd=tmp_path,
    )
    wheel = next(dist.glob("patter_dash-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path)
    out = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
    console = subprocess.run([env_dir / "bin" / "patter-dash", "--help"], capture_output=True, text=True)
    assert console.returncode == 0 and "serve" in console.stdout
