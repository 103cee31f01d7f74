"""``patrol-edge mosquitto-config``: site broker files from the devices provisioned in the cloud.

The cloud knows which wearables belong to the gateway's site and their MQTT
password hashes; it exports them as a Mosquitto password file and ACL
(``GET /api/v1/gateway/mosquitto``, gateway API key; see /work/coord/notes.md
for the contract). This module fetches that export and writes, atomically:

- ``passwd``: the cloud's lines (stored ``$7$`` hashes, never passwords). The
  gateway's own account is the one the cloud issued at provisioning (its password
  was shown once, for ``PATROL_EDGE_MQTT_PASSWORD``); with
  ``local_gateway_password`` the gateway's line is instead made **here**, on the
  Pi (32 random bytes, hashed like ``mosquitto_passwd``: ``$7$``, PBKDF2-HMAC-SHA512,
  101 iterations, 12-byte salt) and the password kept in ``gateway-mqtt-password``
  (mode 0600), so that secret never leaves the gateway; rerunning reuses it;
- ``acl``: the cloud's ACL, with the gateway's line for its own user;
- ``patrol-site.conf``: :func:`edge_agent.broker.mosquitto_conf` sized for the
  number of devices (``max_queued_messages``), with the TLS listener when a CA,
  certificate and key are given.

Nothing secret is logged or printed: hashes and the gateway password go to files only.
"""

import base64
import hashlib
import os
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pydantic

from edge_agent.broker import DEFAULT_MAX_INFLIGHT_MESSAGES, TlsFiles, mosquitto_conf
from edge_agent.settings import EdgeSettings

EXPORT_PATH: Final = "/api/v1/gateway/mosquitto"
PBKDF2_ITERATIONS: Final = 101
"""What mosquitto_passwd 2.0 writes ($7$ lines); Mosquitto reads the count from each line."""
SALT_BYTES: Final = 12
GATEWAY_PASSWORD_BYTES: Final = 32
PASSWD_FILE: Final = "passwd"  # noqa: S105  (a file name)
ACL_FILE: Final = "acl"
CONF_FILE: Final = "patrol-site.conf"
GATEWAY_PASSWORD_FILE: Final = "gateway-mqtt-password"  # noqa: S105  (a file name)
MAX_EXPORT_BYTES: Final = 8 * 1024 * 1024
"""A site has hundreds of devices, ~150 bytes each: 8 MiB is a runaway, not a site."""
_PASSWD_LINE: Final = re.compile(r"[^:\s]+:\$(6|7)\$\S+")
_DEVICE_USER: Final = re.compile(r"[0-9a-f]{8}")


class MosquittoSetupError(Exception):
    """The export could not be fetched or is not usable; the message says why."""


class SiteAuthExport(pydantic.BaseModel):
    """The cloud's answer (``GET /api/v1/gateway/mosquitto``)."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    gateway_id: str
    site_id: int
    password_file: str
    acl_file: str


@dataclass(frozen=True, slots=True)
class WrittenFiles:
    """What :func:`write_site_files` wrote."""

    conf: Path
    passwd: Path
    acl: Path
    gateway_password: Path | None
    """Set when the gateway's password was made here (``local_gateway_password``)."""
    devices: int
    gateway_user: str


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto ``$7$`` hash (PBKDF2-HMAC-SHA512), as ``mosquitto_passwd`` writes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def fetch_export(settings: EdgeSettings, *, timeout_s: float = 30.0) -> SiteAuthExport:
    """GET the export with the gateway credential (TLS verified, ``cloud_ca_file`` if set)."""
    verify: ssl.SSLContext | bool = True
    if settings.cloud_ca_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.cloud_ca_file))
    url = settings.cloud_url + EXPORT_PATH
    headers = {"Authorization": f"Bearer {settings.gateway_api_key.get_secret_value()}"}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s, verify=verify)
    except httpx.HTTPError as exc:
        raise MosquittoSetupError(f"cannot reach {url}: {exc!r}") from exc
    if response.status_code != httpx.codes.OK:
        raise MosquittoSetupError(
            f"{url} answered HTTP {response.status_code}: {response.text[:300]}"
        )
    if len(response.content) > MAX_EXPORT_BYTES:
        raise MosquittoSetupError(f"{url} sent {len(response.content)} bytes, over the limit")
    try:
        export = SiteAuthExport.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        raise MosquittoSetupError(f"{url} sent something that is not an export: {exc}") from exc
    if export.gateway_id != settings.gateway_id:
        raise MosquittoSetupError(
            f"the export is for gateway {export.gateway_id!r}, this is {settings.gateway_id!r}"
        )
    return export


