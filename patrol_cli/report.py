"""`patrol report ...` and `patrol rectification ...`: the monthly report, rankings, escalation.

- ``patrol report monthly --site "Kunming depot" --month 2026-11 --pdf r.pdf --csv r.csv``
  writes the customer's monthly site report;
- ``patrol report rankings --site ... --month ...`` prints the guard ranking (``--csv``
  for the file); ``--sites`` ranks every site instead;
- ``patrol rectification escalate`` escalates every overdue rectification item once
  (for cron or a systemd timer; safe beside the API processes, which run the same
  step in their own worker);
- ``patrol rectification list --site ...`` prints the unresolved items.

Exit status: 0 done, 2 for an unknown site or a bad month.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

app = typer.Typer(help="The monthly site report and the incentive rankings.", no_args_is_help=True)
rectification_app = typer.Typer(
    help="Rectification items: escalate the overdue ones, list the unresolved.",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str,
    typer.Option(help="SQLAlchemy URL of the cloud database.", envvar="PATROL_CLOUD_DATABASE_URL"),
]
SiteOpt = Annotated[str, typer.Option(help="Site id or exact site name.")]
MonthOpt = Annotated[
    str | None, typer.Option(help="YYYY-MM in the site's time zone (default: last month).")
]


@contextmanager
def _session(database_url: str) -> Iterator[Session]:
    from cloud_api.db import init_db, make_engine

    engine = make_engine(database_url)
    try:
        init_db(engine)
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _site_id(session: Session, site: str) -> int:
    from cloud_api.models import Site

    found = session.execute(
        select(Site.id).where(Site.id == int(site))
        if site.isdigit()
        else select(Site.id).where(Site.name == site)
    ).scalar_one_or_none()
    if found is None:
        typer.echo(f"no site {site!r}", err=True)
        raise typer.Exit(2)
    return found


def _month(session: Session, site_id: int, text: str | None) -> object:
    from cloud_api.compliance.report.period import Month, PeriodError, site_zone
    from cloud_api.models import Site, utcnow

    try:
        if text:
            return Month.parse(text)
        site = session.get(Site, site_id)
        assert site is not None
        return Month.containing(utcnow(), site_zone(site.timezone)).previous()
    except PeriodError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@app.command("monthly")
def monthly(
    database_url: DatabaseUrl,
    site: SiteOpt,
    month: MonthOpt = None,
    pdf: Annotated[Path | None, typer.Option(help="Write the PDF here.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the CSV here.")] = None,
) -> None:
    """Write the monthly site report (PDF and/or CSV) and print its key figures."""
    from cloud_api.compliance.report.csv import render_csv
    from cloud_api.compliance.report.data import collect
    from cloud_api.compliance.report.pdf import render_pdf
    from cloud_api.compliance.report.period import Month
    from cloud_api.models import utcnow

    if pdf is None and csv is None:
        typer.echo("nothing to write: give --pdf and/or --csv", err=True)
        raise typer.Exit(2)
    with _session(database_url) as session:
        site_id = _site_id(session, site)
        chosen = _month(session, site_id, month)
        assert isinstance(chosen, Month)
        report = collect(session, site_id=site_id, month=chosen, now=utcnow())
    if pdf is not None:
        pdf.write_bytes(render_pdf(report))
        typer.echo(f"wrote {pdf}")
    if csv is not None:
        csv.write_text(render_csv(report), encoding="utf-8", newline="")
        typer.echo(f"wrote {csv}")
    score = "-" if report.mean_score is None else f"{report.mean_score:.2f}"
    typer.echo(
        f"{report.site_name}, {report.month.label}: {report.shifts} shifts, mean score {score}, "
        f"{len(report.deviations)} deviations ({report.rectification.unresolved} unresolved), "
        f"chain head {report.chain_head} (length {report.chain_length})"
    )


@app.command("rankings")
def rankings_command(
    database_url: DatabaseUrl,
    site: Annotated[str | None, typer.Option(help="Site id or name (guard ranking).")] = None,
    month: MonthOpt = None,
    sites: Annotated[bool, typer.Option("--sites", help="Rank every site instead.")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Print a month's guard ranking of a site, or the ranking of all sites."""
    from cloud_api.compliance import rankings
    from cloud_api.compliance.report.period import Month
    from cloud_api.models import Site

    with _session(database_url) as session:
        if sites:
            site_ids = list(session.scalars(select(Site.id)))
            chosen = _month(session, site_ids[0], month) if site_ids else None
            assert isinstance(chosen, Month)
            ranked = rankings.site_rankings(session, site_ids=site_ids, month=chosen)
            if csv:
                typer.echo(rankings.sites_csv(chosen, ranked), nl=False)
                return
            for s in ranked:
                typer.echo(
                    f"{s.rank:>3}  {s.name:<30} {s.mean_score:6.2f}  {s.shifts:>4} shifts  "
                    f"{s.deviations:>3} deviations  {s.stars_awarded} stars"
                )
            return
        if site is None:
            typer.echo("give --site, or --sites for the site ranking", err=True)
            raise typer.Exit(2)
        site_id = _site_id(session, site)
        chosen = _month(session, site_id, month)
        assert isinstance(chosen, Month)
        guards = rankings.guard_rankings(session, site_id=site_id, month=chosen)
    if csv:
        typer.echo(rankings.guards_csv(chosen, guards), nl=False)
        return
    for g in guards:
        stars = "*" * g.stars or "-"
        typer.echo(
            f"{g.rank:>3}  {g.name:<30} {g.mean_score:6.2f}  {g.shifts:>4} shifts  "
            f"stars {stars:<3}  streak {g.streak_months}  perfect run {g.perfect_run}"
        )


@rectification_app.command("escalate")
def escalate(database_url: DatabaseUrl) -> None:
    """Escalate every overdue open or in-progress item once (safe beside other processes)."""
    from cloud_api.compliance.workflow import run_escalation
    from cloud_api.db import init_db, make_engine, make_sessionmaker
    from cloud_api.models import utcnow

    engine = make_engine(database_url)
    try:
        init_db(engine)
        done = run_escalation(make_sessionmaker(engine), now=utcnow())
    finally:
        engine.dispose()
    typer.echo(f"escalated {done} items")


@rectification_app.command("list")
def list_items(database_url: DatabaseUrl, site: SiteOpt) -> None:
    """Print a site's unresolved rectification items, the most urgent first."""
    from cloud_api.models import Deviation, RectificationItem, User

    with _session(database_url) as session:
        site_id = _site_id(session, site)
        rows = session.execute(
            select(RectificationItem, Deviation, User.username)
            .join(Deviation, Deviation.id == RectificationItem.deviation_id)
            .outerjoin(User, User.id == RectificationItem.owner_id)
            .where(
                RectificationItem.site_id == site_id,
                RectificationItem.status.in_(("open", "in_progress")),
            )
            .order_by(RectificationItem.due_at, RectificationItem.id)
        ).all()
    if not rows:
        typer.echo("no unresolved items")
    for item, dev, owner in rows:
        typer.echo(
            f"#{item.id:<5} {item.status:<11} due {item.due_at:%Y-%m-%d %H:%M}Z  "
            f"{dev.severity:<8} {dev.rule:<20} owner {owner or '-':<12} "
            f"level {item.escalation_level}  {dev.detail}"
        )
