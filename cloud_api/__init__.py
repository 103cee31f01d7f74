"""Patrol verification cloud service: verify relayed evidence, store it exactly once.

Entry points:

- :func:`cloud_api.app.create_app` -- the FastAPI app (``POST /api/v1/ingest``,
  ``GET /api/v1/events``, ``GET /healthz``, thin provisioning routes);
  ``patrol-cloud`` (:mod:`cloud_api.__main__`) serves it with uvicorn.
- :mod:`cloud_api.provisioning` -- keyword-only functions registering sites,
  posts, checkpoints, gateways (API key returned once), wearables, beacons,
  equipment tags and NFC tags (keys encrypted under the server key).
- :mod:`cloud_api.ingest` / :mod:`cloud_api.verify` -- the batch pipeline and the
  pure verification rules, usable without HTTP.
- :mod:`cloud_api.db` -- ``make_engine``, ``init_db`` (the schema seam),
  ``session_scope``.
"""
