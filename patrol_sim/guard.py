"""One simulated guard: a wearable running the firmware's own code, walking rounds.

The guard's thread owns its wearable, the beacons of its post and the equipment
tags it carries, so no firmware object is ever touched by two threads. The walk
is a schedule of actions on the host's monotonic clock: a tag enters and leaves
the NFC field, the guard comes near a beacon and moves on.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patrol_sim.clock import RealClock
from patrol_sim.firmware import load_firmware
from patrol_sim.site import Checkpoint, CheckpointKind, Guard, Post

TAP_HOLD_S = 1.2  # how long a tag stays in the reader's field
BEACON_DWELL_S = 4.0  # time spent near a beacon; the wearable's visit threshold is lower
VISIT_DWELL_S = 3  # the wearable's configured minimum dwell for a BLE visit
NEAR_RSSI_DBM = -58  # close to a beacon or carried equipment
BEACON_ADVERT_INTERVAL_S = 0.25
EQUIPMENT_ADVERT_INTERVAL_S = 1.0
LOOP_INTERVAL_S = 0.02
ROUND_START_OFFSET_S = 2.0  # guards leave a moment after the round is due


def round_walk_s(post: Post) -> float:
    """How long one round of `post` takes to walk, from the moment it is due."""
    return ROUND_START_OFFSET_S + sum(
        cp.walk_from_previous_s
        + (BEACON_DWELL_S if cp.kind is CheckpointKind.BEACON else TAP_HOLD_S)
        for cp in post.checkpoints
    )


@dataclass(order=True)
class _Action:
    due: float
    order: int
    run: Callable[[], None] = field(compare=False)


@dataclass
class GuardStats:
    taps: int = 0
    beacon_visits_walked: int = 0
    rounds_walked: int = 0


class GuardRunner:
    """Runs one guard's wearable in its own thread until the walk ends and all is acked."""

    def __init__(
        self,
        *,
        guard: Guard,
        post: Post,
        key_id: int,
        mqtt_port: int,
        flash_dir: Path,
        shift_start: float,
        round_interval_s: float,
        rounds: int,
        heartbeat_interval_s: int,
    ) -> None:
        load_firmware()
        from patrol.beacon import Beacon, BeaconConfig
        from patrol.equipment import EquipmentConfig, EquipmentTag
        from patrol.hal.sim import SimHal
        from patrol.wearable import Wearable, WearableConfig

        self.guard = guard
        self.stats = GuardStats()
        self._stop = threading.Event()
        self._walk_done = threading.Event()
        self.hal = self._hal(SimHal, flash_dir / "wearable")
        self.wearable: Any = Wearable(
            self.hal,
            WearableConfig(
                device_id=guard.device_id,
                key=guard.key,
                key_id=key_id,
                mqtt_host="127.0.0.1",
                mqtt_port=mqtt_port,
                heartbeat_interval_s=heartbeat_interval_s,
                visit_dwell_s=VISIT_DWELL_S,
            ),
        )
        self._beacons: dict[str, Any] = {
            cp.name: Beacon(
                self._hal(SimHal, flash_dir / f"beacon-{cp.beacon_id:08x}"),
                BeaconConfig(cp.beacon_id, cp.beacon_key, key_id),
            )
            for cp in post.checkpoints
            if cp.kind is CheckpointKind.BEACON
        }
        self._equipment: list[Any] = []
        for item in guard.equipment:
            hal = self._hal(SimHal, flash_dir / f"equipment-{item.tag_id:08x}")
            hal.battery.set(item.battery_pct, 3700, False)
            config = EquipmentConfig(item.tag_id, item.key, key_id)
            self._equipment.append(EquipmentTag(hal, config))
        self._near: str | None = None
        self._actions: list[_Action] = []
        self._order = itertools.count()
        self._schedule(post, shift_start, round_interval_s, rounds)
        self._thread = threading.Thread(target=self._run, name=f"guard-{guard.name}", daemon=True)

    @staticmethod
    def _hal(sim_hal: Any, flash_dir: Path) -> Any:
        hal = sim_hal(str(flash_dir))
        hal.clock = RealClock()
        return hal

    # --- the walk ------------------------------------------------------------------

    def _at(self, due: float, run: Callable[[], None]) -> None:
        heapq.heappush(self._actions, _Action(due, next(self._order), run))

    def _schedule(self, post: Post, start: float, interval_s: float, rounds: int) -> None:
        last = start
        for index in range(rounds):
            if not self.guard.walks(index):
                continue
            t = start + index * interval_s + ROUND_START_OFFSET_S
            self._at(t, self._round_started)
            for cp in post.checkpoints:
                t += cp.walk_from_previous_s
                if (index, cp.name) in self.guard.skips:
                    continue
                t = self._visit(cp, t)
            last = max(last, t)
        self._at(last + 0.5, self._walk_done.set)

    def _visit(self, cp: Checkpoint, t: float) -> float:
        nfc = self.hal.nfc
        if cp.kind is CheckpointKind.NTAG424:
            assert cp.tag is not None
            tag = cp.tag
            self._at(t, lambda: self._tap(lambda: nfc.present_tag(tag.uid, tag.read_ndef)))
            self._at(t + TAP_HOLD_S, nfc.remove_tag)
            return t + TAP_HOLD_S
        if cp.kind is CheckpointKind.NTAG21X:
            uid = cp.uid
            self._at(t, lambda: self._tap(lambda: nfc.present_tag(uid, b"", "ntag21x")))
            self._at(t + TAP_HOLD_S, nfc.remove_tag)
            return t + TAP_HOLD_S
        name = cp.name
        self._at(t, lambda: self._approach(name))
        self._at(t + BEACON_DWELL_S, lambda: self._approach(None))
        return t + BEACON_DWELL_S

    def _round_started(self) -> None:
        self.stats.rounds_walked += 1

    def _tap(self, present: Callable[[], None]) -> None:
        present()
        self.stats.taps += 1

    def _approach(self, beacon: str | None) -> None:
        if beacon is not None:
            self.stats.beacon_visits_walked += 1
        self._near = beacon

    # --- the thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def walk_done(self) -> bool:
        return self._walk_done.is_set()

    def drained(self) -> bool:
        """Every frame the wearable made has been acknowledged by the edge."""
        return bool(self.wearable.queue_depth() == 0)

    def _run(self) -> None:
        next_beacon = next_equipment = 0.0
        radio = self.hal.radio
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while self._actions and self._actions[0].due <= now:
                    heapq.heappop(self._actions).run()
                if self._near is not None and now >= next_beacon:
                    advert = self._beacons[self._near].step()
                    radio.feed_advert(b"\xb0" * 6, NEAR_RSSI_DBM, advert)
                    next_beacon = now + BEACON_ADVERT_INTERVAL_S
                if now >= next_equipment:
                    for tag in self._equipment:
                        radio.feed_advert(b"\xe0" * 6, NEAR_RSSI_DBM + 8, tag.step())
                    next_equipment = now + EQUIPMENT_ADVERT_INTERVAL_S
                self.wearable.step()
                time.sleep(LOOP_INTERVAL_S)
        finally:
            self.wearable.shutdown()
