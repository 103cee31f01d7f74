"""``patrol-cloud``: run the cloud service, or manage its schema (``patrol-cloud db ...``).

patrol-cloud                serve with uvicorn on the configured host and port
                            (the schema is upgraded to every Alembic head first)
patrol-cloud db upgrade     only upgrade the schema (a separate deployment step)
patrol-cloud db --help      every schema command (cloud_api.migrations.cli)
patrol-cloud compliance --help   targets, shifts and scores (cloud_api.compliance.cli)
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from cloud_api.app import create_app
from cloud_api.settings import get_settings


def main() -> None:
    """Read settings from the environment (``PATROL_CLOUD_*``) and serve, or run ``db``."""
    if sys.argv[1:2] == ["db"]:
        from cloud_api.migrations.cli import main as db_main

        raise SystemExit(db_main(sys.argv[2:]))
    if sys.argv[1:2] == ["compliance"]:
        from cloud_api.compliance.cli import main as compliance_main

        raise SystemExit(compliance_main(sys.argv[2:]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
