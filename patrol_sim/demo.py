"""The demo: a small simulated site running end to end on embedded defaults.

One process starts the cloud service on SQLite, the edge agent with its
embedded MQTT broker, and three guards whose wearables run the firmware's own
code. The guards walk compressed rounds in real time, tapping NTAG 424 DNA and
NTAG21x tags and lingering at BLE beacons, carrying radios and flashlights with
BLE tags. Every frame is signed on the wearable, relayed by the edge agent and
verified by the cloud; the demo ends with each post's round summary.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select

from cloud_api.app import create_app
from cloud_api.crypto_store import SecretBox
from cloud_api.db import init_db, make_engine, session_scope
from cloud_api.models import Event, RejectedEvent
from cloud_api.provisioning import (
    create_checkpoint,
    create_gateway,
    create_post,
    create_site,
    register_beacon,
    register_equipment_tag,
    register_ntag21x,
    register_ntag424,
    register_wearable,
)
from cloud_api.rounds import PostSummary
from cloud_api.server import ServerThread
from cloud_api.settings import Settings
from cloud_api.summaries import site_round_summaries
from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings
from patrol_protocol.commands import CommandKind, encode_command, encode_set_time
from patrol_protocol.topics import cmd_topic
from patrol_sim.guard import GuardRunner, round_walk_s
from patrol_sim.site import CheckpointKind, Site, demo_site

GATEWAY_ID = "gw-riverside-1"
DRAIN_TIMEOUT_S = 60.0  # after the shift, wait this long for every frame to reach the cloud
SET_TIME_VALID_FOR_S = 300
HEARTBEAT_INTERVAL_S = 15


class DemoConfigError(ValueError):
    """Options that cannot make a meaningful demo."""


@dataclass(frozen=True)
class DemoOptions:
    once: bool = False
    shift_s: float = 150.0
    round_interval_s: float = 50.0
    api_port: int = 8000
    data_dir: Path | None = None


@dataclass(frozen=True)
class DemoResult:
    summaries: list[PostSummary]
    accepted_events: int
    rejected_events: int
    api_url: str


def _free_port(preferred: int) -> int:
    """`preferred` if it is free, else any free loopback port (0 means any)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn will
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def provision(settings: Settings, site: Site) -> tuple[int, str]:
    """Register the site, its posts, checkpoints and devices; return (site id, gateway key)."""
    engine = make_engine(settings.database_url)
    init_db(engine)
    box = SecretBox(settings.server_key_bytes())
    try:
        with session_scope(engine) as session:
            db_site = create_site(session, name=site.name, timezone=site.timezone)
            _, api_key = create_gateway(session, gateway_id=GATEWAY_ID, site=db_site)
            for post in site.posts:
                db_post = create_post(session, site=db_site, name=post.name)
                for cp in post.checkpoints:
                    db_cp = create_checkpoint(session, post=db_post, name=cp.name)
                    if cp.kind is CheckpointKind.NTAG424:
                        assert cp.tag is not None
                        register_ntag424(
                            session,
                            box=box,
                            uid=cp.tag.uid,
                            meta_read_key=cp.tag.meta_read_key,
                            file_read_key=cp.tag.file_read_key,
                            checkpoint=db_cp,
                        )
                    elif cp.kind is CheckpointKind.NTAG21X:
                        register_ntag21x(session, uid=cp.uid, checkpoint=db_cp)
                    else:
                        register_beacon(
                            session,
                            box=box,
                            beacon_id=cp.beacon_id,
                            key=cp.beacon_key,
                            key_id=site.key_id,
                            checkpoint=db_cp,
                            site=db_site,
                        )
            for guard in site.guards:
                register_wearable(
                    session,
                    box=box,
                    device_id=guard.device_id,
                    key=guard.key,
                    key_id=site.key_id,
                    site=db_site,
                    label=guard.name,
                )
                for item in guard.equipment:
                    register_equipment_tag(
                        session,
                        box=box,
                        tag_id=item.tag_id,
                        key=item.key,
                        key_id=site.key_id,
                        label=f"{item.item} of {guard.name}",
                        site=db_site,
                    )
            return db_site.id, api_key
    finally:
        engine.dispose()


