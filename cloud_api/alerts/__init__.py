"""Alerts (issue 7): an accepted SOS or man-down frame becomes an alert at once.

- :mod:`.service`: create (from ingest, same transaction, idempotent), acknowledge,
  resolve, escalate; every step is an ``alert_log`` row, a notification to SSE
  subscribers (PostgreSQL ``NOTIFY`` / in-process after commit), webhook deliveries
  and an InfluxDB ``sos_response`` line through the sink outbox.
- :mod:`.hub`: fan-out to Server-Sent Events subscribers of this process.
- :mod:`.webhooks`: HMAC-SHA256-signed webhook deliveries with retries and a log.
- :mod:`.worker`: the background thread (escalation, deliveries), safe in many processes.
- :mod:`.settings`: ``PATROL_CLOUD_ALERTS_*`` configuration.

The design is in docs/alerts.md.
"""
