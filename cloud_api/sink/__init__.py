"""The InfluxDB sink: accepted evidence as time series, through an outbox.

- :mod:`cloud_api.sink.schema`: measurements, tags and fields (docs/influx-schema.md)
  and a fast line-protocol serialiser;
- :mod:`cloud_api.sink.outbox`: the ``influx_outbox`` rows filled in the ingest
  transaction, claimed with leases (``FOR UPDATE SKIP LOCKED`` on PostgreSQL);
- :mod:`cloud_api.sink.writers`: one :class:`~cloud_api.sink.writers.LineWriter`
  interface, InfluxDB 1.x ``/write`` and 2.x/3.x/Cloud ``/api/v2/write``;
- :mod:`cloud_api.sink.worker`: the background drain with retries and backoff.
"""
