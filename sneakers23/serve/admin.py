"""The admin dashboard, its own Serve application (`admin`, route /admin, one replica): the shop's
staff log in, watch the drop live and act on it. Shoppers' traffic never waits behind it, and it
never waits behind theirs.

- `/admin/login`: the admin password (SNEAKERS23_ADMIN_PASSWORD), checked in constant time; failed
  logins are written to the audit and, past `admin_failed_logins_per_minute` from one address,
  refused with 429 for a wait that doubles with each further failure (domain/admin.py `login_wait`):
  an attacker's address is held, never the staff at theirs.
- `/admin`: the dashboard, for a signed, expiring session; its socket (`/admin/socket`) needs the
  signed token the page carries, and every action needs the session's CSRF token.
- `/admin/actions`: release now, schedule or cancel a release, restock a size, through the
  inventory API; each is written to the audit (`/admin/audit`), however it went.
With no password set, every admin page says the dashboard is off, and how to turn it on.
"""


import asyncio
import json
import logging
import math
import time
from datetime import datetime, timedelta, timezone

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from ray import serve

from sneakers23 import assembly
from sneakers23.cluster import ON_HEAD_NODE
from sneakers23.domain.admin import (LOGIN_LOOKBACK, FailedLogin, admin_name, locks_everyone, login_wait,
                                     parse_action)
from sneakers23.errors import DatabaseUnavailable, SchemaMissing
from sneakers23.serve.admin_gate import LOGIN_COOKIE, SESSION_COOKIE, AdminGate, AdminSession
from sneakers23.serve.replica import BACKPRESSURE, QUIET, READY_WAIT_S, deployment_settings
from sneakers23.serve.channels import ChannelHub
from sneakers23.serve.guards import (NO_STORE, RETRY_AFTER_S, behind_tls, form_fields, install_door, json_error,
                                     read_body, tune_replica_server)
from sneakers23.serve.dashboard import ADMIN_SCOPE_KEY, DashboardChannels
from sneakers23.serve.render import admin_login_page, admin_off_page, dashboard_page
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

ROUTE = "/admin"
DASHBOARD = "/admin/"  # (a request for /admin is sent here, by a relative redirect)
FAILURES_FRESH_S = 1.0
THROTTLED = {"address": "from your address", "name": "under this name", "everyone": "from everywhere"}
AUDIT_SHOWN = 30
# What the staff are told while the database is away (the desk degrades: an empty audit, a
# login that waits; an action or an audit read asked for is answered 503).
DATABASE_AWAY = "The store's database is away: try again in a moment"
OFF_MESSAGE = ("The admin dashboard is off: set SNEAKERS23_ADMIN_PASSWORD (in the environment or in "
               "sneakers23.env) and restart the store")

admin_api = FastAPI(title="Sneakers23 admin", docs_url=None, redoc_url=None, openapi_url=None,
                    redirect_slashes=False)
install_door(admin_api, root_redirect=DASHBOARD)  # (and /admin → /admin/, by a relative redirect)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@serve.deployment(ray_actor_options={"num_cpus": 0, "resources": ON_HEAD_NODE}, max_ongoing_requests=1_000,
                  max_queued_requests=100, backpressure_config=BACKPRESSURE, logging_config=QUIET)
