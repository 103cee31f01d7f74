"""The patrol edge agent: the Raspberry Pi gateway between wearables and the cloud.

Modules, one responsibility each:

- :mod:`edge_agent.settings`  -- ``EdgeSettings`` (``PATROL_EDGE_*`` and a TOML file),
  ``load_settings()`` (errors name the file/variable and key), ``get_settings()``
- :mod:`edge_agent.inbound`   -- frozen value types and the pure check of an MQTT message
- :mod:`edge_agent.contiguity` -- per-device sequence ranges behind the application ack
- :mod:`edge_agent.queue`     -- ``EdgeQueue``: durable SQLite queue (WAL, synchronous=FULL),
  group commit, duplicates, dead letters
- :mod:`edge_agent.mqtt_ingest` -- ``MqttIngest``: persistent QoS 1 session, commit before
  PUBACK, ack frames to wearables
- :mod:`edge_agent.forwarder` -- ``Forwarder``: batches to ``POST /api/v1/ingest``
- :mod:`edge_agent.clock`     -- ``clock_state()``: is the gateway clock NTP-synchronised?
  ``ClockWatch``: which queued items were stamped while it was not
- :mod:`edge_agent.health`    -- ``HealthMonitor`` (one snapshot for /healthz, /metrics and the
  cloud) and ``HealthReporter`` (the periodic ``gateway_health`` observation)
- :mod:`edge_agent.metrics`   -- Prometheus collector and the local /healthz + /metrics server
- :mod:`edge_agent.sdnotify`  -- systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING)
- :mod:`edge_agent.runlock`   -- one agent per queue file (flock)
- :mod:`edge_agent.broker`    -- ``EmbeddedBroker`` (demo only) and ``mosquitto_conf()``
- :mod:`edge_agent.mosquitto_setup` -- the site broker's passwd/acl/conf from the cloud's export
- :mod:`edge_agent.agent`     -- ``EdgeAgent``: wires them; ``__main__``: the CLI

Delivery rule of the whole package: a message is acknowledged (MQTT PUBACK and the
wearable's ack frame) only after its commit is on disk, and an item leaves the
queue only after the cloud returned a final result for it.
"""
