"""Verification of what a gateway forwards: device frames and signed BLE adverts.

Pure apart from key lookups, which go through the :class:`KeyLookup` protocol
(the ingest module implements it on the database). No web framework, no SQL.
Every refusal raises :class:`Rejected` carrying one of the stable reason strings
of docs/protocol.md; suspicious-but-valid evidence is accepted with *flags*.

A frame is checked in this order, so a retried frame costs one HMAC and never
trips the tag replay check: decode the structure, find the device key, verify
the frame MAC (:func:`authenticate_frame`); the caller then looks for an
already stored copy; only a new frame gets its body verified
(:func:`verify_frame_body`), including the NTAG 424 DNA SUN.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cloud_api.models import Assurance, DeviceKind, TagType
from patrol_protocol.adverts import (
    Advert,
    BeaconAdvert,
    EquipmentAdvert,
    PresenceAdvert,
    advert_signer_key,
    decode_advert_payload,
    verify_advert,
)
from patrol_protocol.errors import ProtocolError, SignatureError
from patrol_protocol.frames import (
    FLAG_CLOCK_UNSYNCED,
    TAG_NTAG424_SUN,
    BleVisit,
    Body,
    EventFrame,
    Kind,
    NfcScan,
    decode_body,
    decode_frame,
    verify_frame,
)
from patrol_protocol.ids import device_id_text
from patrol_protocol.sun import verify_sun
from patrol_protocol.topics import parse_device_topic

# Stable flag strings (accepted but suspicious, or weaker evidence); reasons for
# refusal are the protocol's reject strings instead.
FLAG_DEVICE_CLOCK_UNSYNCED = "device_clock_unsynced"
FLAG_GATEWAY_CLOCK_UNSYNCED = "gateway_clock_unsynced"
FLAG_CLOCK_SKEW = "clock_skew"
FLAG_GATEWAY_CLOCK_SKEW = "gateway_clock_skew"
FLAG_TOPIC_MISMATCH = "topic_mismatch"
FLAG_COUNTER_JUMP = "sun_counter_jump"
FLAG_COUNTER_OUT_OF_ORDER = "sun_counter_out_of_order"
FLAG_LOW_ASSURANCE_TAG = "low_assurance_tag"
FLAG_FOREIGN_SITE = "foreign_site"  # the wearable is registered to another site than the gateway
FLAG_BEACON_STEP_SKEW = "beacon_step_skew"  # beacon step outside the window around the expected
FLAG_BEACON_CLOCK_RESET = "beacon_clock_reset"  # ... and agreeing with the last few: re-anchored


class Rejected(Exception):
    """An item is refused: ``reason`` is a stable protocol string, ``detail`` is for people."""

    def __init__(self, reason: str, detail: str, *, key: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.key = key

    @classmethod
    def from_protocol(cls, exc: ProtocolError, *, key: str | None = None) -> Rejected:
        """Carry a codec error's own reason string."""
        return cls(exc.reason, str(exc), key=key)


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A usable (decrypted) device key and the row it belongs to."""

    device_pk: int
    key: bytes
    site_id: int | None = None


@dataclass(frozen=True, slots=True)
class TagRef:
    """An NFC checkpoint tag as the verifier needs it (keys decrypted, NTAG 424 only)."""

    tag_pk: int
    tag_type: TagType
    meta_read_key: bytes | None
    file_read_key: bytes | None
    last_read_counter: int | None
    checkpoint_id: int | None


class KeyLookup(Protocol):
    """Where the verifier finds keys; implemented on the database by the ingest module."""

    def device_key(self, kind: DeviceKind, device_id: int, key_id: int) -> KeyRef | None: ...

    def nfc_tag(self, uid: bytes) -> TagRef | None: ...

    def beacon_checkpoint(self, beacon_id: int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """Thresholds of the checks, from settings (named limits, units in the names)."""

    clock_skew_tolerance_s: int = 300
    max_future_skew_s: int = 3600
    sun_counter_jump_flag: int = 1000
    beacon_step_s: int = 10
    """A checkpoint beacon's time step (docs/protocol.md: default 10 s)."""
    beacon_window_steps: int = 3
    """Steps either side of the expected step an advert may be, right after an estimate."""
    beacon_drift_ppm: int = 50_000
    """How fast a beacon clock may drift (an ESP32 RC clock in deep sleep: several
    percent): the window widens by this share of the time since the last estimate."""
    beacon_reanchor_count: int = 3
    """Out-of-window adverts agreeing with each other this many times in a row re-anchor
    the estimate (the beacon restarted or was reset), flagged ``beacon_clock_reset``."""


