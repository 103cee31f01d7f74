"""Checkpoint beacon: advertises its id, a time step and a truncated HMAC.

The payload changes once per step (``time_s // step_s``); ``step()`` rebuilds it
when the step moves and hands the 31-byte advert to the radio. Beacon clocks
drift; the cloud tracks each beacon's offset between step and real time.
"""

from patrol.adverts import build_advertisement, encode_beacon_payload
from patrol.limits import DEV_COMPANY_ID


class BeaconConfig:
    """One beacon's identity and key (16 bytes)."""

    def __init__(self, beacon_id, key, key_id=1, company_id=DEV_COMPANY_ID, step_s=10, tx_power_dbm=-59):
        if len(key) != 16:
            raise ValueError("beacon key must be 16 bytes")
        self.beacon_id = beacon_id
        self.key = bytes(key)
        self.key_id = key_id
        self.company_id = company_id
        self.step_s = step_s
        self.tx_power_dbm = tx_power_dbm


class Beacon:
    """Builds and advertises the beacon payload for the current time step."""

    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.current_step = None
        self.advert = None

    def step(self):
        """Refresh the advert if the time step moved; returns the current advert bytes."""
        cfg = self.cfg
        step = self.hal.clock.time()[0] // cfg.step_s
        if step != self.current_step:
            payload = encode_beacon_payload(
                cfg.key_id, cfg.beacon_id, step, cfg.tx_power_dbm, cfg.company_id, cfg.key
            )
            self.advert = build_advertisement(cfg.company_id, payload)
            self.current_step = step
            self.hal.radio.advertise(self.advert)
        return self.advert
