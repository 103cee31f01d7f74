"""BLE ingest: bleak scanner -> tag tracker -> durable queue.

- :mod:`edge_agent.ble.decoders` -- pure decoders for iBeacon, Eddystone-UID and
  Eddystone-TLM (the project's own adverts: :mod:`patrol_protocol.adverts`)
- :mod:`edge_agent.ble.tracker`  -- ``TagTracker``: dedup per tag, RSSI smoothing,
  away/back, health observations (pure, clock injected)
- :mod:`edge_agent.ble.scanner`  -- ``BleIngest``: one ``BleakScanner``, the bounded
  buffer, the worker and adapter-loss retries
"""