@dataclass(frozen=True, slots=True)
class FrameContext:
    """What the gateway said about a frame, plus the server's clock."""

    topic: str
    received_at: datetime
    gateway_clock_synced: bool
    server_now: datetime
    gateway_site_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuthenticatedFrame:
    """A frame whose structure and device MAC are good."""

    frame: EventFrame
    device_pk: int
    site_id: int | None = None


@dataclass(frozen=True, slots=True)
class VerifiedFrame:
    """A fully verified frame, ready to be stored as an event."""

    frame: EventFrame
    device_pk: int
    body: Body
    device_time: datetime
    assurance: Assurance
    flags: tuple[str, ...]
    fields: dict[str, Any]
    checkpoint_id: int | None = None
    nfc_tag_id: int | None = None
    sun_read_counter: int | None = None
    beacon_id: int | None = None
    beacon_step: int | None = None
    beacon_pk: int | None = None
    fields_json: str | None = None
    """``json.dumps(fields)`` when it was built along (ingest stores it as it is)."""


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """The key-free part of a device frame item's work, done before the transaction.

    :func:`decode_frame_item` runs where the batch is parsed (outside the database
    transaction, so on SQLite in parallel with another process's writes): base64,
    the frame structure, the body and its JSON fields. Errors are kept, not raised,
    and raised later at the very point of the documented order of checks (a body
    error only after the MAC verified), so the reasons do not change.
    """

    raw: bytes | None = None
    frame: EventFrame | None = None
    error: ProtocolError | None = None
    """base64 or frame structure error (raised before the key lookup)."""
    body: Body | None = None
    fields: dict[str, Any] | None = None
    fields_json: str | None = None
    """``json.dumps(fields)``, serialised here too (out of the transaction)."""
    body_error: ProtocolError | None = None
    """body error (raised only once the MAC verified)."""


def decode_frame_item(text_b64: Callable[[], bytes]) -> DecodedFrame:
    """Decode one item's frame bytes (``text_b64`` returns them or raises ProtocolError)."""
    try:
        raw = text_b64()
    except ProtocolError as exc:
        return DecodedFrame(error=exc)
    try:
        frame = decode_frame(raw)
    except ProtocolError as exc:
        return DecodedFrame(raw=raw, error=exc)
    try:
        body = decode_body(frame.header.kind, frame.body)
    except ProtocolError as exc:
        return DecodedFrame(raw=raw, frame=frame, body_error=exc)
    try:
        fields = fields_of(body)
        fields_json = json.dumps(fields)
    except Exception:  # a bug of ours: met again, and answered, on that item alone
        return DecodedFrame(raw=raw, frame=frame, body=body)
    return DecodedFrame(raw=raw, frame=frame, body=body, fields=fields, fields_json=fields_json)


def _json_with(fields_json: str | None, name: str, value_json: str) -> str | None:
    """``json.dumps({**fields, name: value})`` from ``json.dumps(fields)``: the same text
    (a new key goes last, with json.dumps' own separators), without re-encoding it all."""
    if fields_json is None or len(fields_json) < 3 or not fields_json.endswith("}"):
        return None  # empty (or not an object): let the store encode it
    return f"{fields_json[:-1]}, {json.dumps(name)}: {value_json}}}"


@dataclass(frozen=True, slots=True)
class VerifiedAdvert:
    """A BLE advert whose MAC verifies under its signer's key."""

    advert: Advert
    key: str
    device_pk: int
    fields: dict[str, Any]


