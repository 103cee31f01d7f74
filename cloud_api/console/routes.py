"""The supervisor web console (issue 7): server-rendered pages under ``/console``.

Pages are Jinja2 templates (``templates/``) with one small stylesheet and a little
vanilla JavaScript; no single-page framework. The credential is the person's
ordinary access token (``POST /api/v1/auth/token`` issues the same kind): the
login form puts it in the ``patrol_access`` cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS), which the alert stream also reads. A bearer header works too
(the role matrix and scripts use it).

Authorisation is the API's: :func:`cloud_api.api.deps.require_roles` semantics
(role may do this, else 403) and site scope (a site or item of another site is
404, like a missing one). A browser (``Accept: text/html``) gets pages instead
of problem+json: a missing or expired login redirects to the login form, a
wrong role gets a refusal page naming the roles that may, a 404 a "not found"
page. Anything else (scripts, tests) gets the API's problem+json.

CSRF: forms posted with the cookie carry ``csrf`` = HMAC(token key, access
token), so a token is bound to the login and needs no storage; the login form
itself uses a double-submit cookie. Requests with a bearer header need none
(a browser never adds that header on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud_api.alerts import service as alert_service
from cloud_api.api.deps import MAX_DB_ID, AppContext, ContextDep, Principal, current_principal
from cloud_api.api.problems import (
    Problem,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
    rate_limited,
    unauthenticated,
)
from cloud_api.api.routes.alerts import ACCESS_COOKIE
from cloud_api.auth.tokens import issue_token
from cloud_api.auth.users import LockedOutError, LoginError, LoginPolicy, authenticate
from cloud_api.compliance import store as compliance_store
from cloud_api.compliance import workflow as wf
from cloud_api.compliance.engine import score_shift
from cloud_api.compliance.report.csv import render_csv
from cloud_api.compliance.report.data import collect
from cloud_api.compliance.report.pdf import render_pdf
from cloud_api.compliance.report.period import Month, PeriodError, site_zone
from cloud_api.compliance.targets import expected_rounds
from cloud_api.models import (
    Alert,
    Checkpoint,
    ComplianceShift,
    Deviation,
    Device,
    Event,
    Guard,
    Post,
    RectificationItem,
    Role,
    Site,
    User,
)
from patrol_protocol.frames import Kind

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

LOGIN_CSRF_COOKIE = "patrol_login_csrf"
"""Double-submit token of the login form (there is no session to bind it to yet)."""
CONSOLE_ROLES = (Role.SUPERVISOR,)
"""Who may use the console pages built so far (admins always)."""
DEVICE_ROLES = (Role.TECHNICIAN, Role.SUPERVISOR)
"""Who reads device health (as ``DeviceReaderDep`` in the API)."""
HEARTBEAT_KIND = int(Kind.HEARTBEAT)
BOOT_KIND = int(Kind.BOOT)
MAX_LIVE_ROWS = 200
MAX_ITEM_ROWS = 200
DbIdPath = Annotated[int, PathParam(ge=1, le=MAX_DB_ID)]


# ---------------------------------------------------------------- credentials


def wants_html(request: Request) -> bool:
    """A browser navigation or form post (Accept names text/html), not a script."""
    return "text/html" in request.headers.get("accept", "")


@dataclass(frozen=True, slots=True)
class Caller:
    """The person behind a console request and how they proved it."""

    principal: Principal
    token: str
    by_cookie: bool


def _token_of(request: Request) -> tuple[str, bool]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    return request.cookies.get(ACCESS_COOKIE, "").strip(), True


def csrf_token(ctx: AppContext, access_token: str) -> str:
    """The CSRF token of a login: HMAC of its access token under the server's token key."""
    return hmac.new(ctx.token_key, b"csrf:" + access_token.encode(), hashlib.sha256).hexdigest()


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.method != "GET":
        target = "/console/alerts"
    return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)


def _page_error(request: Request, problem: Problem, *, caller: Caller | None = None) -> Response:
    """``problem`` as a page for a browser; re-raised as problem+json for anyone else."""
    if not wants_html(request):
        raise problem
    if problem.status_code == 401:
        return _login_redirect(request)
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 422: "Check input"}
    return templates.TemplateResponse(
        request,
        "refused.html",
        {
            "title": titles.get(problem.status_code, "Error"),
            "detail": problem.detail,
            "status": problem.status_code,
            "me": caller.principal if caller else None,
            "csrf": csrf_token(request.app.state.ctx, caller.token) if caller else "",
        },
        status_code=problem.status_code,
    )


