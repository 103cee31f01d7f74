"""``patrol-edge`` command line: run the agent, look at its queue, set up the site broker.

Settings come from ``PATROL_EDGE_*`` environment variables and a TOML file
(``--config``, else ``PATROL_EDGE_CONFIG``, else ``/etc/patrol-edge/edge.toml``
when it exists); the environment wins (:mod:`edge_agent.settings`).

Exit codes: 0 success; 1 the agent is unhealthy or not running (``status``) or
an operation failed; 2 the configuration or the command line is wrong.
"""

import json
import logging
import os
import pwd
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final

import httpx
import typer
from rich.console import Console
from rich.table import Table

from edge_agent.agent import EdgeAgent
from edge_agent.broker import TlsFiles
from edge_agent.health import PRIORITY_NAMES
from edge_agent.mosquitto_setup import MosquittoSetupError, fetch_export, write_site_files
from edge_agent.queue import EdgeQueue, QueueError
from edge_agent.runlock import QueueLock, QueueLockedError
from edge_agent.sdnotify import SystemdNotifier
from edge_agent.settings import ConfigError, EdgeSettings, load_settings

app = typer.Typer(help="Patrol edge agent (Raspberry Pi gateway).", no_args_is_help=True)
dead_letter_app = typer.Typer(
    help="Inputs refused at ingest or by the cloud, kept with their reason.",
    no_args_is_help=True,
)
queue_app = typer.Typer(help="The durable queue.", no_args_is_help=True)
app.add_typer(dead_letter_app, name="dead-letter")
app.add_typer(queue_app, name="queue")

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_UNHEALTHY: Final = 1
EXIT_CONFIG: Final = 2
READY_WAIT_S: Final = 10.0
"""``run`` tells systemd READY once subscribed, or after this long anyway: a broker
that is down at boot must not make systemd kill and restart a healthy agent."""
STATUS_EVERY_S: Final = 30.0
"""How often ``run`` refreshes the one-line STATUS shown by ``systemctl status``."""
TICK_S: Final = 1.0
HEALTHZ_TIMEOUT_S: Final = 3.0
DETAIL_CHARS: Final = 60


class _State:
    config: Path | None = None


def _settings() -> EdgeSettings:
    try:
        return load_settings(_State.config)
    except ConfigError as exc:
        errors.print(f"[bold red]configuration error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML settings file (default: $PATROL_EDGE_CONFIG, else "
            "/etc/patrol-edge/edge.toml if present). PATROL_EDGE_* variables override it.",
        ),
    ] = None,
) -> None:
    """Patrol edge agent (Raspberry Pi gateway)."""
    _State.config = config


def _ms_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- run ---------------------------------------------------------------------------


