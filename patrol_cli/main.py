"""The `patrol` command: the entry point people type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patrol_cli.provision import app as provision_app

app = typer.Typer(help="Patrol verification: demo and operator commands.", no_args_is_help=True)
app.add_typer(provision_app, name="provision")


@app.command()
def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Exit after the summary instead of serving.")
    ] = False,
    shift_s: Annotated[
        float, typer.Option(help="Length of the compressed shift, seconds.")
    ] = 150.0,
    round_interval_s: Annotated[
        float, typer.Option(help="A round is due every this many seconds.")
    ] = 50.0,
    port: Annotated[int, typer.Option(help="API port (a free one is chosen if taken).")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the databases and device flash here (default: a temporary folder)."
        ),
    ] = None,
) -> None:
    """Run a small simulated site end to end on embedded defaults."""
    from patrol_sim.demo import DemoOptions, run_demo

    raise typer.Exit(
        run_demo(
            DemoOptions(
                once=once,
                shift_s=shift_s,
                round_interval_s=round_interval_s,
                api_port=port,
                data_dir=data_dir,
            )
        )
    )


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("patrol-verification"))


chain_app = typer.Typer(help="The per-site hash chain of accepted evidence.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")


@chain_app.command("verify")
def chain_verify(
    database_url: Annotated[
        str,
        typer.Option(
            help="SQLAlchemy URL of the cloud database.", envvar="PATROL_CLOUD_DATABASE_URL"
        ),
    ],
    site: Annotated[str, typer.Option(help="Site id or exact site name.")],
) -> None:
    """Recompute a site's chain, print its head; exit 1 at the first broken link."""
    from cloud_api.chain import verify_site

    raise typer.Exit(verify_site(database_url, site, typer.echo))


user_app = typer.Typer(help="People who log in to the cloud service.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("create")
def user_create(
    database_url: Annotated[
        str,
        typer.Option(
            help="SQLAlchemy URL of the cloud database.", envvar="PATROL_CLOUD_DATABASE_URL"
        ),
    ],
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[str, typer.Option(help="guard, technician, supervisor, customer or admin.")],
    site: Annotated[
        list[str] | None, typer.Option(help="Exact site name the person may see (repeatable).")
    ] = None,
) -> None:
    """Create a person with a generated password, printed once and stored only hashed."""
    from cloud_api.cli_users import create_user_command

    raise typer.Exit(create_user_command(database_url, username, role, site or [], typer.echo))


# Bulk registration from CSV (cloud-store): patrol_cli/bulk.py
from patrol_cli.bulk import app as bulk_app  # noqa: E402

app.add_typer(bulk_app, name="bulk")

# Monthly report, rankings, rectification escalation (compliance-workflow): patrol_cli/report.py
from patrol_cli.report import app as report_app  # noqa: E402
from patrol_cli.report import rectification_app  # noqa: E402

app.add_typer(report_app, name="report")
app.add_typer(rectification_app, name="rectification")
