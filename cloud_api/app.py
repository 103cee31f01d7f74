"""FastAPI application factory: ``create_app(settings) -> FastAPI``.

The factory builds the engine, creates the schema (:func:`cloud_api.db.init_db`),
the secret box and the verification policy once, and hangs them on
``app.state.ctx``. Errors are RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cloud_api.api import problems
from cloud_api.api.deps import AppContext, openapi_auth
from cloud_api.api.routes import alerts as alert_routes
from cloud_api.api.routes import auth, chain, devices, events, health, ingest, provisioning
from cloud_api.api.routes import compliance as compliance_routes
from cloud_api.api.routes import reports as report_routes
from cloud_api.api.routes import workflow as workflow_routes
from cloud_api.auth.tokens import signing_key
from cloud_api.compliance.workflow import ESCALATION_INTERVAL_S, EscalationWorker
from cloud_api.console import routes as console_routes  # console (issue 7)
from cloud_api.crypto_store import SecretBox
from cloud_api.db import init_db, make_engine, make_sessionmaker
from cloud_api.models import utcnow
from cloud_api.settings import Settings, get_settings
from cloud_api.sink.worker import SinkWorker
from cloud_api.verify import VerifyPolicy
from patrol_protocol.batch import IngestBatch

API_PREFIX = "/api/v1"


def _openapi_with_ingest_batch(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI that also describes the hand-read ingest body (``IngestBatch`` and its items)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            batch = IngestBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(batch.pop("$defs", {}))
            components["IngestBatch"] = batch
            openapi_auth(app.routes, schema)
            app.openapi_schema = problems.patch_openapi(schema)
        return app.openapi_schema

    return openapi


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """Build the service for ``settings`` (default: :func:`get_settings`).

    ``clock`` gives server time (timezone-aware UTC); tests inject a fixed one.
    """
    settings = settings if settings is not None else get_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        box=SecretBox(settings.server_key_bytes()),
        policy=VerifyPolicy(
            clock_skew_tolerance_s=settings.clock_skew_tolerance_s,
            max_future_skew_s=settings.max_future_skew_s,
            sun_counter_jump_flag=settings.sun_counter_jump_flag,
        ),
        clock=clock,
        token_key=signing_key(settings.server_key_bytes()),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The InfluxDB sink drains the outbox in every process (leased claims).
        sink = (
            SinkWorker.from_settings(engine, settings)
            if settings.influx_enabled and settings.sink_run_worker
            else None
        )
        if sink is not None:
            sink.start()
        # Overdue rectification items escalate from every process (FOR UPDATE SKIP LOCKED).
        escalation = EscalationWorker(
            ctx.sessions,
            interval_s=ESCALATION_INTERVAL_S,
            clock=clock,
            influx_enabled=settings.influx_enabled,
        )
        escalation.start()
        yield
        escalation.stop()
        if sink is not None:
            sink.stop()
        engine.dispose()

    app = FastAPI(
        title="Patrol verification cloud",
        version="0.1.0",
        summary="Verifies signed patrol evidence relayed by edge gateways and stores it once.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(health.router)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(ingest.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(provisioning.router, prefix=API_PREFIX)
    app.include_router(chain.router, prefix=API_PREFIX)
    app.include_router(devices.router, prefix=API_PREFIX)
    app.include_router(compliance_routes.router, prefix=API_PREFIX)
    app.include_router(workflow_routes.router, prefix=API_PREFIX)
    app.include_router(report_routes.router, prefix=API_PREFIX)
    app.include_router(alert_routes.router, prefix=API_PREFIX)  # alerts (issue 7)
    app.include_router(console_routes.router)  # console (issue 7): /console pages
    app.openapi = _openapi_with_ingest_batch(app)  # type: ignore[method-assign]
    return app