@serve.ingress(admin_api)
class AdminDesk:
    async def __init__(self, settings: Settings):
        tune_replica_server(settings)
        self.settings = settings
        self.gate = AdminGate(settings.admin_password, settings.secret_key, settings.admin_session_hours)
        # Actions go through the inventory API (committed, then published); no purchases here.
        self.inventory = assembly.cluster_inventory(settings, through_sales=False)
        self.live = assembly.live_catalog(settings)
        self.dashboards = DashboardChannels(self.live, assembly.dashboard_feeds(), self.inventory.figures_async,
                                            self.inventory.draw_figures_async)
        self.hub = ChannelHub(self.live, [self.dashboards])
        self.live.start()
        # Logins take turns: the throttle's count, the password's check and the failure's record
        # are one step, so that attempts sent at once cannot all read a count below the limit.
        self._logins = asyncio.Lock()
        # Sessions logged out (one desk per cluster holds them; the audit keeps them over restarts).
        self._revoked: set[str] = set()
        self._revoked_loaded = False
        # The login throttle's failures, as the audit holds them: read again at most once a second
        # (an unlock from the command line shows within a second), so that a flood of attempts
        # from a held address costs no database read each.
        self._failures: list[FailedLogin] = []
        self._failures_read_at = -math.inf
        await self.live.wait_ready(READY_WAIT_S)

    async def _revoked_sessions(self) -> set[str]:
        if not self._revoked_loaded and self.gate.on:
            since = datetime.now(timezone.utc) - timedelta(seconds=self.gate.session_s)
            self._revoked |= await asyncio.to_thread(self.inventory.sessions_logged_out, since)
            self._revoked_loaded = True
        return self._revoked

    async def _recent_failures(self) -> list[FailedLogin]:
        if time.monotonic() - self._failures_read_at >= FAILURES_FRESH_S:
            self._failures = await asyncio.to_thread(self.inventory.failed_logins, LOGIN_LOOKBACK)
            self._failures_read_at = time.monotonic()
        return self._failures

    async def _session(self, request: Request) -> AdminSession | None:
        session = self.gate.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        try:
            revoked = await self._revoked_sessions()
        except (DatabaseUnavailable, SchemaMissing):
            return None  # (cannot tell whether it was logged out: log in again once it is back)
        return None if session.sid in revoked else session

    # --- logging in and out ---

    @admin_api.get("/login", response_class=HTMLResponse)
    async def login_form(self, request: Request):
        if not self.gate.on:
            return HTMLResponse(admin_off_page(OFF_MESSAGE), status_code=404, headers=NO_STORE)
        return self._login_page(request, None, 200)

    def _login_page(self, request: Request, message: str | None, status: int, headers: dict | None = None):
        nonce, field = self.gate.login_nonce()
        response = HTMLResponse(admin_login_page(field, message), status_code=status, headers={**NO_STORE, **(headers or {})})
        response.set_cookie(LOGIN_COOKIE, nonce, path=ROUTE, httponly=True, samesite="strict",
                            secure=behind_tls(request.scope))
        return response

    @admin_api.post("/login", response_class=HTMLResponse)
    async def login(self, request: Request):
        if not self.gate.on:
            return HTMLResponse(admin_off_page(OFF_MESSAGE), status_code=404, headers=NO_STORE)
        form = form_fields(await read_body(request))
        if not self.gate.login_form_ok(request.cookies.get(LOGIN_COOKIE), form.get("form_token")):
            return self._login_page(request, "This login form has expired: log in again", 403)
        who, client = admin_name(form.get("who")), _client(request)
        limit = self.settings.admin_failed_logins_per_minute
        try:
            async with self._logins:
                failures = await self._recent_failures()
                wait, scope = login_wait(failures, client, who, limit, datetime.now(timezone.utc))
                if wait:
                    return self._login_page(request, f"Too many failed logins {THROTTLED[scope]}: try again in "
                                            f"{wait} s", 429, {"Retry-After": str(wait)})
                if not self.gate.password_matches(form.get("password")):
                    await asyncio.to_thread(self.inventory.record_login, who, False, "wrong password", client)
                    now = datetime.now(timezone.utc)
                    self._failures.append(FailedLogin(now, client, who))
                    if locks_everyone(self._failures, limit, now) and \
                            not locks_everyone(self._failures[:-1], limit, now):  # (the last resort begins: audited)
                        await asyncio.to_thread(self.inventory.record_lock, len(self._failures))
                    return self._login_page(request, "Wrong password", 401)
            await asyncio.to_thread(self.inventory.record_login, who, True, "logged in", client)
        except (DatabaseUnavailable, SchemaMissing) as error:
            log.warning("an admin login could not be checked: %s", error)
            return self._login_page(request, DATABASE_AWAY, 503,
                                    {"Retry-After": str(RETRY_AFTER_S)})
        response = RedirectResponse(DASHBOARD, status_code=303, headers=NO_STORE)
        response.set_cookie(SESSION_COOKIE, self.gate.open_session(who), max_age=self.gate.session_s, path=ROUTE,
                            httponly=True, samesite="strict", secure=behind_tls(request.scope))
        response.delete_cookie(LOGIN_COOKIE, path=ROUTE)
        return response

    @admin_api.post("/logout")
    async def logout(self, request: Request):
        """Ends the session for good (its cookie, and its socket's token, open nothing any more)."""
        session = await self._session(request)
        if session is None:
            return RedirectResponse(f"{ROUTE}/login", status_code=303, headers=NO_STORE)
        if not self.gate.csrf_ok(session, form_fields(await read_body(request)).get("csrf_token")):
            return json_error(403, "csrf", "this form is missing its CSRF token: reload the dashboard")
        self._revoked.add(session.sid)
        try:
            await asyncio.to_thread(self.inventory.record_logout, session.who, session.sid, _client(request))
        except (DatabaseUnavailable, SchemaMissing) as error:  # (revoked here until the desk restarts)
            log.warning("a logout could not be written to the audit: %s", error)
        await self.dashboards.close_session(session.sid)
        response = RedirectResponse(f"{ROUTE}/login", status_code=303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, path=ROUTE)
        return response

    # --- the dashboard ---

    @admin_api.get("/", response_class=HTMLResponse)
    async def dashboard(self, request: Request):
        if not self.gate.on:
            return HTMLResponse(admin_off_page(OFF_MESSAGE), status_code=404, headers=NO_STORE)
        session = await self._session(request)
        if session is None:
            return RedirectResponse(f"{ROUTE}/login", status_code=303, headers=NO_STORE)
        try:
            audit = await asyncio.to_thread(self.inventory.admin_audit, AUDIT_SHOWN)
        except (DatabaseUnavailable, SchemaMissing):
            audit = []
        return HTMLResponse(dashboard_page(self.live.products(), session.who, session.csrf,
                                           self.gate.socket_token(session), [entry.view() for entry in audit]),
                            headers=NO_STORE)

    def _api_refusal(self, request: Request, session: AdminSession | None, needs_csrf: bool) -> Response | None:
        if not self.gate.on:
            return json_error(404, "off", OFF_MESSAGE)
        if session is None:
            return json_error(401, "unauthorized", "log in at /admin/login first")
        if needs_csrf and not self.gate.csrf_ok(session, request.headers.get("X-CSRF-Token")):
            return json_error(403, "csrf", "the X-CSRF-Token header is missing or wrong: reload the dashboard")
        return None

    @admin_api.post("/actions")
    async def act(self, request: Request):
        session = await self._session(request)
        refusal = self._api_refusal(request, session, needs_csrf=True)
        if refusal is not None:
            return refusal
        body = await read_body(request)
        try:
            action = parse_action(json.loads(body))
        except (ValueError, RecursionError) as error:  # (a JSONDecodeError is a ValueError; RecursionError: nested too deep)
            return json_error(400, "bad_request", str(error).splitlines()[0][:200])
        try:
            entry = await asyncio.to_thread(self.inventory.act, session.who, action, _client(request))
        except (DatabaseUnavailable, SchemaMissing) as error:
            log.warning("an admin action failed: %s", error)
            return json_error(503, "unavailable", DATABASE_AWAY)
        return JSONResponse({"ok": entry.ok, "message": entry.result, "entry": entry.view()},
                            status_code=200 if entry.ok else 409, headers=NO_STORE)

    @admin_api.get("/audit")
    async def audit(self, request: Request):
        refusal = self._api_refusal(request, await self._session(request), needs_csrf=False)
        if refusal is not None:
            return refusal
        try:
            entries = await asyncio.to_thread(self.inventory.admin_audit, AUDIT_SHOWN)
        except (DatabaseUnavailable, SchemaMissing):
            return json_error(503, "unavailable", DATABASE_AWAY)
        return JSONResponse([entry.view() for entry in entries], headers=NO_STORE)

    @admin_api.websocket("/socket/websocket")
    async def socket(self, websocket: WebSocket):
        """The dashboard's Phoenix socket: refused at the handshake without the page's valid token."""
        session, why = self.gate.socket_holder(websocket.query_params.get("token"))
        try:
            if session is not None and session.sid in await self._revoked_sessions():
                session, why = None, "expired_token"
        except (DatabaseUnavailable, SchemaMissing):
            session, why = None, "unavailable"
        if session is None:
            await websocket.close(code=1008, reason=why)  # (before accept: the handshake gets 403)
            return
        websocket.scope[ADMIN_SCOPE_KEY] = session
        await self.hub.serve(websocket)


def build_admin(args: dict):
    return AdminDesk.options(num_replicas=1).bind(deployment_settings(args))