@app.command()
def run(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Run ingest, forwarder, health reporter and /metrics until SIGTERM or SIGINT.

    Under systemd (Type=notify) it sends READY=1, STATUS lines and, while the
    workers are alive, WATCHDOG=1 at half of WatchdogSec.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = _settings()
    log = logging.getLogger("edge_agent")
    notifier = SystemdNotifier(unset_environment=True)  # children must not inherit it
    try:
        agent = EdgeAgent(settings)
    except QueueLockedError as exc:
        errors.print(f"[bold red]not started:[/] {exc}")
        raise typer.Exit(EXIT_UNHEALTHY) from None
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    subscribed = agent.wait_ready(READY_WAIT_S)
    log.info("edge agent running (pid signals: TERM/INT stop it)")
    notifier.ready(
        f"forwarding to {settings.cloud_url}; broker {settings.mqtt_host}:{agent.mqtt_port} "
        + ("subscribed" if subscribed else "not connected yet")
    )
    watchdog_every_s = (
        notifier.watchdog_interval_s / 2 if notifier.watchdog_interval_s is not None else None
    )
    last_ping_s = last_status_s = time.monotonic()
    if watchdog_every_s is not None and agent.alive():
        notifier.watchdog()
    while not stop_requested.wait(min(TICK_S, watchdog_every_s or TICK_S)):
        now_s = time.monotonic()
        if watchdog_every_s is not None and now_s - last_ping_s >= watchdog_every_s:
            if agent.alive():
                notifier.watchdog()
                last_ping_s = now_s
            else:
                log.error("a worker thread died: withholding the watchdog ping")
        if notifier.enabled and now_s - last_status_s >= STATUS_EVERY_S:
            health = agent.health()
            notifier.status(
                f"{health.status}: queue {health.queue_depth}, oldest "
                f"{_age_text(health.oldest_unsent_age_s)}, forwarded {health.forwarded_total}"
                + (f"; {health.problems[0]}" if health.problems else "")
            )
            last_status_s = now_s
    notifier.stopping()
    agent.stop()
    notifier.close()


# --- status ------------------------------------------------------------------------


def _fetch_healthz(settings: EdgeSettings) -> tuple[int, dict[str, Any]] | None:
    if not settings.metrics_enabled or settings.metrics_port == 0:
        return None
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/healthz"
    try:
        response = httpx.get(url, timeout=HEALTHZ_TIMEOUT_S)
        return response.status_code, response.json()
    except (httpx.HTTPError, ValueError):
        return None


@app.command()
def status() -> None:
    """The running agent's health (from its /healthz), else what the queue file says."""
    settings = _settings()
    answer = _fetch_healthz(settings)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if answer is None:
        table.add_row("agent", "[red]not reachable[/]" + _where_metrics(settings))
    else:
        _code, health = answer
        colour = {"ok": "green", "degraded": "yellow"}.get(health.get("status", ""), "red")
        table.add_row("agent", f"[{colour}]{health.get('status')}[/]" + _where_metrics(settings))
        for problem in health.get("problems", []):
            table.add_row("", f"[{colour}]- {problem}[/]")
        table.add_row(
            "broker", "connected" if health.get("broker_connected") else "[red]not connected[/]"
        )
        cloud = "[red]failing[/]" if health.get("cloud_failing") else "ok"
        table.add_row("cloud", f"{cloud}, forwarded {health.get('forwarded_total')} since start")
        table.add_row("ble", str(health.get("ble_state")))
        clock = "synced" if health.get("clock_ntp_synced") else "[yellow]NOT synced[/]"
        table.add_row("clock", f"{clock} ({health.get('clock_source')})")
        temp = health.get("cpu_temp_c")
        table.add_row("cpu temperature", "-" if temp is None else f"{temp} C")
        table.add_row("disk free", f"{int(health.get('disk_free_bytes', 0)) / 1e9:.2f} GB")
    table.add_row("queue file", str(settings.queue_path))
    try:
        with EdgeQueue(settings.queue_path, read_only=True) as queue:
            stats = queue.stats()
            oldest_ms = queue.oldest_received_at_ms()
            dead = queue.dead_letter_count()
    except QueueError as exc:
        table.add_row("queue", f"[red]{exc}[/]")
        console.print(table)
        raise typer.Exit(EXIT_UNHEALTHY) from None
    table.add_row("depth", str(stats.depth))
    table.add_row("oldest unsent", _ms_text(oldest_ms))
    table.add_row("dead letters", str(dead))
    table.add_row("duplicates", str(stats.duplicates))
    table.add_row("evicted", str(stats.evicted))
    console.print(table)
    if answer is None or answer[0] != httpx.codes.OK:
        raise typer.Exit(EXIT_UNHEALTHY)


def _where_metrics(settings: EdgeSettings) -> str:
    if not settings.metrics_enabled:
        return " (metrics_enabled is off)"
    return f" (http://{settings.metrics_host}:{settings.metrics_port}/healthz)"


# --- queue stats -------------------------------------------------------------------


@queue_app.command("stats")
def queue_stats(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead")] = False,
) -> None:
    """Depth and oldest item per priority, disk use, dead letters, evictions."""
    settings = _settings()
    try:
        with EdgeQueue(settings.queue_path, read_only=True) as queue:
            depth = queue.depth_by_priority()
            oldest = queue.oldest_by_priority()
            stats = queue.stats()
            used = queue.used_bytes()
            dead = queue.dead_letter_count()
            last_gw_seq = queue.last_gw_seq()
    except QueueError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNHEALTHY) from None
    file_bytes = sum(
        Path(f"{settings.queue_path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{settings.queue_path}{suffix}").exists()
    )
    now_ms = time.time_ns() // 1_000_000
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "depth": {PRIORITY_NAMES[p]: n for p, n in depth.items()},
                    "oldest_age_s": {
                        PRIORITY_NAMES[p]: round((now_ms - t) / 1000, 3) for p, t in oldest.items()
                    },
                    "queued_bytes": used,
                    "budget_bytes": settings.queue_budget_bytes,
                    "file_bytes": file_bytes,
                    "dead_letters": dead,
                    "evicted_total": stats.evicted,
                    "duplicates_total": stats.duplicates,
                    "last_gw_seq": last_gw_seq,
                }
            )
        )
        return
    table = Table(title=f"queue {settings.queue_path}")
    table.add_column("priority")
    table.add_column("items", justify="right")
    table.add_column("oldest received")
    table.add_column("age", justify="right")
    for priority, count in depth.items():
        when = oldest.get(priority)
        table.add_row(
            PRIORITY_NAMES[priority],
            f"{count:,}",
            _ms_text(when),
            _age_text(None if when is None else (now_ms - when) / 1000),
        )
    table.add_row("[bold]total[/]", f"[bold]{sum(depth.values()):,}[/]", "", "")
    console.print(table)
    budget = settings.queue_budget_bytes
    console.print(
        f"queued {used:,} bytes"
        + (f" of a {budget:,}-byte budget ({100 * used / budget:.1f} %)" if budget else "")
        + f"; file {file_bytes:,} bytes on disk"
    )
    console.print(
        f"dead letters {dead:,}; evicted {stats.evicted:,}; duplicates {stats.duplicates:,}; "
        f"last gw_seq {last_gw_seq:,}"
    )


