"""ESP32 board support: machine.I2C (PN532), bluetooth.BLE scanning, network.WLAN, ADC.

Only compiled (mpy-cross) and reviewed here; it runs on a device. Pin numbers are
the defaults of the reference wiring in firmware/README.md and can be overridden.
The BLE scan IRQ only copies the advert into a bounded ring and returns; the
wearable drains it in step() (callbacks never do work).
"""

import time

import bluetooth
import machine
import network
from micropython import const

_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
_EMPTY_SLOT = (bytes(0), int(0), bytes(0))  # a drained ring slot (keeps the ring one type)
_SCAN_QUEUE_LEN = const(32)  # adverts buffered between two steps; more are counted and dropped
_SCAN_INTERVAL_US = const(100_000)
_SCAN_WINDOW_US = const(50_000)
_ADV_INTERVAL_US = const(250_000)
_I2C_FREQ_HZ = const(100_000)  # the PN532 stretches the clock; 100 kHz is the safe rate
_EPOCH_2000_S = const(946684800)  # 1970 -> 2000, for ports whose time() counts from 2000
_BATTERY_EMPTY_MV = const(3300)
_BATTERY_FULL_MV = const(4200)
_BUZZER_HZ = const(2700)  # resonant frequency of common piezo buzzers
_BUZZER_DUTY_U16 = const(32768)  # 50 % duty: the loudest square wave


class Esp32Clock:
    """ticks_ms from the CPU, UTC wall time from the RTC (unsynced until SET_TIME)."""

    def __init__(self):
        self.synced = False
        self._epoch_offset_s = _EPOCH_2000_S if time.gmtime(0)[0] == 2000 else 0

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, duration_ms):
        time.sleep_ms(duration_ms)

    def time(self):
        # time_ns() gives sub-second precision where the RTC keeps it.
        ns = time.time_ns()
        return ns // 1_000_000_000 + self._epoch_offset_s, (ns // 1_000_000) % 1000

    def set_time(self, time_s, time_ms):
        t = time.gmtime(time_s - self._epoch_offset_s)
        # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], time_ms * 1000))
        self.synced = True


class Esp32Radio:
    """Passive BLE scanning into a bounded ring; legacy advertising of our own payload."""

    def __init__(self):
        self._ble = bluetooth.BLE()
        self._ble.active(True)
        self._ble.irq(self._irq)
        self._ring = [_EMPTY_SLOT] * _SCAN_QUEUE_LEN
        self._head = 0
        self._tail = 0
        self.dropped = 0
        self._scanning = False

    def _irq(self, event, data):
        # IRQ context: copy (the buffers are reused by the stack) and return.
        if event == _IRQ_SCAN_RESULT:
            _, addr, _, rssi, adv_data = data
            nxt = (self._head + 1) % _SCAN_QUEUE_LEN
            if nxt == self._tail:
                self.dropped += 1
                return
            self._ring[self._head] = (bytes(addr), rssi, bytes(adv_data))
            self._head = nxt
        elif event == _IRQ_SCAN_DONE:
            self._scanning = False

    def start_scan(self):
        # duration 0 = scan until stopped; passive (no scan requests).
        self._ble.gap_scan(0, _SCAN_INTERVAL_US, _SCAN_WINDOW_US, False)
        self._scanning = True

    def poll_adverts(self, max_n=16):
        out = []
        if not self._scanning:
            self.start_scan()
        while self._tail != self._head and len(out) < max_n:
            out.append(self._ring[self._tail])
            self._ring[self._tail] = _EMPTY_SLOT
            self._tail = (self._tail + 1) % _SCAN_QUEUE_LEN
        return out

    def advertise(self, adv_data, interval_ms=None):
        if not adv_data:
            # MicroPython docs: an interval of None stops advertising (the stub says int).
            self._ble.gap_advertise(None)  # pyright: ignore[reportArgumentType]
            return
        interval_us = interval_ms * 1000 if interval_ms else _ADV_INTERVAL_US
        self._ble.gap_advertise(interval_us, adv_data, connectable=False)

    def set_tx_power(self, tx_power_dbm):
        # ESP32 NimBLE: BLE.config(txpower=...) where the port supports it; otherwise
        # the controller default (+3 dBm on ESP32) stays.
        try:
            self._ble.config(txpower=tx_power_dbm)
        except (ValueError, TypeError, OSError):
            pass


class Esp32Button:
    """Button to ground with the internal pull-up: pressed reads 0; the falling-edge IRQ latches."""

    def __init__(self, pin):
        self._pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._latched = False
        self._pin.irq(self._irq, machine.Pin.IRQ_FALLING)

    def _irq(self, pin):
        self._latched = True

    def pressed(self):
        return self._pin.value() == 0

    def was_pressed(self):
        latched = self._latched
        self._latched = False
        return latched