def _passwd_lines(export: SiteAuthExport) -> list[str]:
    lines: list[str] = []
    for number, line in enumerate(export.password_file.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _PASSWD_LINE.fullmatch(line):
            raise MosquittoSetupError(
                f"password_file line {number} is not 'user:$7$...' (hash not shown)"
            )
        lines.append(line)
    return lines


def _write_atomic(path: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def write_site_files(
    export: SiteAuthExport,
    out_dir: Path,
    *,
    gateway_user: str,
    listener_port: int = 1883,
    bind_address: str | None = None,
    tls: TlsFiles | None = None,
    tls_port: int = 8883,
    persistence_dir: Path = Path("/var/lib/mosquitto"),
    max_inflight_messages: int = DEFAULT_MAX_INFLIGHT_MESSAGES,
    owner: tuple[int, int] | None = None,
    local_gateway_password: bool = False,
) -> WrittenFiles:
    """Write passwd, acl (and with ``local_gateway_password`` the gateway's password) and
    the broker configuration into ``out_dir``.

    ``owner`` (uid, gid) is applied to passwd and acl (Mosquitto reads them after it
    drops root); the gateway password file stays with the caller, mode 0600.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = _passwd_lines(export)
    users = [line.split(":", 1)[0] for line in lines]
    devices = sum(1 for user in users if _DEVICE_USER.fullmatch(user))
    password_path: Path | None = None
    if local_gateway_password:
        password_path = out_dir / GATEWAY_PASSWORD_FILE
        if password_path.is_file() and password_path.read_text().strip():
            password = password_path.read_text().strip()
        else:
            password = secrets.token_urlsafe(GATEWAY_PASSWORD_BYTES)
            _write_atomic(password_path, password + "\n", 0o600, None)
        lines = [line for line, user in zip(lines, users, strict=True) if user != gateway_user]
        lines.insert(0, f"{gateway_user}:{hash_password(password)}")
    elif gateway_user not in users:
        raise MosquittoSetupError(
            f"the cloud has no MQTT account {gateway_user!r} for this site: provision the "
            "gateway's broker account, or make one here with --local-gateway-password"
        )
    passwd_lines = lines
    passwd_path = out_dir / PASSWD_FILE
    _write_atomic(passwd_path, "\n".join(passwd_lines) + "\n", 0o600, owner)

    acl_text = export.acl_file
    if f"user {gateway_user}\n" not in acl_text + "\n":
        acl_text = f"user {gateway_user}\ntopic readwrite patrol/v1/#\n\n" + acl_text
    acl_path = out_dir / ACL_FILE
    _write_atomic(acl_path, acl_text.rstrip("\n") + "\n", 0o600, owner)

    conf_path = out_dir / CONF_FILE
    conf = mosquitto_conf(
        port=listener_port,
        password_file=passwd_path,
        acl_file=acl_path,
        persistence_dir=persistence_dir,
        devices=max(devices, 1),
        max_inflight_messages=max_inflight_messages,
        bind_address=bind_address,
        tls=tls,
        tls_port=tls_port,
    )
    _write_atomic(conf_path, conf, 0o644, None)
    return WrittenFiles(
        conf=conf_path,
        passwd=passwd_path,
        acl=acl_path,
        gateway_password=password_path,
        devices=devices,
        gateway_user=gateway_user,
    )
