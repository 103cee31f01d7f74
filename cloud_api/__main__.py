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
from pydantic import ValidationError

from cloud_api.app import create_app
from cloud_api.settings import Settings, get_settings


def settings_or_exit() -> Settings:
    """The settings, or exit 2 naming each bad ``PATROL_CLOUD_*`` variable.

    Only the variable and the reason are printed: pydantic's own message quotes
    the offending value, which for ``server_key`` would be a secret.
    """
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "PATROL_CLOUD_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"patrol-cloud: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    """Read settings from the environment (``PATROL_CLOUD_*``) and serve, or run ``db``."""
    if sys.argv[1:2] == ["db"]:
        from cloud_api.migrations.cli import main as db_main

        raise SystemExit(db_main(sys.argv[2:]))
    if sys.argv[1:2] == ["compliance"]:
        from cloud_api.compliance.cli import main as compliance_main

        raise SystemExit(compliance_main(sys.argv[2:]))
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if sys.argv[1:]:
        print(f"patrol-cloud: unknown command {sys.argv[1]!r} (try --help)", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings_or_exit()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