def send_set_time(mqtt_port: int, site: Site) -> None:
    """Sign SET_TIME for every wearable with its key, as the cloud would, and relay it.

    Retained, so a wearable that subscribes later still receives it; its
    strictly increasing command sequence makes a second delivery harmless.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-cloud-relay")
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        now_ns = time.time_ns()
        for guard in site.guards:
            frame = encode_command(
                kind=CommandKind.SET_TIME,
                key_id=site.key_id,
                device_id=guard.device_id,
                cmd_seq=1,
                issued_s=now_ns // 1_000_000_000,
                valid_for_s=SET_TIME_VALID_FOR_S,
                body=encode_set_time(now_ns // 1_000_000_000, (now_ns // 1_000_000) % 1000),
                key=guard.key,
            )
            client.publish(cmd_topic(guard.device_id), frame, qos=1, retain=True).wait_for_publish(
                5
            )
    finally:
        client.loop_stop()
        client.disconnect()


@contextmanager
def _data_dir(options: DemoOptions) -> Iterator[Path]:
    if options.data_dir is not None:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        yield options.data_dir
        return
    with tempfile.TemporaryDirectory(prefix="patrol-demo-") as tmp:
        yield Path(tmp)


def run_site(options: DemoOptions, console: Console, data: Path) -> DemoResult:
    site = demo_site()
    rounds = int(options.shift_s // options.round_interval_s)
    if rounds < 1:
        raise DemoConfigError("the shift must be at least one round interval long")
    longest_walk_s = max(round_walk_s(post) for post in site.posts)
    if options.round_interval_s <= longest_walk_s:
        raise DemoConfigError(
            f"a round takes {longest_walk_s:.1f} s to walk; "
            "choose a round interval longer than that"
        )
    settings = Settings(
        database_url=f"sqlite:///{data / 'cloud.sqlite3'}",
        server_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        admin_token=SecretStr(secrets.token_urlsafe(24)),
    )
    site_id, api_key = provision(settings, site)
    api = ServerThread(create_app(settings), _free_port(options.api_port))
    api.start()
    agent = EdgeAgent(
        EdgeSettings(
            cloud_url=api.url,
            gateway_id=GATEWAY_ID,
            gateway_api_key=SecretStr(api_key),
            queue_path=data / "edge-queue.sqlite3",
            embedded_broker=True,
            mqtt_port=0,
            forward_interval_ms=200,
        )
    )
    agent.start()
    console.print(
        f"cloud API [bold]{api.url}[/] (SQLite), edge agent on MQTT port "
        f"{agent.mqtt_port} (embedded broker)"
    )
    shift_start_wall = datetime.now(UTC)
    shift_start = time.monotonic()
    guards = [
        GuardRunner(
            guard=guard,
            post=site.post(guard.post),
            key_id=site.key_id,
            mqtt_port=agent.mqtt_port,
            flash_dir=data / f"guard-{guard.device_id:08x}",
            shift_start=shift_start,
            round_interval_s=options.round_interval_s,
            rounds=rounds,
            heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        )
        for guard in site.guards
    ]
    try:
        for runner in guards:
            runner.start()
        send_set_time(agent.mqtt_port, site)
        _watch_shift(console, options, agent, guards, shift_start)
        summaries, accepted, rejected = _summaries(
            settings, site_id, shift_start_wall, rounds, options.round_interval_s
        )
    finally:
        for runner in guards:
            runner.stop()
        if options.once:
            agent.stop()
            api.stop()
    result = DemoResult(summaries, accepted, rejected, api.url)
    _print_summary(console, result, settings)
    if not options.once:
        console.print(
            f"API still serving at [bold]{api.url}[/] (docs: {api.url}/docs); Ctrl-C to stop"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            agent.stop()
            api.stop()
    return result


def _watch_shift(
    console: Console,
    options: DemoOptions,
    agent: EdgeAgent,
    guards: list[GuardRunner],
    shift_start: float,
) -> None:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("shift", total=options.shift_s, detail="")
        while True:
            elapsed = time.monotonic() - shift_start
            status = agent.status()
            progress.update(
                task,
                completed=min(elapsed, options.shift_s),
                detail=(
                    f"taps {sum(g.stats.taps for g in guards):3d}  "
                    f"committed {status.mqtt.stored:4d}  forwarded {status.forwarded:4d}"
                ),
            )
            if elapsed >= options.shift_s and all(g.walk_done for g in guards):
                break
            time.sleep(0.25)
        progress.update(task, description="draining")
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(g.drained() for g in guards) and agent.status().queue.depth == 0:
                break
            time.sleep(0.2)
        else:
            console.print(
                "[yellow]not everything reached the cloud within "
                f"{DRAIN_TIMEOUT_S:.0f} s; the summary counts what did[/]"
            )


def _summaries(
    settings: Settings, site_id: int, start: datetime, rounds: int, interval_s: float
) -> tuple[list[PostSummary], int, int]:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            summaries = site_round_summaries(
                session,
                site_id=site_id,
                start=start,
                end=start + timedelta(seconds=rounds * interval_s),
                interval_s=interval_s,
            )
            accepted = session.scalar(select(func.count()).select_from(Event)) or 0
            rejected = session.scalar(select(func.count()).select_from(RejectedEvent)) or 0
            return summaries, accepted, rejected
    finally:
        engine.dispose()


def _print_summary(console: Console, result: DemoResult, settings: Settings) -> None:
    table = Table(title="Round summary per post")
    for column in ("post", "rounds complete", "verified visits", "compliance", "missed"):
        table.add_column(column)
    for summary in result.summaries:
        complete = sum(1 for r in summary.rounds if r.complete)
        missed = "; ".join(
            f"round {r.index + 1}: {', '.join(r.missed)}" for r in summary.rounds if r.missed
        )
        table.add_row(
            summary.post,
            f"{complete}/{len(summary.rounds)}",
            f"{summary.verified_visits}/{summary.expected_visits}",
            f"{summary.compliance_pct:.0f}%",
            missed or "-",
        )
    console.print(table)
    console.print(
        f"events accepted {result.accepted_events}, rejected {result.rejected_events}; "
        f"API {result.api_url}"
    )
    if settings.admin_token is not None:
        console.print(
            f"try: curl -H 'Authorization: Bearer {settings.admin_token.get_secret_value()}' "
            f"'{result.api_url}/api/v1/events?kind=nfc_scan&limit=5'"
        )


def run_demo(options: DemoOptions) -> int:
    """Run the demo; 0 when every post saw verified visits, 1 otherwise."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    try:
        with _data_dir(options) as data:
            result = run_site(options, console, data)
    except DemoConfigError as exc:
        console.print(f"[red]cannot run the demo:[/] {exc}")
        return 2
    return 0 if all(s.verified_visits > 0 for s in result.summaries) else 1