# --- dead letters ------------------------------------------------------------------


@dead_letter_app.command("list")
def dead_letter_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first")] = 50,
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead")] = False,
) -> None:
    """Dead letters with their reason (ingest: the edge's check; cloud: the cloud's verdict)."""
    settings = _settings()
    try:
        with EdgeQueue(settings.queue_path, read_only=True) as queue:
            dead = queue.dead_letters(limit=1_000_000 if reason else limit)
    except QueueError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNHEALTHY) from None
    if reason is not None:
        dead = [d for d in dead if d.reason == reason][:limit]
    if as_json:
        for d in dead:
            typer.echo(
                json.dumps(
                    {
                        "id": d.id,
                        "source": d.source,
                        "reason": d.reason,
                        "detail": d.detail,
                        "received_at": _ms_text(d.received_at_ms),
                        "topic": d.topic,
                        "item_type": d.item_type,
                        "raw_len": d.raw_len,
                        "raw_hex": d.raw.hex(),
                    }
                )
            )
        return
    table = Table(title=f"{len(dead)} dead letter(s)")
    for column in ("id", "source", "reason", "received", "topic", "bytes", "detail"):
        table.add_column(column, justify="right" if column in ("id", "bytes") else "left")
    for d in dead:
        table.add_row(
            str(d.id),
            d.source,
            d.reason,
            _ms_text(d.received_at_ms),
            d.topic or "-",
            str(d.raw_len),
            d.detail[:DETAIL_CHARS] + ("..." if len(d.detail) > DETAIL_CHARS else ""),
        )
    console.print(table)


@dead_letter_app.command("retry")
def dead_letter_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead-letter ids (see list)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
) -> None:
    """Put dead letters back into the queue (the agent must be stopped).

    Cloud-rejected items go back exactly as queued (e.g. after the device was
    provisioned); ingest ones are checked again and stay if still bad.
    """
    if not ids and not all_:
        errors.print("[bold red]error:[/] give dead-letter ids or --all")
        raise typer.Exit(EXIT_CONFIG)
    settings = _settings()
    try:
        with QueueLock(settings.queue_path), EdgeQueue(settings.queue_path) as queue:
            wanted = (
                [d.id for d in queue.dead_letters(limit=1_000_000)] if all_ else list(ids or [])
            )
            result = queue.retry_dead_letters(wanted)
    except QueueLockedError as exc:
        errors.print(f"[bold red]refused:[/] {exc}; stop it first (systemctl stop patrol-edge)")
        raise typer.Exit(EXIT_UNHEALTHY) from None
    console.print(f"requeued {len(result.requeued)}: {result.requeued or '-'}")
    for dead_id, why in result.still_bad.items():
        console.print(f"[yellow]still refused[/] {dead_id}: {why}")
    for dead_id, why in result.not_retryable.items():
        console.print(f"[yellow]not retryable[/] {dead_id}: {why}")
    if result.still_bad or result.not_retryable:
        raise typer.Exit(EXIT_UNHEALTHY)


