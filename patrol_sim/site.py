"""The small simulated site the demo runs: posts, checkpoints, guards and equipment.

Pure data with freshly generated keys, so the demo, the end-to-end tests and a
newcomer reading the code all see the same site. Every key is random per run and
lives only in memory and in the cloud's encrypted key columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

from patrol_sim.ntag424 import SimNtag424


class CheckpointKind(StrEnum):
    NTAG424 = "ntag424"
    NTAG21X = "ntag21x"
    BEACON = "beacon"


@dataclass
class Checkpoint:
    name: str
    kind: CheckpointKind
    walk_from_previous_s: float
    tag: SimNtag424 | None = None  # NTAG 424 DNA checkpoints
    uid: bytes = b""  # NTAG21x checkpoints (UID only)
    beacon_id: int = 0  # BLE beacon checkpoints
    beacon_key: bytes = b""


@dataclass
class EquipmentTag:
    tag_id: int
    item: str  # "radio", "flashlight"
    key: bytes
    battery_pct: int


@dataclass
class Guard:
    name: str
    device_id: int
    key: bytes
    post: str
    equipment: list[EquipmentTag] = field(default_factory=list)
    rounds: tuple[int, ...] | None = None  # rounds this guard walks; None = every round
    skips: set[tuple[int, str]] = field(default_factory=set)  # (round, checkpoint) not walked

    def walks(self, round_index: int) -> bool:
        return self.rounds is None or round_index in self.rounds


@dataclass
class Post:
    name: str
    checkpoints: list[Checkpoint]


@dataclass
class Site:
    name: str
    timezone: str
    posts: list[Post]
    guards: list[Guard]
    key_id: int = 1

    def post(self, name: str) -> Post:
        return next(p for p in self.posts if p.name == name)


def _ntag424(name: str, uid_hex: str, walk_s: float) -> Checkpoint:
    tag = SimNtag424(
        uid=bytes.fromhex(uid_hex), meta_read_key=os.urandom(16), file_read_key=os.urandom(16)
    )
    return Checkpoint(name, CheckpointKind.NTAG424, walk_s, tag=tag)


def _beacon(name: str, beacon_id: int, walk_s: float) -> Checkpoint:
    return Checkpoint(
        name, CheckpointKind.BEACON, walk_s, beacon_id=beacon_id, beacon_key=os.urandom(16)
    )


def demo_site() -> Site:
    """Two posts, eight checkpoints, three guards, six equipment tags."""
    gate = Post(
        "Main gate",
        [
            _ntag424("Gate house", "04a1b2c3d4e501", 2.0),
            _ntag424("Barrier", "04a1b2c3d4e502", 3.0),
            Checkpoint(
                "Car park", CheckpointKind.NTAG21X, 3.0, uid=bytes.fromhex("04c0ffee123401")
            ),
            _beacon("Fence east", 0x000005B1, 3.0),
        ],
    )
    warehouse = Post(
        "Warehouse",
        [
            _ntag424("Loading dock", "04a1b2c3d4e503", 2.0),
            _beacon("Cold store", 0x000005B2, 3.0),
            _ntag424("Server room", "04a1b2c3d4e504", 3.0),
            _beacon("Roof access", 0x000005B3, 3.0),
        ],
    )

    def kit(first_id: int) -> list[EquipmentTag]:
        return [
            EquipmentTag(first_id, "radio", os.urandom(16), 87),
            EquipmentTag(first_id + 1, "flashlight", os.urandom(16), 64),
        ]

    guards = [
        Guard("Li Wei", 0x0000A001, os.urandom(32), gate.name, kit(0x00E00001)),
        # The two warehouse guards alternate rounds; the relief guard skips the
        # roof in the second round, so the summary has a real deviation to show.
        Guard(
            "Zhang Min", 0x0000A002, os.urandom(32), warehouse.name, kit(0x00E00003), (0, 2, 4)
        ),
        Guard(
            "Wang Fang",
            0x0000A003,
            os.urandom(32),
            warehouse.name,
            kit(0x00E00005),
            rounds=(1, 3, 5),
            skips={(1, "Roof access")},
        ),
    ]
    return Site("Riverside Logistics", "Asia/Shanghai", [gate, warehouse], guards)
