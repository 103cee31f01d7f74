"""`patrol user create`, run as a technician runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from cloud_api.auth.passwords import verify_password
from cloud_api.db import init_db, make_engine, session_scope
from cloud_api.models import Site, User, UserSite
from cloud_api.provisioning import create_site


def patrol(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patrol_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_prints_the_password_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cloud.db"
    engine = make_engine(url)
    init_db(engine)
    with session_scope(engine) as session:
        create_site(session, name="North")
    result = patrol(
        "user",
        "create",
        "--database-url",
        url,
        "--username",
        "sue",
        "--role",
        "supervisor",
        "--site",
        "North",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = "created supervisor 'sue'; password (shown once): "
    assert result.stdout.startswith(prefix)
    password = result.stdout.strip().removeprefix(prefix)
    with session_scope(engine) as session:
        user = session.scalars(select(User)).one()
        site_id = session.scalars(select(Site.id)).one()
        scopes = session.scalars(select(UserSite.site_id).where(UserSite.user_id == user.id)).all()
        assert (user.role, list(scopes)) == ("supervisor", [site_id])
        assert password not in user.password_hash
        assert verify_password(user.password_hash, password)
    engine.dispose()


def test_bad_role_unknown_site_and_taken_name_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cloud.db"
    base = ("user", "create", "--database-url", url, "--username", "sue")
    bad_role = patrol(*base, "--role", "boss")
    assert (bad_role.returncode, bad_role.stdout.strip()) == (
        2,
        "unknown role 'boss'; choose one of guard, technician, supervisor, customer, admin",
    )
    no_site = patrol(*base, "--role", "guard", "--site", "Nowhere")
    assert (no_site.returncode, no_site.stdout.strip()) == (2, "no site named 'Nowhere'")
    assert patrol(*base, "--role", "guard").returncode == 0
    taken = patrol(*base, "--role", "guard")
    assert (taken.returncode, taken.stdout.strip()) == (2, "user 'sue' already exists")
