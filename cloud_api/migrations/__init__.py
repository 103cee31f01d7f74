"""Alembic migrations of the cloud service's relational schema.

The schema is created and upgraded only through these revisions: ``init_db``
(:mod:`cloud_api.db`) runs ``upgrade heads`` on every start, and
``patrol-cloud db upgrade`` does the same as a separate deployment step.
Revisions live in ``versions/``; the first is ``0001_baseline`` and every
later one names its parent in ``down_revision`` (branches are allowed, hence
``heads``). How to add one: /work/coord/alembic.md and ``docs`` of
``patrol-cloud db --help``.

No ``alembic.ini``: :func:`alembic_config` builds the configuration in code, so
the same database URL setting (``PATROL_CLOUD_DATABASE_URL``) drives the
service and its migrations.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal

from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from sqlalchemy import Connection

from cloud_api.models import UtcDateTime

MIGRATIONS_DIR = Path(__file__).resolve().parent
"""This folder: ``env.py``, ``script.py.mako`` and ``versions/``."""

BASELINE_REVISION = "0001_baseline"
"""The revision that creates every table that existed when migrations started."""


def alembic_config(database_url: str, *, connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for ``database_url``.

    With ``connection``, ``env.py`` runs the migrations on it, inside the caller's
    transaction (``init_db`` does this so the PostgreSQL advisory lock, the version
    check and the DDL are one transaction).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    # "%" would be read as interpolation by configparser (passwords may contain it).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s")
    # New revision files are formatted and lint-fixed by the project's ruff.
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.is_file():
        config.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_fix")
        for hook, options in (
            ("ruff_format", "format REVISION_SCRIPT_FILENAME"),
            ("ruff_fix", "check --fix REVISION_SCRIPT_FILENAME"),
        ):
            config.set_section_option("post_write_hooks", f"{hook}.type", "exec")
            config.set_section_option("post_write_hooks", f"{hook}.executable", str(ruff))
            config.set_section_option("post_write_hooks", f"{hook}.options", options)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write our column types as plain SQLAlchemy types, so revisions never import models.

    ``UtcDateTime`` is ``DateTime(timezone=True)`` in the database; a revision that
    imported it would break the day the model code changes.
    """
    del autogen_context
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


_CREATE_TABLE = re.compile(r"""op\.create_table\(\s*["']([A-Za-z0-9_]+)["']""")


def tables_created_by_revisions() -> set[str]:
    """Names of every table some revision file creates (a cheap text scan of versions/).

    ``init_db`` checks the models against it before building a fresh database from
    the metadata, so a table added to cloud_api.models without a revision is caught
    at start-up even on the fast path.
    """
    names: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        names.update(_CREATE_TABLE.findall(path.read_text(encoding="utf-8")))
    return names
