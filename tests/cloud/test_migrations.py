"""Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL.

Every table must come from a revision: ``upgrade heads`` on an empty database,
then Alembic's autogenerate comparison against ``Base.metadata`` must find
nothing. A table added to cloud_api/models.py without a revision fails here
(the fix: ``patrol-cloud db revision --autogenerate``, see /work/coord/alembic.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from cloud_api.db import SchemaError, init_db, make_engine
from cloud_api.migrations import BASELINE_REVISION, alembic_config, render_item
from cloud_api.models import Base


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "render_as_batch": conn.dialect.name == "sqlite",
                "render_item": render_item,
            },
        )
        return list(compare_metadata(context, Base.metadata))


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _db_revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def test_upgrade_heads_builds_exactly_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert _tables(engine) == set()
        command.upgrade(alembic_config(db_url), "heads")
        assert _tables(engine) == set(Base.metadata.tables) | {"alembic_version"}
        assert _diff(engine) == []
        assert _db_revisions(engine) == _heads()
    finally:
        engine.dispose()


def test_downgrade_base_drops_every_table_and_upgrade_again_works(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config(db_url)
    try:
        command.upgrade(config, "heads")
        command.downgrade(config, "base")
        assert _tables(engine) == {"alembic_version"}
        assert _db_revisions(engine) == set()
        command.upgrade(config, "heads")
        assert _diff(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("from_scratch", ["metadata", "migrations"])
def test_init_db_builds_every_head_and_is_idempotent(db_url: str, from_scratch: str) -> None:
    """Both ways of building an empty database end at every head with the same schema."""
    engine = make_engine(db_url)
    try:
        init_db(engine, from_scratch=from_scratch)  # type: ignore[arg-type]
        init_db(engine)  # a second process starting later finds everything at head
        assert _db_revisions(engine) == _heads()
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_init_db_refuses_a_model_table_without_a_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cloud_api.migrations

    real = cloud_api.migrations.tables_created_by_revisions
    monkeypatch.setattr(
        cloud_api.migrations, "tables_created_by_revisions", lambda: real() - {"audit_log"}
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(SchemaError, match=r"tables audit_log are in cloud_api\.models but no"):
            init_db(engine)
        assert _tables(engine) == set()
    finally:
        engine.dispose()


def test_init_db_adopts_a_pre_alembic_database_at_the_baseline(db_url: str) -> None:
    """A pre-Alembic ``create_all`` database (baseline tables) is stamped, then upgraded."""
    engine = make_engine(db_url)
    config = alembic_config(db_url)
    try:
        command.upgrade(config, BASELINE_REVISION)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(
                text(
                    "INSERT INTO sites (id, name, timezone, created_at) "
                    "VALUES (1, 'kept', 'UTC', '2026-11-25 00:00:00')"
                )
            )
            # Rows pointing at the tables later revisions alter: those must not be copied.
            conn.execute(text("INSERT INTO posts (site_id, name) VALUES (1, 'Gate')"))
            conn.execute(
                text(
                    "INSERT INTO nfc_tags (uid, tag_type, created_at) "
                    "VALUES (:uid, 'ntag21x', '2026-11-25 00:00:00')"
                ),
                {"uid": bytes.fromhex("04a1b2c3d4e5f6")},
            )
        init_db(engine)
        assert _db_revisions(engine) == _heads()
        assert _diff(engine) == []
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM sites")).scalars().all() == ["kept"]
    finally:
        engine.dispose()


def test_revisions_form_one_tree_rooted_at_the_baseline() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    bases = script.get_bases()
    assert bases == [BASELINE_REVISION]
    for revision in script.walk_revisions():
        name = Path(revision.path).stem
        assert name == revision.revision, f"{revision.path}: file name must be the revision id"


def test_cli_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "PATROL_CLOUD_DATABASE_URL": url}
    cli = [sys.executable, "-m", "cloud_api", "db"]
    up = subprocess.run([*cli, "upgrade"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    current = subprocess.run(
        [*cli, "current"], env=env, capture_output=True, text=True, timeout=300
    )
    assert current.returncode == 0, current.stderr
    for head in _heads():
        assert f"Rev: {head} (head)" in current.stdout
    engine = make_engine(url)
    try:
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_two_processes_starting_at_once_build_the_schema_once(db_url: str) -> None:
    """Each service process runs init_db at start: the advisory lock (PostgreSQL) or the
    write lock (SQLite) makes the second wait and then find every head applied."""
    code = (
        "import sys\n"
        "from cloud_api.db import init_db, make_engine\n"
        "engine = make_engine(sys.argv[1])\n"
        "init_db(engine)\n"
        "engine.dispose()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    engine = make_engine(db_url)
    try:
        assert _db_revisions(engine) == _heads()
        assert _diff(engine) == []
    finally:
        engine.dispose()
