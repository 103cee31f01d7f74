"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Routes raise problems with the helpers here (``raise not_found("no site 7")``);
a plain ``HTTPException`` still works and gets the type registered for its
status. :func:`install` registers the handlers on an app: HTTP errors (including
Starlette's own 404 and 405), request validation (422 with one entry per field),
database outages (503) and anything unhandled (500, which says nothing about the
cause: the traceback goes to the log under an incident id the body repeats).

Type URIs are ``tag:`` URIs (RFC 4151): stable names that are not meant to be
dereferenced (RFC 9457 section 4 recommends the tag scheme for such types). Each
is documented in docs/api.md under its slug.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "tag:patrol-verification,2026:problem:"
"""Every problem type URI is this prefix followed by the type's slug."""

MAX_FIELD_ERRORS = 50
"""A request body with thousands of bad items gets the first 50: enough to fix, bounded."""

DB_RETRY_AFTER_S = 5
"""What a 503 for an unreachable or locked database asks the client to wait."""


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One documented kind of error: a stable URI, a fixed title, its usual status."""

    slug: str
    status: int
    title: str
    description: str
    """What it means and what the client should do (rendered into docs/api.md)."""

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


BAD_REQUEST = ProblemType(
    "bad-request", 400, "Bad request", "The request cannot be read (e.g. a body that is not gzip)."
)
UNAUTHENTICATED = ProblemType(
    "unauthenticated",
    401,
    "Authentication required",
    "No credential, or one that is wrong, expired, revoked or of the wrong kind. "
    "Log in again (people) or check the API key (gateways).",
)
FORBIDDEN = ProblemType(
    "forbidden", 403, "Forbidden", "The credential is valid but its role may not do this."
)
NOT_FOUND = ProblemType(
    "not-found",
    404,
    "Not found",
    "No such resource, or one outside the caller's sites (the two are not told apart).",
)
METHOD_NOT_ALLOWED = ProblemType(
    "method-not-allowed",
    405,
    "Method not allowed",
    "The path exists but not with this method; the Allow header lists the methods.",
)
CONFLICT = ProblemType(
    "conflict", 409, "Conflict", "The resource already exists or the change contradicts it."
)
CONTENT_TOO_LARGE = ProblemType(
    "content-too-large",
    413,
    "Content too large",
    "The body (or its gzip inflation) exceeds the limit; split the batch.",
)
UNSUPPORTED_MEDIA_TYPE = ProblemType(
    "unsupported-media-type",
    415,
    "Unsupported media type",
    "A Content-Type or Content-Encoding the route does not accept.",
)
VALIDATION = ProblemType(
    "validation-error",
    422,
    "Request validation failed",
    "Parameters or body do not match the schema; ``errors`` lists each field "
    "(``in``, ``field``, ``pointer`` for body fields, ``detail``, ``code``).",
)
RATE_LIMITED = ProblemType(
    "rate-limited",
    429,
    "Too many requests",
    "Too many attempts (e.g. failed logins); retry after the Retry-After header's seconds.",
)
INTERNAL = ProblemType(
    "internal-error",
    500,
    "Internal server error",
    "A bug on the server; the body carries an ``incident`` id to quote, nothing else.",
)
UNAVAILABLE = ProblemType(
    "unavailable",
    503,
    "Service unavailable",
    "A dependency (the database) is unreachable or busy; retry after Retry-After.",
)

PROBLEM_TYPES: tuple[ProblemType, ...] = (
    BAD_REQUEST,
    UNAUTHENTICATED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    CONFLICT,
    CONTENT_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    RATE_LIMITED,
    INTERNAL,
    UNAVAILABLE,
)
_BY_STATUS: dict[int, ProblemType] = {p.status: p for p in PROBLEM_TYPES}


class Problem(StarletteHTTPException):
    """An HTTP error with a problem type and optional extension members.

    Extension members must be JSON values and must not repeat the standard names.
    """

    def __init__(
        self,
        problem_type: ProblemType,
        detail: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(status or problem_type.status, detail=detail, headers=dict(headers or {}))
        self.problem_type = problem_type
        self.extensions = extensions


def json_pointer(path: Sequence[str]) -> str:
    """RFC 6901 pointer, as a URI fragment, to ``path`` within the body."""
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)


# ---------------------------------------------------------------- raising helpers


def bad_request(detail: str) -> Problem:
    return Problem(BAD_REQUEST, detail)


def unauthenticated(detail: str) -> Problem:
    """401 with ``WWW-Authenticate: Bearer`` (RFC 6750)."""
    return Problem(UNAUTHENTICATED, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> Problem:
    return Problem(FORBIDDEN, detail)


def not_found(detail: str) -> Problem:
    return Problem(NOT_FOUND, detail)


def conflict(detail: str) -> Problem:
    return Problem(CONFLICT, detail)


def too_large(detail: str) -> Problem:
    return Problem(CONTENT_TOO_LARGE, detail)


def unsupported_media_type(detail: str) -> Problem:
    return Problem(UNSUPPORTED_MEDIA_TYPE, detail)


def invalid(detail: str, *, field: str | None = None, location: str = "query") -> Problem:
    """422 for a value the schema admits but the route does not (a bad cursor, kind, id).

    ``field`` names the parameter, so the body carries one ``errors`` entry like
    request validation does.
    """
    if field is None:
        return Problem(VALIDATION, detail)
    error = {"in": location, "field": field, "detail": detail, "code": "value_error"}
    if location == "body":
        error["pointer"] = json_pointer(field.split("."))
    return Problem(VALIDATION, detail, errors=[error])


def rate_limited(detail: str, *, retry_after_s: int) -> Problem:
    return Problem(RATE_LIMITED, detail, headers={"Retry-After": str(retry_after_s)})


def unavailable(detail: str, *, retry_after_s: int | None = None, **extensions: Any) -> Problem:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return Problem(UNAVAILABLE, detail, headers=headers, **extensions)


# ---------------------------------------------------------------- rendering


def problem_response(
    status: int,
    detail: str,
    *,
    problem_type: ProblemType | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` response for ``status``.

    Without ``problem_type`` the type registered for ``status`` is used, else
    ``about:blank`` with the HTTP reason phrase as title (RFC 9457 section 4.2.1).
    """
    ptype = problem_type if problem_type is not None else _BY_STATUS.get(status)
    body: dict[str, Any] = {
        "type": ptype.uri if ptype is not None else "about:blank",
        "title": ptype.title if ptype is not None else _phrase(status),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    for name, value in (extensions or {}).items():
        if name not in body:
            body[name] = value
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {})
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _instance(request: Request) -> str:
    return request.url.path


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    if isinstance(exc, Problem):
        return problem_response(
            exc.status_code,
            detail,
            problem_type=exc.problem_type,
            instance=_instance(request),
            headers=exc.headers,
            extensions=exc.extensions,
        )
    return problem_response(
        exc.status_code, detail, instance=_instance(request), headers=exc.headers
    )


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as problem ``errors`` entries, without the offending input.

    The input is left out on purpose: it may be a password or a key.
    """
    out: list[dict[str, Any]] = []
    for err in errors[:MAX_FIELD_ERRORS]:
        loc = [str(part) for part in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        entry: dict[str, Any] = {
            "in": where,
            "field": ".".join(path),
            "detail": str(err.get("msg", "invalid")),
            "code": str(err.get("type", "value_error")),
        }
        if where == "body":
            entry["pointer"] = json_pointer(path)
        out.append(entry)
    return out


async def _validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    shown = "; ".join(f"{e['field'] or e['in']}: {e['detail']}" for e in errors[:10])
    return problem_response(
        422,
        shown or "request validation failed",
        problem_type=VALIDATION,
        instance=_instance(request),
        extensions={"errors": errors},
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    incident = str(uuid.uuid4())
    log.warning(
        "database unavailable for %s %s (incident %s): %s",
        request.method,
        request.url.path,
        incident,
        type(exc).__name__,
    )
    return problem_response(
        503,
        "the database is unavailable or busy; retry later",
        problem_type=UNAVAILABLE,
        instance=_instance(request),
        headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        extensions={"incident": incident},
    )


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """A request value the database cannot hold (an integer beyond 64 bits) is the client's.

    Routes should bound their ids (``cloud_api.api.deps.DbId``); this is the net
    under the ones that do not: PostgreSQL's numeric range error and SQLite's
    OverflowError when binding.
    """
    log.warning(
        "value out of range for the database in %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
    )
    return problem_response(
        422,
        "a value in the request is out of range for the database (integers are 64-bit)",
        problem_type=VALIDATION,
        instance=_instance(request),
    )


async def _internal_problem(request: Request, exc: Exception) -> JSONResponse:
    incident = str(uuid.uuid4())
    log.error(
        "unhandled error for %s %s (incident %s)",
        request.method,
        request.url.path,
        incident,
        exc_info=exc,
    )
    return problem_response(
        500,
        "an internal error occurred; quote the incident id when reporting it",
        problem_type=INTERNAL,
        instance=_instance(request),
        extensions={"incident": incident},
    )


def install(app: FastAPI) -> None:
    """Register the problem handlers on ``app``."""
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(DataError, _out_of_range)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(Exception, _internal_problem)


# ---------------------------------------------------------------- OpenAPI


class FieldError(BaseModel):
    """One field that failed validation."""

    in_: str = Field(alias="in", description="query, path, header, cookie or body")
    field: str = Field(description="Dotted path of the field within its location.")
    pointer: str | None = Field(
        default=None, description="JSON Pointer (RFC 6901) into the body, for body fields."
    )
    detail: str
    code: str = Field(description="Machine-readable reason (pydantic error type).")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extension members may follow."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": NOT_FOUND.uri,
                    "title": NOT_FOUND.title,
                    "status": 404,
                    "detail": "no site 7",
                    "instance": "/api/v1/sites/7/chain",
                }
            ]
        },
    )

    type: str = Field(description="URI naming the problem type (see docs/api.md).")
    title: str = Field(description="Short summary of the type; the same for every occurrence.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time, for a person to read.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="validation-error only: one entry per failing field."
    )
    incident: str | None = Field(
        default=None, description="internal-error and unavailable: the id in the server log."
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for ``statuses``, as problem+json with an example.

    Use on a route: ``@router.get(..., responses=problem_responses(401, 403, 404))``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        ptype = _BY_STATUS.get(status)
        example: dict[str, Any] = {
            "type": ptype.uri if ptype is not None else "about:blank",
            "title": ptype.title if ptype is not None else _phrase(status),
            "status": status,
            "detail": ptype.description if ptype is not None else _phrase(status),
        }
        out[status] = {
            "description": ptype.title if ptype is not None else _phrase(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF, "example": example}},
        }
    return out


_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def patch_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated OpenAPI tell the truth about errors.

    FastAPI documents 422 as ``application/json`` ``HTTPValidationError``; this app
    answers ``application/problem+json``. Every 4xx/5xx response is rewritten to
    the problem schema, every operation gets its 500, and the schemas are added.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemDetails"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}", by_alias=True
    )
    components["ProblemDetails"].pop("$defs", None)
    components["FieldError"] = FieldError.model_json_schema(by_alias=True)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.setdefault("500", problem_responses(500)[500])
            if "requestBody" in operation:  # FastAPI's answer to a body it cannot decode
                responses.setdefault("400", problem_responses(400)[400])
            for code, response in responses.items():
                if code[:1] in {"4", "5"}:
                    status = int(code)
                    content = response.get("content", {})
                    media = (
                        content.get(PROBLEM_MEDIA_TYPE)
                        or problem_responses(status)[status]["content"][PROBLEM_MEDIA_TYPE]
                    )
                    response["content"] = {PROBLEM_MEDIA_TYPE: {**media, "schema": _PROBLEM_REF}}
                    if code == "422":
                        response["description"] = VALIDATION.title
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
