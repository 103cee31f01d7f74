"""``patrol-cloud``: run the cloud service with uvicorn on the configured host and port."""

from __future__ import annotations

import logging

import uvicorn

from cloud_api.app import create_app
from cloud_api.settings import get_settings


def main() -> None:
    """Read settings from the environment (``PATROL_CLOUD_*``) and serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
