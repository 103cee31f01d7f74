"""Hardware abstraction: what the firmware needs from a board, and nothing more.

A HAL object has these attributes (hal/sim.py simulates them, hal/esp32.py maps
them onto machine / bluetooth / network):

``clock``
    ``ticks_ms()`` monotonic ms (wrapping; compare with compat.ticks_diff),
    ``sleep_ms(ms)``, ``time()`` -> (time_s, time_ms) UTC wall clock,
    ``set_time(time_s, time_ms)`` (from a signed SET_TIME), ``synced`` (bool).
``flash_dir``
    directory (str) on the board's file system for the queue and state.
``nfc``
    an I2C bus with a PN532 at address 0x24: ``writeto(addr, buf)``,
    ``readfrom(addr, nbytes)`` (machine.I2C semantics).
``radio``
    ``start_scan()``; ``poll_adverts(max_n)`` -> [(addr bytes, rssi_dbm, adv_data bytes)]
    drained from a bounded queue the scan IRQ fills; ``advertise(adv_data,
    interval_ms=None)`` sets the advert this device sends (None stops advertising);
    ``set_tx_power(dbm)``.
``button``
    ``pressed()`` -> bool (button level); ``was_pressed()`` -> bool, latched by the
    edge IRQ since the last call.
``tamper``
    ``opened()`` -> bool: tamper switch opened since the last call (latched).
``outputs``
    ``set(mask)``: LED (bit 0), buzzer (bit 1), vibration motor (bit 2) on or off.
``power``
    ``lightsleep(ms)`` (RAM kept), ``deepsleep(ms)`` (ends in a reset on a device).
``accel``
    ``motion()`` -> bool: movement seen since the last call (latched).
``battery``
    ``read()`` -> (battery_pct, battery_mv, charging).
``net``
    ``is_up()`` -> bool: Wi-Fi associated with an address.
``reset_cause()``
    0 power-on, 1 watchdog, 2 brown-out, 3 soft (as in the BOOT frame).

Callbacks (BLE scan IRQ, button IRQ) only copy data into bounded queues or set
flags; all work happens in the wearable's ``step()``.
"""
