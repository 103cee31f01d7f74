"""Per-tag dedup, RSSI smoothing and away/back detection: pure, clock injected.

A :class:`Sighting` is the package's own frozen copy of one advert bleak reported
(the scanner callback builds it and does nothing else). :class:`TagTracker` turns a
stream of sightings into queue entries (:mod:`edge_agent.inbound`):

- **device-signed adverts** (checkpoint beacon, equipment tag, wearable presence;
  manufacturer data under the configured company id) are forwarded AS RECEIVED: the
  exact payload bytes, the company id, the RSSI and receive time of that advert.
  The edge holds no BLE keys and verifies nothing; the cloud does.
- **off-the-shelf tags** (iBeacon, Eddystone-UID) become ``ble_tag_seen``
  observations with the smoothed RSSI, and Eddystone-TLM health becomes
  ``ble_tag_health``: these carry no signature, so they are gateway observations.
- a tag heard 10 times a second gives ONE record per ``heartbeat_interval_s``
  (the first sighting of each interval); its RSSI feeds an exponentially weighted
  moving average (``rssi_alpha`` weight of the newest sample).
- a tag not heard for ``away_after_s`` gives one ``ble_tag_away`` observation;
  the next sighting gives ``ble_tag_back`` (and restarts its average and interval).

Every observation carries ``"source": "gateway"``: the gateway derived it; only its
API key vouches for it. A bad advert (our company id or an iBeacon / Eddystone
prefix, but a body that does not decode) is counted by reason and dead-lettered
with that reason -- at most once per tag address, reason and interval, so one
broken tag cannot fill the disk at 10 adverts a second.
"""

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from edge_agent.ble.decoders import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    EddystoneTlm,
    EddystoneUid,
    IBeacon,
    decode_eddystone,
    decode_ibeacon,
    is_ibeacon,
)
from edge_agent.inbound import GatewayObservation, Inbound, ReceivedAdvert, Rejected
from patrol_protocol.adverts import (
    BeaconAdvert,
    EquipmentAdvert,
    decode_advert_payload,
)
from patrol_protocol.errors import ProtocolError

MAX_TRACKED_TAGS: Final = 2048
"""A site has tens of tags; phones with rotating addresses could grow the table without
bound, so beyond this the longest-silent tag is forgotten (counted as ``tags_forgotten``)."""
MAX_DEAD_LETTER_KEYS: Final = 4096
"""Bound on the per-(address, reason) dead-letter rate limiter; cleared each time it fills."""
REASON_TOO_MANY_TAGS: Final = "too_many_tags"
OBSERVATION_SOURCE: Final = "gateway"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One advert as bleak reported it, copied into immutable values at the boundary."""

    address: str
    rssi_dbm: int
    received_at_ms: int
    """Gateway wall clock (UTC ms): what the cloud is told."""
    monotonic_s: float
    """Monotonic clock: what dedup and away timing use (wall clocks jump on NTP sync)."""
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    service_data: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Settings of the tracker (built from EdgeSettings by the scanner)."""

    company_id: int
    heartbeat_interval_s: float
    away_after_s: float
    rssi_alpha: float
    max_tags: int = MAX_TRACKED_TAGS


@dataclass(slots=True)
class TagState:
    """What the tracker remembers of one tag."""

    tag: str
    kind: str
    address: str
    last_heard_s: float
    last_heard_ms: int
    last_emit_s: float
    rssi_avg_dbm: float
    heard_in_interval: int = 0
    away: bool = False
    away_since_ms: int = 0
    last_health_emit_s: float | None = None


@dataclass(slots=True)
class TrackerCounters:
    """What happened to every sighting, for status and tests."""

    sightings: int = 0
    forwarded: int = 0
    suppressed: int = 0
    ignored: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    tags_forgotten: int = 0


