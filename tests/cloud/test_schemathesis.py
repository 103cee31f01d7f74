"""Schemathesis against the app's own OpenAPI: no 5xx, and every answer as documented.

The real app (ASGI, in process) on a provisioned SQLite file and a PostgreSQL
schema, called as an admin (the admin token) and, for ingest, as the site's
gateway. For each operation Schemathesis generates valid and invalid requests
(Hypothesis, derandomized, no shrinking) and checks: no server
error, a documented status, the documented content type, declared headers,
the response body against its schema, and that invalid input is refused (4xx).
``MAX_EXAMPLES`` bounds the run so the suite stays fast.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from cloudtest import ADMIN_TOKEN, World
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 8
"""Per operation, mode and database: 67 operations x 2 modes x 8 examples."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _check_operation(world: World, operation: Any, mode: GenerationMode) -> str | None:
    """Run the checks on ``MAX_EXAMPLES`` generated cases; the first failure's text or None."""
    token = world.api_key if operation.path == "/api/v1/ingest" else ADMIN_TOKEN
    headers = {"Authorization": f"Bearer {token}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time, first failure
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # a check failure (FailureGroup) or a crash
        return f"{operation.method.upper()} {operation.path} [{mode.value}]: {exc}"
    return None


def test_api_matches_its_openapi(world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := _check_operation(world, operation, mode)) is not None
    ]
    assert not failures, "\n\n".join(failures)