def authorise(request: Request, ctx: AppContext, roles: tuple[Role, ...]) -> Caller | Response:
    """The caller if they hold one of ``roles`` (admin always), else the refusal for them."""
    token, by_cookie = _token_of(request)
    if not token:
        return _page_error(request, unauthenticated("log in first (no access token)"))
    try:
        principal = current_principal(ctx, token)
    except Problem as exc:
        return _page_error(request, exc)
    caller = Caller(principal, token, by_cookie)
    allowed = {*roles, Role.ADMIN}
    if principal.role not in allowed:
        names = " and ".join(f"{r.value}s" for r in sorted(allowed, key=lambda r: r.value))
        problem = forbidden(
            f"This page is for {names}. Your account has the role {principal.role.value}."
        )
        return _page_error(request, problem, caller=caller)
    return caller


def _csrf_refusal(ctx: AppContext, caller: Caller, submitted: str | None) -> Problem | None:
    """400 for a cookie-authenticated form without this login's CSRF token, else None."""
    if not caller.by_cookie:
        return None
    expected = csrf_token(ctx, caller.token)
    if not submitted or not hmac.compare_digest(submitted, expected):
        return bad_request("the form's CSRF token is missing or wrong: reload the page")
    return None


# ---------------------------------------------------------------- shared page data


def _sites_of(session: Session, principal: Principal) -> list[Site]:
    query = select(Site).order_by(Site.name)
    if not principal.all_sites:
        query = query.where(Site.id.in_(sorted(principal.site_ids)))
    return list(session.scalars(query))


