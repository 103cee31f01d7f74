"""Measurements of the InfluxDB sink and a fast line-protocol serialiser.

docs/influx-schema.md is the reference; this module is its implementation. Tags
hold only values of bounded sets (site, post, checkpoint, device, gateway,
equipment, method, assurance, kind, trigger); sequence numbers, counters and
measured values are fields.

Timestamps are nanoseconds. InfluxDB keeps ONE point per series and timestamp
and silently overwrites a second one, so every point gets a deterministic,
unique time: the event's millisecond plus the low digits of its per-source
sequence number as a nanosecond offset (:func:`tie_broken_ns`). Rewriting the
same point (a retried write) lands on the same key with the same values, which
makes retries idempotent.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from patrol_protocol.frames import Kind, SosTrigger

FieldValue = int | float | bool | str
Tags = tuple[tuple[str, str], ...]
Fields = tuple[tuple[str, FieldValue], ...]

NS_PER_MS = 1_000_000
TIE_BREAK_MODULUS = NS_PER_MS
"""The sequence's low digits fit inside one millisecond: seq % 1e6 ns never reaches the next ms."""

MAX_OBSERVATION_FIELDS = 32
"""A gateway observation is free-form JSON: at most this many scalar keys become fields."""
MAX_STRING_FIELD_CHARS = 1024
"""String fields are cut here: observations are the gateway's own words, not evidence."""

M_SCAN = "scan"
M_HEARTBEAT = "heartbeat"
M_EQUIPMENT = "equipment"
M_GATEWAY = "gateway_health"
M_SOS = "sos"
M_COMPLIANCE = "compliance"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SOS_TRIGGERS = {int(t): t.name.lower() for t in SosTrigger}


class LineProtocolError(ValueError):
    """A point that line protocol cannot carry (no fields, a non-finite float)."""


@dataclass(frozen=True, slots=True)
class Point:
    """One point; ``tags`` sorted by key (InfluxDB's own order, cheapest to index)."""

    measurement: str
    tags: Tags
    fields: Fields
    time_ns: int


# ---------------------------------------------------------------- escaping

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})


def escape_key(text: str) -> str:
    """A tag key, tag value or field key: ``,`` ``=`` and space escaped with a backslash.

    Control characters are written as the two characters ``\\n``, ``\\r``, ``\\t``
    (line protocol has no way to carry them in keys). InfluxDB 1.x reads a
    backslash before the separator as an escape, so a value ending in ``\\``
    cannot be written as is: it gets one trailing (escaped) space.
    """
    escaped = text.translate(_ESCAPE_KEY)
    if escaped.endswith("\\"):
        escaped += "\\ "
    return escaped


def escape_string_field(text: str) -> str:
    """A string field value, quoted: ``"`` and ``\\`` escaped (newlines as ``\\n``)."""
    return '"' + text.translate(_ESCAPE_STRING) + '"'


@functools.lru_cache(maxsize=65_536)
def series_prefix(measurement: str, tags: Tags) -> str:
    """``measurement,k=v,...`` escaped, cached: a series repeats across many points."""
    parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key, value in tags:
        if value:  # InfluxDB refuses empty tag values: an empty tag is no tag
            parts.append(f"{escape_key(key)}={escape_key(value)}")
    return ",".join(parts)


@functools.lru_cache(maxsize=1024)
def _field_key(key: str) -> str:
    return escape_key(key)


def _field(key: str, value: FieldValue) -> str:
    # bool before int: bool is an int subclass.
    if value is True:
        return f"{_field_key(key)}=true"
    if value is False:
        return f"{_field_key(key)}=false"
    if isinstance(value, int):
        return f"{_field_key(key)}={value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r} is {value}: line protocol has no NaN/inf")
        return f"{_field_key(key)}={value!r}"
    return f"{_field_key(key)}={escape_string_field(value)}"


