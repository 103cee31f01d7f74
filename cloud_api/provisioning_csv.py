"""Bulk registration from CSV: one row per device or tag, one result per row.

Columns (header line required; order free; extra columns refused)::

    kind,id,label,checkpoint_id,keys
    wearable,0000b001,W-01,,
    gateway,gw-harbour-2,,,
    beacon,000005c1,,12,
    equipment_tag,0000e101,Radio 4,,
    ntag424,04de5f1eacc041,,13,diversify
    ntag21x,04a1b2c3d4e5f7,,14,

``kind`` is one of :data:`KINDS`; ``id`` is the device's 8-hex id, the gateway id or
the tag's uid in hex; ``checkpoint_id`` links beacons and tags; ``keys`` is
``generate`` (default) or ``diversify`` for NTAG 424 tags. Each row runs in its own
savepoint: a bad row is reported with its reason and the others still register.
Secrets of created rows are in the result (shown once), never in the audit log.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud_api import provisioning
from cloud_api.audit import Actor
from cloud_api.crypto_store import SecretBox
from cloud_api.models import Checkpoint, Post, Site
from cloud_api.provisioning import KeySource, NotFoundError, ProvisioningError

KINDS = ("wearable", "gateway", "beacon", "equipment_tag", "ntag424", "ntag21x")
COLUMNS = ("kind", "id", "label", "checkpoint_id", "keys")
REQUIRED = ("kind", "id")
MAX_ROWS = 1000
"""Rows per request; the CLI uploads bigger files in chunks."""
MAX_BYTES = 512 * 1024
"""A request body larger than this is refused before parsing."""


class CsvError(ValueError):
    """The file as a whole cannot be used (no header, unknown column, too many rows)."""


@dataclass
class RowResult:
    """What happened to one data row (``line`` counts the header as line 1)."""

    line: int
    kind: str
    id: str
    status: str  # created | error
    error: str | None = None
    secrets: dict[str, Any] = field(default_factory=dict)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def parse(text: str) -> list[tuple[int, dict[str, str]]]:
    """``(line, row)`` pairs of a CSV text, or CsvError for a file that cannot be used."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    if not header:
        raise CsvError("empty file: the first line must name the columns")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise CsvError(f"unknown columns: {', '.join(unknown)} (allowed: {', '.join(COLUMNS)})")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise CsvError(f"missing columns: {', '.join(missing)}")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for row in reader:
            if None in row:
                rows.append((reader.line_num, {"__error__": "more fields than columns"}))
                continue
            values = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(values.values()):
                continue  # blank line
            rows.append((reader.line_num, values))
            if len(rows) > MAX_ROWS:
                raise CsvError(f"more than {MAX_ROWS} rows; upload in chunks")
    except csv.Error as exc:
        raise CsvError(f"line {reader.line_num}: {exc}") from exc
    return rows


def _device_id(text: str) -> int:
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise ProvisioningError("id must be 8 lowercase hex digits")
    return int(text, 16)


def _uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        raise ProvisioningError("id must be the tag uid in hex") from None
    if text != text.lower():
        raise ProvisioningError("uid hex must be lowercase")
    return uid


def _checkpoint(session: Session, site: Site, text: str) -> Checkpoint | None:
    if not text:
        return None
    if not text.isdigit():
        raise ProvisioningError("checkpoint_id must be a number")
    checkpoint = session.get(Checkpoint, int(text))
    post = session.get(Post, checkpoint.post_id) if checkpoint is not None else None
    if checkpoint is None or post is None or post.site_id != site.id:
        raise NotFoundError(f"no checkpoint {text} at site {site.id}")
    return checkpoint


def _one(
    session: Session, box: SecretBox, site: Site, row: dict[str, str], actor: Actor
) -> dict[str, Any]:
    """Register one row; returns its secrets (raises for a bad row)."""
    if "__error__" in row:
        raise ProvisioningError(row["__error__"])
    kind, ident = row.get("kind", ""), row.get("id", "")
    label = row.get("label") or None
    keys = row.get("keys") or "generate"
    if keys not in ("generate", "diversify"):
        raise ProvisioningError("keys must be generate or diversify")
    if keys == "diversify" and kind != "ntag424":
        raise ProvisioningError("keys=diversify is for ntag424 rows")
    if row.get("checkpoint_id") and kind not in ("beacon", "ntag424", "ntag21x"):
        raise ProvisioningError("checkpoint_id is for beacon and tag rows")
    if kind == "wearable":
        made = provisioning.provision_wearable(
            session, box=box, device_id=_device_id(ident), site=site, label=label, actor=actor
        )
        return {
            "key_id": made.key_id,
            "key_b64": _b64(made.key),
            "presence_key_b64": _b64(made.presence_key),
            "mqtt_username": made.mqtt_username,
            "mqtt_password": made.mqtt_password,
        }
    if kind == "gateway":
        gw = provisioning.provision_gateway(session, gateway_id=ident, site=site, actor=actor)
        return {
            "api_key": gw.api_key,
            "mqtt_username": gw.mqtt_username,
            "mqtt_password": gw.mqtt_password,
        }
    if kind in ("beacon", "equipment_tag"):
        key = os.urandom(provisioning.BLE_KEY_BYTES)
        if kind == "beacon":
            provisioning.register_beacon(
                session,
                box=box,
                beacon_id=_device_id(ident),
                key=key,
                checkpoint=_checkpoint(session, site, row.get("checkpoint_id", "")),
                site=site,
                label=label,
                actor=actor,
            )
        else:
            provisioning.register_equipment_tag(
                session,
                box=box,
                tag_id=_device_id(ident),
                key=key,
                label=label,
                site=site,
                actor=actor,
            )
        return {"key_id": 1, "key_b64": _b64(key)}
    if kind == "ntag424":
        tag, meta, file = provisioning.provision_ntag424(
            session,
            box=box,
            site=site,
            uid=_uid(ident),
            source=KeySource.DIVERSIFIED if keys == "diversify" else KeySource.GENERATED,
            checkpoint=_checkpoint(session, site, row.get("checkpoint_id", "")),
            actor=actor,
        )
        return {
            "key_source": tag.key_source,
            "master_key_version": tag.master_key_version,
            "meta_read_key_b64": _b64(meta),
            "file_read_key_b64": _b64(file),
        }
    if kind == "ntag21x":
        provisioning.register_ntag21x(
            session,
            uid=_uid(ident),
            checkpoint=_checkpoint(session, site, row.get("checkpoint_id", "")),
            site=site,
            actor=actor,
        )
        return {}
    raise ProvisioningError(f"kind must be one of {', '.join(KINDS)}")


def register_rows(
    session: Session,
    *,
    box: SecretBox,
    site: Site,
    rows: list[tuple[int, dict[str, str]]],
    actor: Actor,
) -> list[RowResult]:
    """Register every row in its own savepoint of the caller's transaction."""
    results: list[RowResult] = []
    for line, row in rows:
        result = RowResult(line=line, kind=row.get("kind", ""), id=row.get("id", ""), status="")
        try:
            with session.begin_nested():
                result.secrets = _one(session, box, site, row, actor)
            result.status = "created"
        except IntegrityError:
            result.status, result.error = "error", f"{result.kind} {result.id} already exists"
        except (ProvisioningError, NotFoundError) as exc:
            result.status, result.error = "error", str(exc)
        results.append(result)
    return results
