"""``patrol-edge`` command line: run the agent, look at its queue.

Settings come from ``PATROL_EDGE_*`` environment variables (see
:class:`edge_agent.settings.EdgeSettings`).
"""

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from edge_agent.agent import EdgeAgent
from edge_agent.queue import EdgeQueue
from edge_agent.settings import get_settings

app = typer.Typer(help="Patrol edge agent (Raspberry Pi gateway).", no_args_is_help=True)


@app.command()
def run(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Run ingest and forwarder until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    agent = EdgeAgent(get_settings())
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    logging.getLogger("edge_agent").info("edge agent running (pid signals: TERM/INT stop it)")
    while not stop_requested.wait(1.0):
        pass
    agent.stop()


@app.command()
def status() -> None:
    """Print queue depth, dead letters and duplicates of the configured queue file."""
    settings = get_settings()
    with EdgeQueue(settings.queue_path, synchronous=settings.sqlite_synchronous) as queue:
        stats = queue.stats()
        oldest_ms = queue.oldest_received_at_ms()
    typer.echo(f"queue file:   {settings.queue_path}")
    typer.echo(f"depth:        {stats.depth}")
    typer.echo(f"oldest (ms):  {oldest_ms if oldest_ms is not None else '-'}")
    typer.echo(f"dead letters: {stats.dead_letters}")
    typer.echo(f"duplicates:   {stats.duplicates}")


def main() -> None:
    """Entry point of the ``patrol-edge`` script."""
    app()


if __name__ == "__main__":
    main()