def encode_line(point: Point) -> str:
    """One line (no newline) in line protocol."""
    if not point.fields:
        raise LineProtocolError(f"point of {point.measurement!r} has no fields")
    fields = ",".join([_field(k, v) for k, v in point.fields])
    return f"{series_prefix(point.measurement, point.tags)} {fields} {point.time_ns}"


def encode_lines(points: Iterable[Point]) -> str:
    """Newline-separated lines (no trailing newline)."""
    return "\n".join([encode_line(p) for p in points])


# ---------------------------------------------------------------- time


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (integer arithmetic, no float rounding)."""
    return (moment - _EPOCH) // _MS


def tie_broken_ns(moment: datetime, seq: int) -> int:
    """The point time: ``moment`` truncated to the ms, plus ``seq % 1e6`` ns.

    Two points of one series then share a timestamp only if their sequence
    numbers differ by a multiple of a million inside the same millisecond.
    """
    return epoch_ms(moment) * NS_PER_MS + seq % TIE_BREAK_MODULUS


# ---------------------------------------------------------------- builders


def _tags(**values: str | int | None) -> Tags:
    return tuple(sorted((k, str(v)) for k, v in values.items() if v is not None))


def device_text(device_id: int) -> str:
    """Device ids as tags: 8 lowercase hex digits, as on the wire and in MQTT usernames."""
    return f"{device_id:08x}"


def _delay_ms(received_at: datetime, device_time: datetime) -> int:
    return epoch_ms(received_at) - epoch_ms(device_time)


def points_for_event(
    row: Mapping[str, Any], *, site_id: int | None, post_id: int | None
) -> list[Point]:
    """Points for one accepted device frame (``row`` as stored in ``events``).

    Scans (NFC tap, BLE visit), heartbeats with one ``equipment`` point per item
    the wearable hears, and SOS. Boot, eviction and command results have none.
    """
    kind = row["kind"]
    seq: int = row["seq"]
    device_time: datetime = row["device_time"]
    time_ns = tie_broken_ns(device_time, seq)
    device = device_text(row["device_id"])
    body: Mapping[str, Any] = row["body"]
    flags: list[str] = list(row["flags"])
    delay_ms = _delay_ms(row["received_at"], device_time)
    if kind in (Kind.NFC_SCAN, Kind.BLE_VISIT):
        nfc = kind == Kind.NFC_SCAN
        fields: list[tuple[str, FieldValue]] = [
            ("seq", seq),
            ("delay_ms", delay_ms),
            ("flag_count", len(flags)),
            ("flags", ",".join(flags)),
        ]
        if nfc and row.get("sun_read_counter") is not None:
            fields.append(("read_counter", int(row["sun_read_counter"])))
        if not nfc:
            fields.append(("rssi_dbm", int(body["rssi_dbm"])))
            fields.append(("dwell_s", int(body["dwell_s"])))
        tags = _tags(
            site=site_id,
            post=post_id,
            checkpoint=row.get("checkpoint_id"),
            device=device,
            method="nfc" if nfc else "ble",
            assurance=row["assurance"],
        )
        return [Point(M_SCAN, tags, tuple(fields), time_ns)]
    if kind == Kind.HEARTBEAT:
        items: list[Mapping[str, Any]] = list(body.get("items", ()))
        points = [
            Point(
                M_HEARTBEAT,
                _tags(site=site_id, device=device),
                (
                    ("seq", seq),
                    ("battery_pct", int(body["battery_pct"])),
                    ("battery_mv", int(body["battery_mv"])),
                    ("status", int(body["status"])),
                    ("queue_depth", int(body["queue_depth"])),
                    ("equipment_count", len(items)),
                    ("delay_ms", delay_ms),
                    ("flag_count", len(flags)),
                ),
                time_ns,
            )
        ]
        for item in items:
            points.append(
                Point(
                    M_EQUIPMENT,
                    _tags(
                        site=site_id,
                        equipment=device_text(int(item["tag_id"])),
                        source="wearable",
                        device=device,
                    ),
                    (
                        ("rssi_dbm", int(item["rssi_dbm"])),
                        ("battery_pct", int(item["battery_pct"])),
                        ("seq", seq),
                    ),
                    time_ns,
                )
            )
        return points
    if kind == Kind.SOS:
        trigger = int(body["trigger"])
        return [
            Point(
                M_SOS,
                _tags(
                    site=site_id,
                    device=device,
                    trigger=_SOS_TRIGGERS.get(trigger, str(trigger)),
                    assurance=row["assurance"],
                ),
                (
                    ("seq", seq),
                    ("trigger_code", trigger),
                    ("delay_ms", delay_ms),
                    ("flags", ",".join(flags)),
                ),
                time_ns,
            )
        ]
    return []


MAX_CACHED_PREFIXES = 65_536
"""Series prefixes kept for the hot path: a company's devices x checkpoints fit; then reset."""

