"""Checkpoint beacon: advertises its id, a time step, its battery and a truncated HMAC.

The payload changes once per step (``time_s // step_s``). ``step()`` rebuilds it
when the step moves and hands the advert to the radio with the configured
interval and TX power. ``run_once()`` is one cycle of a battery beacon: advertise
the current payload for a short burst, stop the radio, then sleep until the next
advert (``sleep_mode`` "light" keeps RAM, "deep" resets the chip, which loses
nothing here: the step comes from the RTC, which keeps running in deep sleep).
Beacon clocks drift; the cloud tracks each beacon's offset between step and real time.
"""

from patrol.adverts import build_advertisement, encode_beacon_payload
from patrol.compat import const
from patrol.limits import DEV_COMPANY_ID

SLEEP_NONE = "none"  # mains powered: advertise continuously at adv_interval_ms
SLEEP_LIGHT = "light"
SLEEP_DEEP = "deep"
_BURST_MS = const(30)  # one advertising event on the three channels takes < 10 ms; margin for the controller
_MIN_INTERVAL_MS = const(100)  # BLE legacy adverts: non-connectable interval floor is 100 ms
_MAX_INTERVAL_MS = const(10240)  # BLE Core: advertising interval at most 10.24 s
_TX_POWER_MIN_DBM = const(-24)  # ESP32 BLE TX power range (ESP-IDF esp_power_level_t)
_TX_POWER_MAX_DBM = const(20)


class BeaconConfig:
    """One beacon's identity, key (16 bytes) and radio settings."""

    def __init__(
        self,
        beacon_id,
        key,
        key_id=1,
        company_id=DEV_COMPANY_ID,
        step_s=10,
        tx_power_dbm=-59,
        adv_interval_ms=1000,
        radio_tx_power_dbm=0,
        sleep_mode=SLEEP_NONE,
    ):
        if len(key) != 16:
            raise ValueError("beacon key must be 16 bytes")
        if not _MIN_INTERVAL_MS <= adv_interval_ms <= _MAX_INTERVAL_MS:
            raise ValueError("adv_interval_ms must be 100..10240")
        if not _TX_POWER_MIN_DBM <= radio_tx_power_dbm <= _TX_POWER_MAX_DBM:
            raise ValueError("radio_tx_power_dbm must be -24..20")
        if sleep_mode not in (SLEEP_NONE, SLEEP_LIGHT, SLEEP_DEEP):
            raise ValueError("sleep_mode must be none, light or deep")
        self.beacon_id = beacon_id
        self.key = bytes(key)
        self.key_id = key_id
        self.company_id = company_id
        self.step_s = step_s
        # tx_power_dbm is the calibrated RSSI at 1 m carried in the advert;
        # radio_tx_power_dbm is what the radio is set to transmit.
        self.tx_power_dbm = tx_power_dbm
        self.adv_interval_ms = adv_interval_ms
        self.radio_tx_power_dbm = radio_tx_power_dbm
        self.sleep_mode = sleep_mode


class Beacon:
    """Builds and advertises the beacon payload for the current time step."""

    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.current_step = None
        self.advert = None
        hal.radio.set_tx_power(cfg.radio_tx_power_dbm)

    def _refresh(self):
        cfg = self.cfg
        step = self.hal.clock.time()[0] // cfg.step_s
        if step == self.current_step:
            return False
        battery_pct = self.hal.battery.read()[0]
        payload = encode_beacon_payload(
            cfg.key_id, cfg.beacon_id, step, cfg.tx_power_dbm, battery_pct, cfg.company_id, cfg.key
        )
        self.advert = build_advertisement(cfg.company_id, payload)
        self.current_step = step
        return True

    def step(self):
        """Refresh the advert if the time step moved; returns the current advert bytes."""
        if self._refresh():
            self.hal.radio.advertise(self.advert, self.cfg.adv_interval_ms)
        return self.advert

    def run_once(self):
        """One cycle: advert for this step, then sleep until the next one (per sleep_mode)."""
        cfg = self.cfg
        if cfg.sleep_mode == SLEEP_NONE:
            self.step()
            self.hal.clock.sleep_ms(cfg.adv_interval_ms)
            return self.advert
        self._refresh()
        radio = self.hal.radio
        radio.advertise(self.advert, _MIN_INTERVAL_MS)
        self.hal.clock.sleep_ms(_BURST_MS)
        radio.advertise(None)
        sleep_ms = cfg.adv_interval_ms - _BURST_MS
        if cfg.sleep_mode == SLEEP_DEEP:
            self.hal.power.deepsleep(sleep_ms)
        else:
            self.hal.power.lightsleep(sleep_ms)
        return self.advert