def _jsonable(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_of(value)  # nested values, e.g. a heartbeat's equipment items
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Field names per dataclass type: ``dataclasses.fields`` costs more than the conversion."""
_PLAIN = (int, str, bool, float, type(None))
"""Types kept as they are (exact types: an IntEnum goes through ``_jsonable``)."""


def fields_of(value: object) -> dict[str, Any]:
    """A decoded body/advert as JSON-ready fields (bytes as lowercase hex)."""
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            raise TypeError("fields_of expects a dataclass instance")
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
    out: dict[str, Any] = {}
    for name in names:
        v = getattr(value, name)
        out[name] = v if type(v) in _PLAIN else _jsonable(v)
    return out


@functools.lru_cache(maxsize=4096)
def _topic_device_id(topic: str) -> int | None:
    """The device id of a device topic, None if it is not one (topics repeat per device)."""
    try:
        device_id, _leaf = parse_device_topic(topic)
    except ProtocolError:
        return None
    return device_id


def authenticate_frame(
    raw: bytes, *, keys: KeyLookup, decoded: DecodedFrame | None = None
) -> AuthenticatedFrame:
    """Decode the structure, find the signing key by (device_id, key_id), verify the MAC.

    ``decoded``: the same bytes already decoded by :func:`decode_frame_item`.
    """
    if decoded is not None and decoded.error is not None:
        raise Rejected.from_protocol(decoded.error)
    if decoded is not None and decoded.frame is not None:
        frame = decoded.frame
    else:
        try:
            frame = decode_frame(raw)
        except ProtocolError as exc:
            raise Rejected.from_protocol(exc) from exc
    header = frame.header
    key = frame.idempotency_key
    ref = keys.device_key(DeviceKind.WEARABLE, header.device_id, header.key_id)
    if ref is None:
        raise Rejected(
            "unknown_device",
            f"no wearable {device_id_text(header.device_id)} with key_id {header.key_id}",
            key=key,
        )
    try:
        verify_frame(frame, ref.key)
    except SignatureError as exc:
        raise Rejected.from_protocol(exc, key=key) from exc
    return AuthenticatedFrame(frame=frame, device_pk=ref.device_pk, site_id=ref.site_id)


def device_time_of(frame: EventFrame) -> datetime:
    """The device's signed timestamp as timezone-aware UTC."""
    header = frame.header
    return datetime.fromtimestamp(header.time_s, UTC) + timedelta(milliseconds=header.time_ms)


def _clock_flags(
    frame: EventFrame, device_time: datetime, ctx: FrameContext, policy: VerifyPolicy
) -> list[str]:
    """Flag (never reject) doubtful clocks; refuse only a synced device time from the future.

    A wearable buffers for days, so device time long before receipt is normal. A
    device time after the server's own clock by more than ``max_future_skew_s``
    cannot be an honest event (or the clock is broken): ``clock_skew``. An SOS is
    never refused for its clock: it is accepted with the ``clock_skew`` flag.
    """
    flags: list[str] = []
    tolerance = timedelta(seconds=policy.clock_skew_tolerance_s)
    if not ctx.gateway_clock_synced:
        flags.append(FLAG_GATEWAY_CLOCK_UNSYNCED)
    elif ctx.received_at > ctx.server_now + tolerance:
        flags.append(FLAG_GATEWAY_CLOCK_SKEW)
    if frame.header.flags & FLAG_CLOCK_UNSYNCED:
        flags.append(FLAG_DEVICE_CLOCK_UNSYNCED)
        return flags
    if device_time > ctx.server_now + timedelta(seconds=policy.max_future_skew_s):
        if frame.header.kind == Kind.SOS:
            flags.append(FLAG_CLOCK_SKEW)
            return flags
        raise Rejected(
            "clock_skew",
            f"device time {device_time.isoformat()} is ahead of server time "
            f"{ctx.server_now.isoformat()} by more than {policy.max_future_skew_s} s",
            key=frame.idempotency_key,
        )
    if ctx.gateway_clock_synced and device_time > ctx.received_at + tolerance:
        flags.append(FLAG_CLOCK_SKEW)
    return flags


def verify_frame_body(
    auth: AuthenticatedFrame,
    *,
    keys: KeyLookup,
    ctx: FrameContext,
    policy: VerifyPolicy,
    decoded: DecodedFrame | None = None,
) -> VerifiedFrame:
    """Decode the body and verify what it claims (SUN, beacon MAC); flag what is doubtful.

    ``decoded``: the body (or its error) already decoded by :func:`decode_frame_item`.
    """
    frame = auth.frame
    key = frame.idempotency_key
    fields: dict[str, Any] | None = None
    fields_json: str | None = None
    if decoded is not None and decoded.frame is frame and decoded.body_error is not None:
        raise Rejected.from_protocol(decoded.body_error, key=key)
    if decoded is not None and decoded.frame is frame and decoded.body is not None:
        body, fields, fields_json = decoded.body, decoded.fields, decoded.fields_json
    else:
        try:
            body = decode_body(frame.header.kind, frame.body)
        except ProtocolError as exc:
            raise Rejected.from_protocol(exc, key=key) from exc
    device_time = device_time_of(frame)
    flags = _clock_flags(frame, device_time, ctx, policy)
    if _topic_device_id(ctx.topic) != frame.header.device_id:
        flags.append(FLAG_TOPIC_MISMATCH)
    if None not in (auth.site_id, ctx.gateway_site_id) and auth.site_id != ctx.gateway_site_id:
        flags.append(FLAG_FOREIGN_SITE)
    base = VerifiedFrame(
        frame=frame,
        device_pk=auth.device_pk,
        body=body,
        device_time=device_time,
        assurance=Assurance.MEDIUM,
        flags=tuple(flags),
        fields=fields if fields is not None else fields_of(body),
        fields_json=fields_json if fields is not None else None,
    )
    if isinstance(body, NfcScan):
        return _verify_nfc_scan(base, body, keys=keys, policy=policy)
    if isinstance(body, BleVisit):
        return _verify_ble_visit(base, body, keys=keys)
    return base


def _verify_nfc_scan(
    base: VerifiedFrame, scan: NfcScan, *, keys: KeyLookup, policy: VerifyPolicy
) -> VerifiedFrame:
    key = base.frame.idempotency_key
    tag = keys.nfc_tag(scan.uid)
    if tag is None:
        raise Rejected("unknown_tag", f"no NFC tag with uid {scan.uid.hex()}", key=key)
    if scan.tag_type != TAG_NTAG424_SUN:
        if tag.tag_type == TagType.NTAG424:
            # A UID-only read of a tag we know speaks SUN: a UID clone, or a bad read.
            raise Rejected(
                "bad_sun_mac",
                f"NTAG 424 DNA tag {scan.uid.hex()} was read without a SUN message",
                key=key,
            )
        return dataclasses.replace(
            base,
            assurance=Assurance.LOW,
            flags=(*base.flags, FLAG_LOW_ASSURANCE_TAG),
            checkpoint_id=tag.checkpoint_id,
            nfc_tag_id=tag.tag_pk,
        )
    if tag.tag_type != TagType.NTAG424 or tag.meta_read_key is None or tag.file_read_key is None:
        raise Rejected(
            "unknown_tag", f"tag {scan.uid.hex()} is not registered as NTAG 424 DNA", key=key
        )
    assert scan.picc_enc is not None and scan.sdmmac is not None  # NfcScan validates tag_type 1
    try:
        picc = verify_sun(
            meta_read_key=tag.meta_read_key,
            file_read_key=tag.file_read_key,
            picc_enc=scan.picc_enc,
            sdmmac=scan.sdmmac,
        )
    except ProtocolError as exc:
        # A wrong meta key decrypts to garbage (MalformedError): same meaning as a bad MAC.
        raise Rejected("bad_sun_mac", f"SUN of tag {scan.uid.hex()}: {exc}", key=key) from exc
    if picc.uid != scan.uid:
        raise Rejected(
            "bad_sun_mac",
            f"PICCData uid {picc.uid.hex()} differs from the anticollision uid {scan.uid.hex()}",
            key=key,
        )
    flags = list(base.flags)
    last = tag.last_read_counter
    if last is not None:
        if picc.read_counter > last + policy.sun_counter_jump_flag:
            flags.append(FLAG_COUNTER_JUMP)
        elif picc.read_counter < last:
            flags.append(FLAG_COUNTER_OUT_OF_ORDER)
    return dataclasses.replace(
        base,
        assurance=Assurance.HIGH,
        flags=tuple(flags),
        fields={**base.fields, "sun_read_counter": picc.read_counter},
        fields_json=_json_with(base.fields_json, "sun_read_counter", str(picc.read_counter)),
        checkpoint_id=tag.checkpoint_id,
        nfc_tag_id=tag.tag_pk,
        sun_read_counter=picc.read_counter,
    )


def _verify_ble_visit(base: VerifiedFrame, visit: BleVisit, *, keys: KeyLookup) -> VerifiedFrame:
    key = base.frame.idempotency_key
    try:
        advert = decode_advert_payload(visit.adv)
    except ProtocolError as exc:
        raise Rejected(exc.reason, f"beacon payload in BLE_VISIT: {exc}", key=key) from exc
    if not isinstance(advert, BeaconAdvert):
        raise Rejected("malformed", "BLE_VISIT carries a non-beacon advert", key=key)
    ref = keys.device_key(DeviceKind.BEACON, advert.beacon_id, advert.key_id)
    if ref is None:
        raise Rejected(
            "unknown_device",
            f"no beacon {advert.beacon_id:08x} with key_id {advert.key_id}",
            key=key,
        )
    try:
        verify_advert(visit.company_id, visit.adv, ref.key)
    except SignatureError as exc:
        raise Rejected("bad_mac", f"beacon advert in BLE_VISIT: {exc}", key=key) from exc
    beacon_fields = fields_of(advert)
    return dataclasses.replace(
        base,
        fields={**base.fields, "beacon": beacon_fields},
        fields_json=_json_with(base.fields_json, "beacon", json.dumps(beacon_fields)),
        checkpoint_id=keys.beacon_checkpoint(advert.beacon_id),
        beacon_id=advert.beacon_id,
        beacon_step=advert.step,
        beacon_pk=ref.device_pk,
    )


_ADVERT_SIGNERS: dict[type, tuple[DeviceKind, str]] = {
    BeaconAdvert: (DeviceKind.BEACON, "beacon_id"),
    EquipmentAdvert: (DeviceKind.EQUIPMENT_TAG, "tag_id"),
    PresenceAdvert: (DeviceKind.PRESENCE, "device_id"),
}


def verify_advert_item(company_id: int, payload: bytes, *, keys: KeyLookup) -> VerifiedAdvert:
    """Decode a gateway-heard advert and verify its MAC under the signer's key."""
    try:
        advert = decode_advert_payload(payload)
    except ProtocolError as exc:
        raise Rejected.from_protocol(exc) from exc
    key = advert_signer_key(advert)
    kind, id_field = _ADVERT_SIGNERS[type(advert)]
    signer_id: int = getattr(advert, id_field)
    ref = keys.device_key(kind, signer_id, advert.key_id)
    if ref is None:
        raise Rejected(
            "unknown_device",
            f"no {kind.value} {signer_id:08x} with key_id {advert.key_id}",
            key=key,
        )
    try:
        verify_advert(company_id, payload, ref.key)
    except SignatureError as exc:
        raise Rejected.from_protocol(exc, key=key) from exc
    return VerifiedAdvert(advert=advert, key=key, device_pk=ref.device_pk, fields=fields_of(advert))


# ---------------------------------------------------------------- beacon clocks


@dataclass(frozen=True, slots=True)
class BeaconClockState:
    """A beacon's estimated clock (times in ms since the epoch; see ``models.BeaconClock``)."""

    offset_ms: int
    """Beacon clock minus reference time, as estimated at ``estimated_at_ms``."""
    estimated_at_ms: int
    highest_step: int
    highest_step_at_ms: int
    samples: int
    pending_offset_ms: int | None = None
    pending_count: int = 0


@dataclass(frozen=True, slots=True)
class BeaconCheck:
    """The outcome of one advert: flags for the event and the beacon's clock after it."""

    flags: tuple[str, ...]
    clock: BeaconClockState
    in_window: bool


def observed_offset_ms(step: int, reference_ms: int, step_s: int) -> int:
    """The offset one advert implies: the middle of its step minus the reference time."""
    step_ms = step_s * 1000
    return step * step_ms + step_ms // 2 - reference_ms


def track_beacon_step(
    clock: BeaconClockState | None,
    *,
    step: int,
    reference_ms: int,
    policy: VerifyPolicy,
    key: str | None = None,
) -> BeaconCheck:
    """Check one MAC-verified beacon step against the beacon's clock; the clock after it.

    ``reference_ms`` is when the advert was heard by a synced clock (the wearable's
    signed device time for a BLE visit, the gateway's receive time for an advert).

    - The first advert of a beacon anchors its clock.
    - An older step than one already accepted, heard more than a step later than
      that one, is a replayed advert: :class:`Rejected` ``replayed_counter``.
    - The expected offset is the estimate; the window is ``beacon_window_steps``
      steps, widened by ``beacon_drift_ppm`` of the time since the estimate. Inside
      it, the advert is accepted and moves the estimate half way to what it implies
      (integer ms: ``offset += (observed - offset) // 2``), unless it is older than the
      estimate (a late upload says nothing about the clock now).
    - Outside it, the advert is accepted and flagged ``beacon_step_skew`` (a clock
      that jumped, a recorded advert, a clone with its own clock); it moves nothing,
      so a clone cannot drag the estimate, unless ``beacon_reanchor_count`` such
      adverts in a row agree with each other: then the clock is re-anchored on the
      last one (flag ``beacon_clock_reset`` too).
    """
    step_ms = policy.beacon_step_s * 1000
    observed = observed_offset_ms(step, reference_ms, policy.beacon_step_s)
    if clock is None:
        anchored = BeaconClockState(observed, reference_ms, step, reference_ms, 1)
        return BeaconCheck((), anchored, True)
    if step < clock.highest_step and reference_ms >= clock.highest_step_at_ms + step_ms:
        raise Rejected(
            "replayed_counter",
            f"beacon step {step} heard at {reference_ms} ms, after step {clock.highest_step} "
            f"was heard at {clock.highest_step_at_ms} ms: an old advert replayed",
            key=key,
        )
    elapsed_ms = abs(reference_ms - clock.estimated_at_ms)
    tolerance_ms = (
        policy.beacon_window_steps * step_ms + elapsed_ms * policy.beacon_drift_ppm // 1_000_000
    )
    deviation = observed - clock.offset_ms
    if abs(deviation) <= tolerance_ms:
        offset, estimated_at = clock.offset_ms, clock.estimated_at_ms
        if reference_ms >= clock.estimated_at_ms:
            offset, estimated_at = clock.offset_ms + deviation // 2, reference_ms
        highest = (
            (step, reference_ms)
            if step > clock.highest_step
            else (clock.highest_step, clock.highest_step_at_ms)
        )
        updated = BeaconClockState(offset, estimated_at, *highest, clock.samples + 1)
        return BeaconCheck((), updated, True)
    window_ms = policy.beacon_window_steps * step_ms
    pending = clock.pending_offset_ms
    count = (
        clock.pending_count + 1
        if pending is not None and abs(observed - pending) <= window_ms
        else 1
    )
    if count >= policy.beacon_reanchor_count:
        anchored = BeaconClockState(observed, reference_ms, step, reference_ms, 1)
        return BeaconCheck((FLAG_BEACON_STEP_SKEW, FLAG_BEACON_CLOCK_RESET), anchored, False)
    waiting = dataclasses.replace(clock, pending_offset_ms=observed, pending_count=count)
    return BeaconCheck((FLAG_BEACON_STEP_SKEW,), waiting, False)