_prefixes: dict[tuple[Any, ...], str] = {}
_NFC_SCAN = int(Kind.NFC_SCAN)
_BLE_VISIT = int(Kind.BLE_VISIT)
_HEARTBEAT = int(Kind.HEARTBEAT)


def _event_prefix(key: tuple[Any, ...]) -> str:
    """The escaped series of ``(measurement, site, post, checkpoint, device, method,
    assurance)``, cached in a plain dict (cheaper per call than ``lru_cache``)."""
    prefix = _prefixes.get(key)
    if prefix is None:
        measurement, site_id, post_id, checkpoint_id, device_id, method, assurance = key
        prefix = series_prefix(
            measurement,
            _tags(
                site=site_id,
                post=post_id,
                checkpoint=checkpoint_id,
                device=device_text(device_id),
                method=method,
                assurance=assurance,
            ),
        )
        if len(_prefixes) >= MAX_CACHED_PREFIXES:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def lines_for_event(
    row: Mapping[str, Any], *, site_id: int | None, post_id: int | None
) -> list[str]:
    """``encode_line`` of each of :func:`points_for_event`, built straight into strings.

    The hot path of ingest (every accepted frame): series prefixes come from a
    cache and no :class:`Point` is built. A test holds both functions to the same
    output for every kind.
    """
    kind = row["kind"]
    seq: int = row["seq"]
    ms = (row["device_time"] - _EPOCH) // _MS
    time_ns = ms * NS_PER_MS + seq % TIE_BREAK_MODULUS
    flags: list[str] = row["flags"]
    delay_ms = (row["received_at"] - _EPOCH) // _MS - ms
    if kind in (_NFC_SCAN, _BLE_VISIT):
        nfc = kind == _NFC_SCAN
        prefix = _event_prefix(
            (
                M_SCAN,
                site_id,
                post_id,
                row.get("checkpoint_id"),
                row["device_id"],
                "nfc" if nfc else "ble",
                row["assurance"],
            )
        )
        flags_text = escape_string_field(",".join(flags)) if flags else '""'
        line = (
            f"{prefix} seq={seq}i,delay_ms={delay_ms}i,flag_count={len(flags)}i,flags={flags_text}"
        )
        if nfc:
            counter = row.get("sun_read_counter")
            if counter is not None:
                line = f"{line},read_counter={counter}i {time_ns}"
            else:
                line = f"{line} {time_ns}"
        else:
            body = row["body"]
            line = f"{line},rssi_dbm={body['rssi_dbm']}i,dwell_s={body['dwell_s']}i {time_ns}"
        return [line]
    if kind == _HEARTBEAT:
        body = row["body"]
        items: list[Mapping[str, Any]] = body.get("items") or []
        device_id: int = row["device_id"]
        prefix = _event_prefix((M_HEARTBEAT, site_id, None, None, device_id, None, None))
        lines = [
            f"{prefix} seq={seq}i,battery_pct={body['battery_pct']}i,"
            f"battery_mv={body['battery_mv']}i,status={body['status']}i,"
            f"queue_depth={body['queue_depth']}i,equipment_count={len(items)}i,"
            f"delay_ms={delay_ms}i,flag_count={len(flags)}i {time_ns}"
        ]
        if items:
            device = device_text(device_id)
            for item in items:
                tags = _tags(
                    site=site_id,
                    equipment=device_text(int(item["tag_id"])),
                    source="wearable",
                    device=device,
                )
                lines.append(
                    f"{series_prefix(M_EQUIPMENT, tags)} rssi_dbm={item['rssi_dbm']}i,"
                    f"battery_pct={item['battery_pct']}i,seq={seq}i {time_ns}"
                )
        return lines
    return [encode_line(p) for p in points_for_event(row, site_id=site_id, post_id=post_id)]


