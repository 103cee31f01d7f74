"""patrol_protocol: the one CPython implementation of every wire format of protocol v1.

Pure functions, bytes in and frozen value types out, shared by the edge agent and
the cloud service (docs/protocol.md is the contract; tests/vectors/ pins it):

- :mod:`~patrol_protocol.frames`: signed event frames (wearable -> edge -> cloud)
- :mod:`~patrol_protocol.commands`: signed commands, acks, status frames
- :mod:`~patrol_protocol.adverts`: signed BLE advert payloads and AD structures
- :mod:`~patrol_protocol.sun`: NTAG 424 DNA SUN verification (AN12196)
- :mod:`~patrol_protocol.batch`: the gateway -> cloud ingest JSON (pydantic)
- :mod:`~patrol_protocol.ids`, :mod:`~patrol_protocol.topics`: device ids, MQTT topics
- :mod:`~patrol_protocol.errors`: one exception tree with stable rejection reasons
"""