# --- mosquitto-config --------------------------------------------------------------


@app.command("mosquitto-config")
def mosquitto_config(
    out_dir: Annotated[
        Path, typer.Option(help="Where passwd, acl, patrol-site.conf and the gateway password go")
    ] = Path("/etc/mosquitto/patrol"),
    port: Annotated[int, typer.Option(help="Plain MQTT listener")] = 1883,
    bind_address: Annotated[str | None, typer.Option(help="Listen on this address only")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA certificate (PEM)")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Broker certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Broker private key (PEM)")] = None,
    tls_port: Annotated[int, typer.Option(help="TLS listener")] = 8883,
    persistence_dir: Annotated[Path, typer.Option()] = Path("/var/lib/mosquitto"),
    gateway_user: Annotated[
        str | None,
        typer.Option(help="The agent's MQTT user (default: mqtt_username, else gateway_id)"),
    ] = None,
    local_gateway_password: Annotated[
        bool,
        typer.Option(
            help="Make the gateway's MQTT password here (kept in gateway-mqtt-password, "
            "0600) instead of using the account the cloud issued at provisioning"
        ),
    ] = False,
    owner: Annotated[
        str | None, typer.Option(help="Give passwd and acl to this user (e.g. mosquitto)")
    ] = None,
) -> None:
    """Fetch the site's devices from the cloud and write the Mosquitto files."""
    settings = _settings()
    user = gateway_user or settings.mqtt_username or settings.gateway_id
    tls_parts = (tls_ca, tls_cert, tls_key)
    if any(tls_parts) and not all(tls_parts):
        errors.print("[bold red]error:[/] TLS needs --tls-ca, --tls-cert and --tls-key together")
        raise typer.Exit(EXIT_CONFIG)
    tls = TlsFiles(tls_ca, tls_cert, tls_key) if tls_ca and tls_cert and tls_key else None
    uid_gid: tuple[int, int] | None = None
    if owner is not None:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            errors.print(f"[bold red]error:[/] no user {owner!r}")
            raise typer.Exit(EXIT_CONFIG) from None
        uid_gid = (entry.pw_uid, entry.pw_gid)
    try:
        export = fetch_export(settings)
        written = write_site_files(
            export,
            out_dir,
            gateway_user=user,
            listener_port=port,
            bind_address=bind_address,
            tls=tls,
            tls_port=tls_port,
            persistence_dir=persistence_dir,
            owner=uid_gid,
            local_gateway_password=local_gateway_password,
        )
    except (MosquittoSetupError, OSError, ValueError) as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_UNHEALTHY) from None
    console.print(
        f"site {export.site_id}: {written.devices} device(s) + gateway user "
        f"{written.gateway_user!r}"
    )
    for label, path in (
        ("broker configuration", written.conf),
        ("password file", written.passwd),
        ("ACL", written.acl),
        ("agent's MQTT password (0600)", written.gateway_password),
    ):
        if path is not None:
            console.print(f"  {label}: {path}")
    where = (
        f"from {written.gateway_password}"
        if written.gateway_password is not None
        else "to the password shown when the gateway was provisioned"
    )
    console.print(
        f"next: include {written.conf} from /etc/mosquitto/conf.d, restart mosquitto, and set "
        f"PATROL_EDGE_MQTT_USERNAME={written.gateway_user} and PATROL_EDGE_MQTT_PASSWORD {where}"
        + ("" if os.geteuid() == 0 else " (run as root to install under /etc)")
    )


def main() -> None:
    """Entry point of the ``patrol-edge`` script."""
    app()


if __name__ == "__main__":
    main()
