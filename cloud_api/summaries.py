"""Per-post round summaries read from the store (the I/O side of `rounds`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_api.models import Checkpoint, Event, Post, Site
from cloud_api.rounds import PostSummary, RoundPlan, Visit, summarize
from patrol_protocol.frames import Kind

VISIT_KINDS = (Kind.NFC_SCAN.value, Kind.BLE_VISIT.value)


def site_round_summaries(
    session: Session, *, site_id: int, start: datetime, end: datetime, interval_s: float
) -> list[PostSummary]:
    """Summaries of every post of a site for rounds due every `interval_s` in [start, end)."""
    summaries = []
    posts = session.scalars(select(Post).where(Post.site_id == site_id).order_by(Post.id))
    for post in posts:
        checkpoints = session.scalars(
            select(Checkpoint).where(Checkpoint.post_id == post.id).order_by(Checkpoint.id)
        ).all()
        names = {cp.id: cp.name for cp in checkpoints}
        rows = session.execute(
            select(Event.checkpoint_id, Event.device_time).where(
                Event.checkpoint_id.in_(names),
                Event.kind.in_(VISIT_KINDS),
                Event.device_time >= start,
                Event.device_time < end,
            )
        )
        visits = [Visit(names[cp_id], at) for cp_id, at in rows if cp_id is not None]
        plan = RoundPlan(
            post=post.name,
            checkpoints=tuple(cp.name for cp in checkpoints),
            start=start,
            end=end,
            interval_s=interval_s,
        )
        summaries.append(summarize(plan, visits))
    return summaries


def site_by_name(session: Session, name: str) -> Site | None:
    return session.scalars(select(Site).where(Site.name == name)).one_or_none()
