"""HTTP layer: thin FastAPI routes over the plain modules of :mod:`cloud_api`."""