def _alert_view(alert: Alert, site_names: dict[int, str], zones: dict[int, str]) -> dict[str, Any]:
    zone = zones.get(alert.site_id)
    return {
        "id": alert.id,
        "site_id": alert.site_id,
        "site": site_names.get(alert.site_id, f"site {alert.site_id}"),
        "device": f"{alert.device_id:08x}",
        "trigger": alert.trigger,
        "state": alert.state,
        "level": alert.level,
        "repeats": alert.repeats,
        "created_at": _iso(alert.created_at),
        "created_local": local_time(alert.created_at, zone),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_local": local_time(alert.acknowledged_at, zone),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(moment: datetime | None, zone: str | None = None) -> str:
    """``25 Nov 05:01:00 CET``: the site's own clock, as a supervisor there reads it."""
    if moment is None:
        return ""
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(_zone(zone)).strftime("%d %b %H:%M:%S %Z")


templates.env.filters["local_time"] = local_time


def _render(
    request: Request, ctx: AppContext, caller: Caller, name: str, **values: Any
) -> HTMLResponse:
    with ctx.sessions() as session:
        sites = _sites_of(session, caller.principal)
    return templates.TemplateResponse(
        request,
        name,
        {
            "me": caller.principal,
            "csrf": csrf_token(ctx, caller.token),
            "nav_sites": [(s.id, s.name) for s in sites],
            **values,
        },
    )


# ---------------------------------------------------------------- login / logout


def _safe_next(target: str | None) -> str:
    """Only console paths: no open redirect to another host."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/alerts"


def _login_page(
    request: Request, *, next_url: str, error: str | None, status: int = 200, username: str = ""
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "next": next_url,
            "error": error,
            "login_csrf": token,
            "me": None,
            "username": username,
        },
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console/login",
    )
    return response


@router.get("/login", summary="Console login form")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, next_url=_safe_next(next), error=None)


@router.post("/login", summary="Console login: sets the access-token cookie")
def login(
    request: Request,
    ctx: ContextDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/alerts",
) -> Response:
    """Check the password like ``POST /api/v1/auth/token`` and keep the token in a cookie."""
    next_url = _safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf):
        return _login_page(
            request,
            next_url=next_url,
            error="The login form expired; please try again",
            status=400,
        )
    settings = ctx.settings
    policy = LoginPolicy(settings.login_max_failures, settings.login_lockout_s)
    now = ctx.clock()
    failure: LoginError | None = None
    with ctx.sessions() as session, session.begin():
        try:
            user = authenticate(
                session, username=username, password=password, now=now, policy=policy
            )
            user_id, name, role = user.id, user.username, user.role
        except LoginError as exc:
            failure = exc  # the failure count is committed before answering
    if failure is not None:
        log.info("console: failed login for %s", username)
        if not wants_html(request):
            if isinstance(failure, LockedOutError):
                raise rate_limited(str(failure), retry_after_s=failure.retry_after_s)
            raise unauthenticated(str(failure))
        status = 429 if isinstance(failure, LockedOutError) else 401
        return _login_page(
            request, next_url=next_url, error=str(failure), status=status, username=username
        )
    token, _ = issue_token(
        ctx.token_key,
        user_id=user_id,
        username=name,
        role=role,
        now=now,
        ttl_s=settings.access_token_ttl_s,
    )
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        ACCESS_COOKIE,
        token,
        max_age=settings.access_token_ttl_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/logout", summary="Console logout: clears the cookie")
def logout(
    request: Request,
    ctx: ContextDep,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Forget the cookie. With a cookie the form's CSRF token must match (no forced logouts)."""
    token, by_cookie = _token_of(request)
    if by_cookie and token and not hmac.compare_digest(csrf, csrf_token(ctx, token)):
        problem = bad_request("the form's CSRF token is missing or wrong: reload the page")
        return _page_error(request, problem)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(ACCESS_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# ---------------------------------------------------------------- alerts


@router.get("/alerts", summary="Live alerts (SSE, sound, acknowledge)")
def alerts_page(request: Request, ctx: ContextDep) -> Response:
    """Unresolved alerts of the caller's sites, kept live by the alert stream."""
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    with ctx.sessions() as session:
        sites = _sites_of(session, caller.principal)
        names = {s.id: s.name for s in sites}
        zones = {s.id: s.timezone for s in sites}
        query = (
            select(Alert)
            .where(Alert.state != alert_service.RESOLVED)
            .order_by(Alert.id.desc())
            .limit(MAX_LIVE_ROWS)
        )
        if not caller.principal.all_sites:
            query = query.where(Alert.site_id.in_(sorted(caller.principal.site_ids)))
        alerts = [_alert_view(a, names, zones) for a in session.scalars(query)]
    return _render(
        request, ctx, caller, "alerts.html", alerts=alerts, site_names=names, site_zones=zones
    )


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert from the console")
def acknowledge(
    request: Request,
    ctx: ContextDep,
    alert_id: DbIdPath,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
    note: Annotated[str | None, Form(max_length=alert_service.MAX_NOTE_CHARS)] = None,
) -> Response:
    """The alert service's acknowledge with the caller as the person (409 if not open)."""
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    refusal = _csrf_refusal(ctx, caller, csrf)
    if refusal is not None:
        return _page_error(request, refusal, caller=caller)
    principal = caller.principal
    scope = None if principal.all_sites else principal.site_ids
    try:
        with ctx.sessions() as session, session.begin():
            alert = alert_service.get_alert(session, alert_id, site_ids=scope)
            payload = alert_service.acknowledge(
                session,
                alert,
                person=principal.username,
                note=note,
                now=ctx.clock(),
                influx=ctx.settings.influx_enabled,
            )
    except alert_service.AlertNotFound as exc:
        return _page_error(request, not_found(str(exc)), caller=caller)
    except alert_service.AlertConflict as exc:
        return _page_error(request, conflict(str(exc)), caller=caller)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(payload)
    return RedirectResponse("/console/alerts", status_code=303)


# ---------------------------------------------------------------- sites and rectification


def _item_views(session: Session, site_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(RectificationItem, Deviation, Post.name, User.username)
        .join(Deviation, Deviation.id == RectificationItem.deviation_id)
        .outerjoin(Post, Post.id == Deviation.post_id)
        .outerjoin(User, User.id == RectificationItem.owner_id)
        .where(
            RectificationItem.site_id == site_id,
            RectificationItem.status.in_((wf.Status.OPEN.value, wf.Status.IN_PROGRESS.value)),
        )
        .order_by(RectificationItem.due_at, RectificationItem.id)
        .limit(MAX_ITEM_ROWS)
    ).all()
    return [
        {
            "id": item.id,
            "status": item.status,
            "severity": dev.severity,
            "rule": dev.rule,
            "detail": dev.detail,
            "post": post_name,
            "owner": owner,
            "occurred_at": dev.occurred_at,
            "due_at": item.due_at,
            "overdue": item.overdue,
            "level": item.escalation_level,
        }
        for item, dev, post_name, owner in rows
    ]


@router.get("/sites/{site_id}", summary="A site: live alerts and rectification items")
def site_page(request: Request, ctx: ContextDep, site_id: DbIdPath) -> Response:
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    if not caller.principal.may_see(site_id):
        return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
    with ctx.sessions() as session:
        site = session.get(Site, site_id)
        if site is None:
            return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
        items = _item_views(session, site_id)
        counts = wf.item_counts(session, site_id, now=ctx.clock())
        live = session.execute(
            select(func.count()).where(
                Alert.site_id == site_id, Alert.state != alert_service.RESOLVED
            )
        ).scalar_one()
        site_name, site_zone_name = site.name, site.timezone
        posts = [
            (p.id, p.name)
            for p in session.scalars(
                select(Post).where(Post.site_id == site_id).order_by(Post.name)
            )
        ]
    return _render(
        request,
        ctx,
        caller,
        "site.html",
        site_id=site_id,
        site_name=site_name,
        site_zone=site_zone_name,
        posts=posts,
        items=items,
        counts=counts,
        live_alerts=live,
        done=request.query_params.get("closed"),
        report_month=str(Month.containing(ctx.clock(), site_zone(site_zone_name))),
    )


@router.post("/items/{item_id}/close", summary="Close a rectification item with a note")
def close_item(
    request: Request,
    ctx: ContextDep,
    item_id: DbIdPath,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
    note: Annotated[str, Form(max_length=wf.MAX_NOTE_CHARS)] = "",
) -> Response:
    """Resolve the item through the workflow (an open item is started first), actor = caller."""
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    refusal = _csrf_refusal(ctx, caller, csrf)
    if refusal is not None:
        return _page_error(request, refusal, caller=caller)
    now = ctx.clock()
    try:
        with ctx.sessions() as session, session.begin():
            item = session.get(RectificationItem, item_id)
            if item is None or not caller.principal.may_see(item.site_id):
                raise wf.NotFoundError(f"no rectification item {item_id}")
            site_id = item.site_id
            if not note.strip():
                raise wf.InvalidInput("closing an item needs a note saying what was done")
            if item.status == wf.Status.OPEN.value:
                wf.transition(
                    session, item_id, wf.Action.START, actor_id=caller.principal.user_id, now=now
                )
            wf.transition(
                session,
                item_id,
                wf.Action.RESOLVE,
                actor_id=caller.principal.user_id,
                now=now,
                note=note,
            )
            wf.flush_lines(session, now=now, enabled=ctx.settings.influx_enabled)
    except wf.NotFoundError as exc:
        return _page_error(request, not_found(str(exc)), caller=caller)
    except wf.InvalidTransition as exc:
        return _page_error(request, conflict(str(exc)), caller=caller)
    except wf.WorkflowError as exc:
        return _page_error(request, invalid(str(exc), location="body"), caller=caller)
    return RedirectResponse(f"/console/sites/{site_id}?closed={item_id}", status_code=303)


# ---------------------------------------------------------------- posts: the current shift


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def shift_view(session: Session, post: Post, *, now: datetime) -> dict[str, Any] | None:
    """The post's shift running at ``now``, scored live by the compliance engine, or None.

    Rounds whose window has closed are counted (completed, partial, missed; late and
    missed checkpoints named); the next due round is the first whose window is still
    open. The same engine and inputs as the stored scores, so the page agrees with them.
    """
    row = session.scalars(
        select(ComplianceShift)
        .where(
            ComplianceShift.post_id == post.id,
            ComplianceShift.cancelled_at.is_(None),
            ComplianceShift.start_at <= now,
            ComplianceShift.end_at > now,
        )
        .order_by(ComplianceShift.start_at.desc(), ComplianceShift.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    data = compliance_store.load_input(session, row, compliance_store.default_hooks())
    score = score_shift(data, as_of=now)
    names = {
        cp.id: cp.name
        for cp in session.scalars(select(Checkpoint).where(Checkpoint.post_id == post.id))
    }
    plan_names = {p.plan_id: p.name for p in data.targets.plans}
    rounds: list[dict[str, Any]] = [
        {
            "plan": plan_names.get(r.plan_id, f"plan {r.plan_id}"),
            "number": r.index + 1,
            "start": r.start,
            "status": r.status,
            "late": [names.get(c, f"checkpoint {c}") for c in r.late],
            "missed": [names.get(c, f"checkpoint {c}") for c in r.missed],
        }
        for r in sorted(score.rounds, key=lambda r: (r.start, r.plan_id))
    ]
    upcoming = sorted(
        (slot.start, slot.due, plan_names.get(slot.plan_id, ""), slot.index + 1)
        for plan in data.targets.plans
        for slot in expected_rounds(plan, data.targets.timezone, data.shift.start, data.shift.end)
        if _aware(slot.closes) > now
    )
    guard = session.get(Guard, row.guard_id)
    return {
        "guard": guard.name if guard is not None else f"guard {row.guard_id}",
        "device": f"{row.device_id:08x}",
        "start": _aware(row.start_at),
        "end": _aware(row.end_at),
        "score": score.score,
        "done": score.rounds_with("completed"),
        "counted": len(rounds),
        "pending": score.pending_rounds,
        "late_checkpoints": sum(len(r.late) for r in score.rounds),
        "rounds": rounds,
        "next": (
            {
                "start": upcoming[0][0],
                "due": upcoming[0][1],
                "plan": upcoming[0][2],
                "number": upcoming[0][3],
            }
            if upcoming
            else None
        ),
        "equipment": score.equipment_readiness,
    }


@router.get("/posts/{post_id}", summary="A post's current shift: rounds, next due, late")
def post_page(request: Request, ctx: ContextDep, post_id: DbIdPath) -> Response:
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    now = ctx.clock()
    with ctx.sessions() as session:
        post = session.get(Post, post_id)
        if post is None or not caller.principal.may_see(post.site_id):
            return _page_error(request, not_found(f"no post {post_id}"), caller=caller)
        site = session.get(Site, post.site_id)
        assert site is not None
        shift = shift_view(session, post, now=now)
        values = {
            "post_name": post.name,
            "site_id": site.id,
            "site_name": site.name,
            "site_zone": site.timezone,
        }
    return _render(request, ctx, caller, "post.html", shift=shift, now=now, **values)


# ---------------------------------------------------------------- the monthly report


@router.get("/sites/{site_id}/reports/{month}.{fmt}", summary="Download the monthly report")
def report_download(
    request: Request,
    ctx: ContextDep,
    site_id: DbIdPath,
    month: Annotated[str, PathParam(pattern=r"^\d{4}-\d{2}$")],
    fmt: Annotated[Literal["pdf", "csv"], PathParam()],
) -> Response:
    """The same report as ``GET /api/v1/sites/{id}/reports/{month}.{fmt}``, with the cookie."""
    caller = authorise(request, ctx, CONSOLE_ROLES)
    if isinstance(caller, Response):
        return caller
    if not caller.principal.may_see(site_id):
        return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
    with ctx.sessions() as session:
        site = session.get(Site, site_id)
        if site is None:
            return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
        try:
            chosen = Month.parse(month)
        except PeriodError as exc:
            return _page_error(request, invalid(str(exc), field="month"), caller=caller)
        report = collect(session, site_id=site.id, month=chosen, now=ctx.clock())
    name = f"site-{site_id}-{chosen}"
    body, media = (
        (render_pdf(report), "application/pdf")
        if fmt == "pdf"
        else (render_csv(report), "text/csv; charset=utf-8")
    )
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


# ---------------------------------------------------------------- device health (technicians)


def _latest_body(session: Session, device_pk: int, kind: int) -> dict[str, Any] | None:
    row = session.scalars(
        select(Event)
        .where(Event.device_pk == device_pk, Event.kind == kind)
        .order_by(Event.device_time.desc(), Event.id.desc())
        .limit(1)
    ).first()
    return dict(row.body) if row is not None else None


@router.get("/sites/{site_id}/devices", summary="Device health: battery, last seen, firmware")
def devices_page(request: Request, ctx: ContextDep, site_id: DbIdPath) -> Response:
    """The site's devices: last heard (server receipt), battery (last heartbeat), firmware
    (last boot frame). For technicians and supervisors of the site, and admins."""
    caller = authorise(request, ctx, DEVICE_ROLES)
    if isinstance(caller, Response):
        return caller
    if not caller.principal.may_see(site_id):
        return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
    with ctx.sessions() as session:
        site = session.get(Site, site_id)
        if site is None:
            return _page_error(request, not_found(f"no site {site_id}"), caller=caller)
        rows = []
        for device in session.scalars(
            select(Device).where(Device.site_id == site_id).order_by(Device.kind, Device.device_id)
        ):
            last_seen = session.execute(
                select(func.max(Event.received_at)).where(Event.device_pk == device.id)
            ).scalar_one()
            beat = _latest_body(session, device.id, HEARTBEAT_KIND)
            boot = _latest_body(session, device.id, BOOT_KIND)
            rows.append(
                {
                    "kind": device.kind,
                    "id": f"{device.device_id:08x}",
                    "label": device.label,
                    "revoked": device.revoked_at is not None,
                    "last_seen": local_time(last_seen, site.timezone) if last_seen else None,
                    "battery": beat.get("battery_pct") if beat else None,
                    "firmware": (
                        f"{boot.get('fw_major')}.{boot.get('fw_minor')}.{boot.get('fw_patch')}"
                        if boot
                        else None
                    ),
                }
            )
        name = site.name
    return _render(
        request, ctx, caller, "devices.html", site_id=site_id, site_name=name, devices=rows
    )