def points_for_advert(
    row: Mapping[str, Any], *, site_id: int | None, gateway_id: str
) -> list[Point]:
    """Equipment-tag health as the gateway heard it (``row`` as in ``advert_observations``).

    Beacon and presence adverts are evidence for visits and presence, not health:
    they have no point of their own.
    """
    fields: Mapping[str, Any] = row["fields"]
    if "tag_id" not in fields:
        return []
    counter = int(fields["counter"])
    return [
        Point(
            M_EQUIPMENT,
            _tags(
                site=site_id,
                equipment=device_text(int(fields["tag_id"])),
                source="gateway",
                gateway=gateway_id,
            ),
            (
                ("rssi_dbm", int(row["rssi_dbm"])),
                ("battery_pct", int(fields["battery_pct"])),
                ("tag_flags", int(fields["flags"])),
                ("counter", counter),
            ),
            tie_broken_ns(row["received_at"], counter),
        )
    ]


def _observation_fields(observation: Mapping[str, Any]) -> list[tuple[str, FieldValue]]:
    """Scalar top-level values: numbers as floats (one type per field, whatever JSON
    said), booleans, strings (cut); nested values and the ``kind`` are left out."""
    fields: list[tuple[str, FieldValue]] = []
    for key, value in observation.items():
        if len(fields) >= MAX_OBSERVATION_FIELDS:
            break
        if key in ("kind", "gw_seq", "clock_synced") or not key:
            continue
        if isinstance(value, bool):
            fields.append((f"obs_{key}", value))
        elif isinstance(value, int | float):
            number = float(value)
            if math.isfinite(number):
                fields.append((f"obs_{key}", number))
        elif isinstance(value, str):
            fields.append((f"obs_{key}", value[:MAX_STRING_FIELD_CHARS]))
    return fields


def points_for_observation(
    row: Mapping[str, Any], *, site_id: int | None, gateway_id: str
) -> list[Point]:
    """A gateway's own observation (health, eviction, away/back): one ``gateway_health`` point."""
    gw_seq = int(row["gw_seq"])
    fields: list[tuple[str, FieldValue]] = [
        ("gw_seq", gw_seq),
        ("clock_synced", bool(row["gateway_clock_synced"])),
        *_observation_fields(row["observation"]),
    ]
    return [
        Point(
            M_GATEWAY,
            _tags(site=site_id, gateway=gateway_id, kind=row["kind"]),
            tuple(fields),
            tie_broken_ns(row["received_at"], gw_seq),
        )
    ]


def compliance_point(
    *,
    site_id: int,
    post_id: int,
    guard_id: int,
    period: str,
    period_start: datetime,
    score: float,
    rounds_expected: int,
    rounds_completed: int,
    checkpoints_missed: int,
    checkpoints_late: int,
) -> Point:
    """Placeholder for issue 6 (scoring): one score per guard, post and period.

    ``period`` is ``shift``, ``day`` or ``month``; the time is the period's start,
    unique per series because a guard has one score per post and period start.
    """
    return Point(
        M_COMPLIANCE,
        _tags(site=site_id, post=post_id, guard=guard_id, period=period),
        (
            ("score", float(score)),
            ("rounds_expected", rounds_expected),
            ("rounds_completed", rounds_completed),
            ("checkpoints_missed", checkpoints_missed),
            ("checkpoints_late", checkpoints_late),
        ),
        epoch_ms(period_start) * NS_PER_MS,
    )