def round_dbm(value: float) -> int:
    """Round half away from zero (Python's round() is banker's rounding)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _observation(body: dict[str, object], received_at_ms: int) -> GatewayObservation:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return GatewayObservation(body_json=raw, received_at_ms=received_at_ms)


class TagTracker:
    """Turns sightings into queue entries; single-threaded (the scanner's worker owns it)."""

    def __init__(self, config: TrackerConfig) -> None:
        """No tags yet; ``config`` fixes the intervals and the signed-advert company id."""
        self.config = config
        self.tags: dict[str, TagState] = {}
        self.counters = TrackerCounters()
        self._address_tag: dict[str, str] = {}
        """Eddystone-TLM carries no id: it belongs to the UID last heard from that address."""
        self._dead_lettered: dict[tuple[str, str], float] = {}

    # --- sightings ---------------------------------------------------------------

    def process(self, sighting: Sighting) -> list[Inbound]:
        """Entries for one sighting (often none: deduplicated)."""
        self.counters.sightings += 1
        out: list[Inbound] = []
        recognised = False
        for company_id, data in sighting.manufacturer_data:
            if company_id == self.config.company_id:
                recognised = True
                self._signed(sighting, company_id, data, out)
            elif company_id == APPLE_COMPANY_ID and is_ibeacon(data):
                recognised = True
                self._ibeacon(sighting, data, out)
        for service_uuid, data in sighting.service_data:
            if service_uuid.lower() == EDDYSTONE_SERVICE_UUID:
                recognised = True
                self._eddystone(sighting, data, out)
        if not recognised:
            self.counters.ignored += 1
        return out

    def _bad(
        self, sighting: Sighting, reason: str, detail: str, raw: bytes, out: list[Inbound]
    ) -> None:
        self.counters.bad[reason] += 1
        key = (sighting.address, reason)
        last = self._dead_lettered.get(key)
        if last is not None and sighting.monotonic_s - last < self.config.heartbeat_interval_s:
            return
        if len(self._dead_lettered) >= MAX_DEAD_LETTER_KEYS:
            self._dead_lettered.clear()
        self._dead_lettered[key] = sighting.monotonic_s
        out.append(
            Rejected(
                reason=reason,
                raw=raw,
                topic=f"ble/{sighting.address}",
                received_at_ms=sighting.received_at_ms,
                detail=detail,
            )
        )

    def _signed(self, sighting: Sighting, company_id: int, data: bytes, out: list[Inbound]) -> None:
        raw = company_id.to_bytes(2, "little") + data
        try:
            advert = decode_advert_payload(data)
        except ProtocolError as exc:
            self._bad(sighting, exc.reason, f"signed advert: {exc}", raw, out)
            return
        if isinstance(advert, BeaconAdvert):
            tag, kind = f"beacon:{advert.beacon_id:08x}", "beacon"
        elif isinstance(advert, EquipmentAdvert):
            tag, kind = f"equip:{advert.tag_id:08x}", "equipment"
        else:
            tag, kind = f"presence:{advert.device_id:08x}", "presence"
        if self._heard(sighting, tag, kind, out):
            out.append(ReceivedAdvert(company_id, data, sighting.rssi_dbm, sighting.received_at_ms))

    def _ibeacon(self, sighting: Sighting, data: bytes, out: list[Inbound]) -> None:
        try:
            beacon = decode_ibeacon(data)
        except ProtocolError as exc:
            raw = APPLE_COMPANY_ID.to_bytes(2, "little") + data
            self._bad(sighting, exc.reason, f"iBeacon: {exc}", raw, out)
            return
        heard = self._heard(sighting, beacon.tag, "ibeacon", out)
        if heard:
            out.append(self._seen(sighting, beacon, heard))

    def _eddystone(self, sighting: Sighting, data: bytes, out: list[Inbound]) -> None:
        try:
            frame = decode_eddystone(data)
        except ProtocolError as exc:
            raw = (0xFEAA).to_bytes(2, "little") + data
            self._bad(sighting, exc.reason, f"Eddystone: {exc}", raw, out)
            return
        if isinstance(frame, EddystoneUid):
            self._address_tag[sighting.address] = frame.tag
            if len(self._address_tag) > self.config.max_tags:
                self._address_tag.pop(next(iter(self._address_tag)))
            heard = self._heard(sighting, frame.tag, "eddystone_uid", out)
            if heard:
                out.append(self._seen(sighting, frame, heard))
        else:
            self._health(sighting, frame, out)

    def _seen(
        self, sighting: Sighting, ident: IBeacon | EddystoneUid, heard: int
    ) -> GatewayObservation:
        state = self.tags[ident.tag]
        body: dict[str, object] = {
            "kind": "ble_tag_seen",
            "source": OBSERVATION_SOURCE,
            "tag": ident.tag,
            "format": state.kind,
            "address": sighting.address,
            "rssi_dbm": round_dbm(state.rssi_avg_dbm),
            "tx_power_dbm": ident.tx_power_dbm,
            "heard": heard,
        }
        return _observation(body, sighting.received_at_ms)

    def _health(self, sighting: Sighting, tlm: EddystoneTlm, out: list[Inbound]) -> None:
        tag = self._address_tag.get(sighting.address, f"eddystone-addr:{sighting.address}")
        state = self.tags.get(tag)
        now = sighting.monotonic_s
        last = None if state is None else state.last_health_emit_s
        if last is not None and now - last < self.config.heartbeat_interval_s:
            self.counters.suppressed += 1
            return
        if state is not None:
            state.last_health_emit_s = now
        body: dict[str, object] = {
            "kind": "ble_tag_health",
            "source": OBSERVATION_SOURCE,
            "tag": tag,
            "format": "eddystone_tlm",
            "address": sighting.address,
            "battery_mv": tlm.battery_mv,
            "temperature_c": tlm.temperature_c,
            "adv_count": tlm.adv_count,
            "since_boot_ds": tlm.since_boot_ds,
        }
        self.counters.forwarded += 1
        out.append(_observation(body, sighting.received_at_ms))

    def _heard(self, sighting: Sighting, tag: str, kind: str, out: list[Inbound]) -> int:
        """Update the tag's state; 0 when suppressed, else the sightings this record stands
        for (this one and those suppressed since the previous record)."""
        now = sighting.monotonic_s
        state = self.tags.get(tag)
        if state is None:
            if len(self.tags) >= self.config.max_tags:
                self._forget_one()
            state = TagState(
                tag=tag,
                kind=kind,
                address=sighting.address,
                last_heard_s=now,
                last_heard_ms=sighting.received_at_ms,
                last_emit_s=now,
                rssi_avg_dbm=float(sighting.rssi_dbm),
            )
            self.tags[tag] = state
            self.counters.forwarded += 1
            return 1
        if state.away:
            out.append(
                _observation(
                    {
                        "kind": "ble_tag_back",
                        "source": OBSERVATION_SOURCE,
                        "tag": tag,
                        "format": kind,
                        "address": sighting.address,
                        "away_since_ms": state.away_since_ms,
                        "rssi_dbm": sighting.rssi_dbm,
                    },
                    sighting.received_at_ms,
                )
            )
            state.away = False
            state.rssi_avg_dbm = float(sighting.rssi_dbm)
            state.heard_in_interval = 0
            state.last_emit_s = now - self.config.heartbeat_interval_s
        else:
            alpha = self.config.rssi_alpha
            state.rssi_avg_dbm = alpha * sighting.rssi_dbm + (1 - alpha) * state.rssi_avg_dbm
        state.address = sighting.address
        state.last_heard_s = now
        state.last_heard_ms = sighting.received_at_ms
        state.heard_in_interval += 1
        if now - state.last_emit_s >= self.config.heartbeat_interval_s:
            heard = state.heard_in_interval
            state.heard_in_interval = 0
            state.last_emit_s = now
            self.counters.forwarded += 1
            return heard
        self.counters.suppressed += 1
        return 0

    def _forget_one(self) -> None:
        oldest = min(self.tags.values(), key=lambda s: s.last_heard_s)
        del self.tags[oldest.tag]
        self.counters.tags_forgotten += 1

    # --- time --------------------------------------------------------------------

    def tick(self, monotonic_s: float, now_ms: int) -> list[Inbound]:
        """``ble_tag_away`` for every tag silent for ``away_after_s`` (once per absence)."""
        out: list[Inbound] = []
        for state in self.tags.values():
            if state.away or monotonic_s - state.last_heard_s < self.config.away_after_s:
                continue
            state.away = True
            state.away_since_ms = state.last_heard_ms
            out.append(
                _observation(
                    {
                        "kind": "ble_tag_away",
                        "source": OBSERVATION_SOURCE,
                        "tag": state.tag,
                        "format": state.kind,
                        "address": state.address,
                        "last_heard_ms": state.last_heard_ms,
                        "away_after_s": self.config.away_after_s,
                        "rssi_dbm": round_dbm(state.rssi_avg_dbm),
                    },
                    now_ms,
                )
            )
        return out

    def next_deadline_s(self) -> float | None:
        """Monotonic time at which the next tag would go away (None with no tag present)."""
        present = [s.last_heard_s for s in self.tags.values() if not s.away]
        return min(present) + self.config.away_after_s if present else None