class Esp32Tamper:
    """Tamper switch closed to ground while the case is shut; opening it latches a flag."""

    def __init__(self, pin):
        self._opened = False
        if pin is None:
            self._pin = None
            return
        self._pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._pin.irq(self._irq, machine.Pin.IRQ_RISING)

    def _irq(self, pin):
        self._opened = True

    def opened(self):
        opened = self._opened
        self._opened = False
        return opened


class Esp32Outputs:
    """LED, buzzer (PWM) and vibration motor lines; ``set(mask)`` switches them (bits 0, 1, 2)."""

    def __init__(self, led_pin, buzzer_pin, vibration_pin):
        self._led = machine.Pin(led_pin, machine.Pin.OUT) if led_pin is not None else None
        self._buzzer = machine.PWM(machine.Pin(buzzer_pin), freq=_BUZZER_HZ, duty_u16=0) if buzzer_pin is not None else None
        self._vibration = machine.Pin(vibration_pin, machine.Pin.OUT) if vibration_pin is not None else None

    def set(self, mask):
        if self._led is not None:
            self._led.value(mask & 1)
        if self._buzzer is not None:
            self._buzzer.duty_u16(_BUZZER_DUTY_U16 if mask & 2 else 0)
        if self._vibration is not None:
            self._vibration.value(1 if mask & 4 else 0)


class Esp32Power:
    """machine.lightsleep keeps RAM and resumes here; machine.deepsleep ends in a reset."""

    def lightsleep(self, duration_ms):
        machine.lightsleep(duration_ms)

    def deepsleep(self, duration_ms):
        machine.deepsleep(duration_ms)


class Esp32Accel:
    """Motion interrupt line of an accelerometer (e.g. LIS3DH INT1); the IRQ only latches a flag."""

    def __init__(self, pin):
        self._moved = False
        self._pin = machine.Pin(pin, machine.Pin.IN)
        self._pin.irq(self._irq, machine.Pin.IRQ_RISING)

    def _irq(self, pin):
        self._moved = True

    def motion(self):
        moved = self._moved
        self._moved = False
        return moved


class Esp32Battery:
    """Battery voltage through a 1:2 divider on an ADC pin."""

    def __init__(self, pin, charging_pin=None):
        self._adc = machine.ADC(machine.Pin(pin))
        self._adc.atten(machine.ADC.ATTN_11DB)
        self._charging = machine.Pin(charging_pin, machine.Pin.IN) if charging_pin is not None else None

    def read(self):
        battery_mv = self._adc.read_uv() * 2 // 1000
        span_mv = _BATTERY_FULL_MV - _BATTERY_EMPTY_MV
        pct = (battery_mv - _BATTERY_EMPTY_MV) * 100 // span_mv
        pct = 0 if pct < 0 else 100 if pct > 100 else pct
        charging = self._charging is not None and self._charging.value() == 0
        return pct, battery_mv, charging


class Esp32Net:
    """Wi-Fi station; connect() starts association, is_up() polls it (never blocks)."""

    def __init__(self, ssid, password):
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self._ssid = ssid
        self._password = password
        self._wlan.connect(ssid, password)

    def is_up(self):
        return self._wlan.isconnected()


class Esp32Hal:
    """The wearable's HAL on an ESP32 (see hal/__init__.py for the interface)."""

    def __init__(
        self,
        flash_dir,
        wifi_ssid,
        wifi_password,
        i2c_id=0,
        scl_pin=22,
        sda_pin=21,
        button_pin=0,
        accel_int_pin=34,
        battery_pin=35,
        charging_pin=None,
        led_pin=2,
        buzzer_pin=25,
        vibration_pin=26,
        tamper_pin=None,
        wifi=True,
    ):
        self.flash_dir = flash_dir
        self.clock = Esp32Clock()
        self.nfc = machine.I2C(i2c_id, scl=machine.Pin(scl_pin), sda=machine.Pin(sda_pin), freq=_I2C_FREQ_HZ)
        self.radio = Esp32Radio()
        self.button = Esp32Button(button_pin)
        self.accel = Esp32Accel(accel_int_pin)
        self.battery = Esp32Battery(battery_pin, charging_pin)
        self.net = Esp32Net(wifi_ssid, wifi_password) if wifi else None
        self.tamper = Esp32Tamper(tamper_pin)
        self.outputs = Esp32Outputs(led_pin, buzzer_pin, vibration_pin)
        self.power = Esp32Power()

    def reset_cause(self):
        cause = machine.reset_cause()
        if cause == machine.WDT_RESET:
            return 1
        if cause == machine.SOFT_RESET:
            return 3
        if cause == getattr(machine, "BROWNOUT_RESET", -1):
            return 2
        return 0
