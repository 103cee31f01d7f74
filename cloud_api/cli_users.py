"""The `patrol user create` command's work, kept out of the CLI module."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from cloud_api.auth.users import create_user
from cloud_api.db import init_db, make_engine, session_scope
from cloud_api.models import Role, Site, User


def create_user_command(
    database_url: str, username: str, role: str, site_names: list[str], echo: Callable[[str], None]
) -> int:
    """0 when created (password printed once), 2 for a bad role, site or taken name."""
    try:
        chosen = Role(role)
    except ValueError:
        echo(f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}")
        return 2
    engine = make_engine(database_url)
    try:
        init_db(engine)
        with session_scope(engine) as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                echo(f"user {username!r} already exists")
                return 2
            sites = []
            for name in site_names:
                site = session.scalars(select(Site).where(Site.name == name)).one_or_none()
                if site is None:
                    echo(f"no site named {name!r}")
                    return 2
                sites.append(site)
            _, password = create_user(session, username=username, role=chosen, sites=sites)
        echo(f"created {chosen.value} {username!r}; password (shown once): {password}")
        return 0
    finally:
        engine.dispose()
