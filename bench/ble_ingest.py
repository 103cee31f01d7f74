"""BLE ingest: bleak callback -> tracker (dedup, EWMA, away) -> durable queue, adverts per second.

Simulates ``--tags`` tags each advertising ``--rate-hz`` times a second for
``--seconds`` simulated seconds (injected clocks, so the run is CPU-bound, not
waiting), feeding bleak's own ``BLEDevice`` / ``AdvertisementData`` objects to
``BleIngest.callback`` and committing once per simulated second (what the worker
does with its 1 s tick). Half the tags send the project's signed equipment advert,
half an iBeacon.

Baseline, measured side by side: a bare bleak callback that copies the same
objects into a ``queue.Queue`` and a consumer that drains it and does nothing.

    .venv/bin/python bench/ble_ingest.py            # 200 tags x 10 Hz x 60 s = 120,000 adverts
    .venv/bin/python bench/ble_ingest.py --quick    # 50 tags x 10 Hz x 20 s
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from pathlib import Path

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.ble.scanner import BleIngest
from edge_agent.queue import EdgeQueue
from edge_agent.settings import EdgeSettings

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "adverts.json"
IBEACON_DATA = bytes.fromhex("0215b5b182c7eab14988aa99b5c1517008d900010002c6")


def _equipment_payload() -> bytes:
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        if vector["name"] == "equipment_dev_company":
            return bytes.fromhex(vector["payload_hex"])
    raise SystemExit("equipment_dev_company vector missing")


def _stream(tags: int) -> list[tuple[BLEDevice, AdvertisementData]]:
    equipment = _equipment_payload()
    out = []
    for n in range(tags):
        address = f"C0:FF:EE:00:{n >> 8:02X}:{n & 0xFF:02X}"
        device = BLEDevice(address, None, {"path": f"/org/bluez/hci0/dev_{address}"})
        if n % 2:
            # a distinct iBeacon per tag: minor = n
            data = IBEACON_DATA[:-3] + n.to_bytes(2, "big") + IBEACON_DATA[-1:]
            mfr = {0x004C: data}
        else:
            mfr = {0xFFFF: equipment[:3] + n.to_bytes(4, "big") + equipment[7:]}
        out.append((device, AdvertisementData(None, mfr, {}, [], None, -60 - n % 30, ())))
    return out


def bench_baseline(stream: list[tuple[BLEDevice, AdvertisementData]], rounds: int) -> float:
    buffer: queue.Queue[tuple[BLEDevice, AdvertisementData]] = queue.Queue()
    start = time.perf_counter()
    for _ in range(rounds):
        for device, adv in stream:
            buffer.put_nowait((device, adv))
        while True:
            try:
                buffer.get_nowait()
            except queue.Empty:
                break
    return time.perf_counter() - start


def bench_ingest(
    stream: list[tuple[BLEDevice, AdvertisementData]], rounds: int, rate_hz: int, tmp: Path
) -> tuple[float, int, str]:
    settings = EdgeSettings(
        cloud_url="http://127.0.0.1:9",
        gateway_id="bench",
        gateway_api_key="unused",
        queue_path=tmp / "ble.sqlite3",
        ble_buffer_adverts=len(stream) * rate_hz + 1,
    )
    clock = [0.0]
    q = EdgeQueue(settings.queue_path, synchronous=settings.sqlite_synchronous)
    ingest = BleIngest(
        settings,
        q,
        monotonic=lambda: clock[0],
        wall_ms=lambda: 1_795_580_000_000 + int(clock[0] * 1000),
    )
    per_round = rounds // rate_hz or 1
    start = time.perf_counter()
    for second in range(per_round):
        for tick in range(rate_hz):
            clock[0] = second + tick / rate_hz
            for device, adv in stream:
                ingest.callback(device, adv)
        ingest.process_pending()
    elapsed = time.perf_counter() - start
    depth = q.depth()
    q.close()
    return elapsed, depth, settings.sqlite_synchronous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--rate-hz", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="50 tags x 10 Hz x 20 s")
    args = parser.parse_args()
    if args.quick:
        args.tags, args.seconds = 50, 20
    stream = _stream(args.tags)
    rounds = args.rate_hz * args.seconds
    adverts = rounds * args.tags
    with tempfile.TemporaryDirectory() as tmp:
        ingest_s, depth, sync = bench_ingest(stream, rounds, args.rate_hz, Path(tmp))
    base_s = bench_baseline(stream, rounds)
    print(f"tags={args.tags} rate_hz={args.rate_hz} simulated_s={args.seconds} adverts={adverts}")
    print(f"sqlite synchronous={sync}, one commit per simulated second, heartbeat interval 10 s")
    print(f"queue items written: {depth} (dedup {adverts / max(depth, 1):.0f}:1)")
    print(f"baseline (bare callback -> queue.Queue -> discard): {adverts / base_s:,.0f} adverts/s")
    print(
        f"BleIngest (callback -> tracker -> SQLite):          {adverts / ingest_s:,.0f} adverts/s"
    )
    print(f"ratio ingest/baseline: {base_s / ingest_s:.2f}")
    print(
        f"headroom over the simulated load: {adverts / ingest_s / (args.tags * args.rate_hz):.0f}x"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
