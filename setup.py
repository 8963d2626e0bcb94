"""Packaging for patter-dash.

The top-level ``templates/`` folder ships inside the wheel as
``patter_dash/templates`` (package data), next to ``patter_dash/static``, so an
installed copy serves the same pages as a source checkout.
"""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
#: The version lives once, in the package.
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "patter_dash" / "__init__.py").read_text(), re.M)[1]


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def files_under(root: Path, base: Path) -> list[str]:
    return [str(p.relative_to(base)) for p in root.rglob("*") if p.is_file()]


setup(
    name="patter-dash",
    version=VERSION,
    description="Live call-monitoring dashboard for Patter voice agents (Flask blueprint + gunicorn/gevent app)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["patter_dash", *(f"patter_dash.{layer}" for layer in ("model", "core", "journal", "ops", "web", "run")), "patter_dash.templates"],
    package_dir={"patter_dash.templates": "templates"},
    package_data={
        "patter_dash": files_under(HERE / "patter_dash" / "static", HERE / "patter_dash"),
        "patter_dash.templates": files_under(HERE / "templates", HERE / "templates"),
    },
    install_requires=requirements(),
    # PATTER_DASH_DB=postgresql://...: psycopg 3 (binary wheel: libpq inside, no compiler or libpq-dev needed).
    extras_require={"postgres": ["psycopg[binary]==3.3.9"]},
    entry_points={"console_scripts": ["patter-dash = patter_dash.run.cli:main"]},
    classifiers=["Framework :: Flask", "Programming Language :: Python :: 3"],
)
