"""Equipment tag (radio, flashlight): advertises id, battery (% and mV), flags and a counter.

Flags: on charger, moving, low battery, button pressed and tamper switch opened
since the previous advert (both latched by the HAL, so a short press between two
adverts is not missed).

The counter increments with every new advert and must never repeat (the cloud
rejects a counter that does not advance as a replay), so it is persisted in
flash in reserved blocks: the file holds a high-water mark, rewritten once per
``_RESERVE_BLOCK`` adverts; after a reboot counting resumes above it.
"""

from patrol.adverts import (
    EQUIPMENT_BUTTON,
    EQUIPMENT_LOW_BATTERY,
    EQUIPMENT_MOVING,
    EQUIPMENT_ON_CHARGER,
    EQUIPMENT_TAMPER,
    build_advertisement,
    encode_equipment_payload,
)
from patrol.compat import const, ticks_add, ticks_diff
from patrol.limits import DEV_COMPANY_ID

_RESERVE_BLOCK = const(256)  # flash writes per 256 adverts; a reboot skips at most this many
_LOW_BATTERY_PCT = const(20)
_MAX_COUNTER = const(0xFFFFFFFF)


class EquipmentConfig:
    """One tag's identity and key (16 bytes)."""

    def __init__(self, tag_id, key, key_id=1, company_id=DEV_COMPANY_ID, advert_interval_ms=1000):
        if len(key) != 16:
            raise ValueError("equipment key must be 16 bytes")
        self.tag_id = tag_id
        self.key = bytes(key)
        self.key_id = key_id
        self.company_id = company_id
        self.advert_interval_ms = advert_interval_ms


class EquipmentTag:
    """Refreshes the advert every ``advert_interval_ms`` with a new counter value."""

    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self._path = hal.flash_dir + "/equipment_counter"
        self._reserved = self._load_reserved()
        self.counter = self._reserved  # resume above anything a previous boot may have sent
        self.advert = None
        self._next_ms = hal.clock.ticks_ms()

    def _load_reserved(self):
        try:
            with open(self._path) as f:
                return int(f.read().strip() or "0")
        except (OSError, ValueError):
            return 0

    def _reserve(self, upto):
        with open(self._path + ".tmp", "w") as f:
            f.write(str(upto))
        import os

        os.rename(self._path + ".tmp", self._path)
        self._reserved = upto

    def step(self):
        """Advertise a fresh payload when due; returns the current advert bytes."""
        now = self.hal.clock.ticks_ms()
        if self.advert is not None and ticks_diff(now, self._next_ms) < 0:
            return self.advert
        self._next_ms = ticks_add(now, self.cfg.advert_interval_ms)
        if self.counter >= _MAX_COUNTER:
            return self.advert  # counter exhausted: stop rather than repeat a value
        self.counter += 1
        if self.counter > self._reserved:
            self._reserve(min(self.counter + _RESERVE_BLOCK, _MAX_COUNTER))
        hal = self.hal
        battery_pct, battery_mv, charging = hal.battery.read()
        flags = 0
        if charging:
            flags |= EQUIPMENT_ON_CHARGER
        if hal.accel.motion():
            flags |= EQUIPMENT_MOVING
        if battery_pct < _LOW_BATTERY_PCT:
            flags |= EQUIPMENT_LOW_BATTERY
        if hal.button.was_pressed():
            flags |= EQUIPMENT_BUTTON
        if hal.tamper.opened():
            flags |= EQUIPMENT_TAMPER
        cfg = self.cfg
        payload = encode_equipment_payload(
            cfg.key_id, cfg.tag_id, battery_pct, battery_mv, flags, self.counter, cfg.company_id, cfg.key
        )
        self.advert = build_advertisement(cfg.company_id, payload)
        hal.radio.advertise(self.advert, cfg.advert_interval_ms)
        return self.advert
