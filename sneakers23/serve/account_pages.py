"""The shoppers' account pages, part of the storefront (storefront.py mixes `AccountPages` in, and
includes `account_routes`): sign up, sign in and out, the account with its signed-in browsers, and
the pages an emailed link opens. Every step is the accounts service's (inventory/accounts.py);
here are the forms, the cookies and the words.

- Forms carry the shopper's form token, as the checkout's does (the front door refuses a cross-site
  post besides).
- Sign-up and sign-in cost a proof of work (serve/proof_of_work.py), and one client address may try
  `account_attempts_per_minute` of them a minute on a replica (429 with Retry-After past it).
- The session cookie is HttpOnly, SameSite=Lax, Secure behind TLS, and a new one at each sign-in
  (the browser's session before it, if any, is ended: a session id is never carried over).
- An emailed link opens a page with a button, and only the button's post uses the link: a mail
  scanner that fetches every link in a letter must not use it up.
- At sign-in (and when the address is verified), the cart filled before joins the account's.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sneakers23.domain.accounts import (MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, RESET_LINK_LIFETIME, SESSION_LIFETIME,
                                        account_shopper_id, shops_as_account)
from sneakers23.errors import DatabaseUnavailable, SchemaMissing
from sneakers23.inventory.accounts import AccountRefused
from sneakers23.serve.guards import NO_STORE, behind_tls, form_fields, read_body
from sneakers23.serve.http import page_error
from sneakers23.serve.proof_of_work import FIELD
from sneakers23.serve.render import page
from sneakers23.serve.shoppers import FORM_TOKEN_FIELD, SESSION_COOKIE, Visitor

log = logging.getLogger(__name__)

account_routes = APIRouter()

AWAY = "Accounts cannot be reached right now: try again in a moment"
FORM_EXPIRED = "This form is out of date: it is shown again, send it once more"
SESSION_MAX_AGE_S = int(SESSION_LIFETIME.total_seconds())
MAX_TOKEN_CHARS = 64


def _token(value: object) -> str | None:
    """A link's token as it came (43 URL-safe characters when it is ours); None when it cannot be."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TOKEN_CHARS:
        return None
    return value


class AccountPages:
    """Mixed into the storefront: it finds `self.inventory`, `self.sessions`, `self.form_tokens`,
    `self.work` (the proof of work), `self.account_attempts` (the throttle per address),
    `self._visitor`, `self._minted` and `self._tab` there."""

    def _account_page(self, template: str, visitor: Visitor, status: int = 200, **context) -> HTMLResponse:
        shopper_id = visitor.cookie_shopper_id
        return HTMLResponse(page(template, form_token=self.form_tokens.issue(shopper_id) if shopper_id else "",
                                 min_password=MIN_PASSWORD_LENGTH, max_password=MAX_PASSWORD_LENGTH,
                                 reset_hours=int(RESET_LINK_LIFETIME.total_seconds() // 3600),
                                 signed_in=visitor.account, **context),
                            status_code=status, headers=NO_STORE)

    def _held(self, request: Request, template: str, visitor: Visitor, **context) -> HTMLResponse | None:
        """429, with Retry-After, for an address past its tries of the minute (sign-ups, sign-ins,
        letters asked for)."""
        wait_s = self.account_attempts.wait_s(_client(request), time.monotonic())
        if wait_s <= 0:
            return None
        response = self._account_page(template, visitor, 429, work_challenge=self._challenge(), **context,
                                      message=f"Too many tries from your address: try again in {math.ceil(wait_s)} s")
        response.headers["Retry-After"] = str(math.ceil(wait_s))
        return response

    def _challenge(self) -> str | None:
        return self.work.challenge() if self.work.on else None

    async def _form(self, request: Request, visitor: Visitor) -> dict[str, str] | None:
        """The posted form, when it carries this shopper's form token; None otherwise."""
        fields = form_fields(await read_body(request))
        shopper_id = visitor.cookie_shopper_id
        if shopper_id is None or not self.form_tokens.check(shopper_id, fields.get(FORM_TOKEN_FIELD)):
            return None
        return fields

    async def _proven_form(self, request: Request, template: str) -> tuple[Visitor, dict[str, str], HTMLResponse | None]:
        """A sign-up's or a sign-in's visitor and form, once the form passed the address's tries of
        the minute, the form token and the proof of work; else (…, the page saying which did not)."""
        visitor = await self._visitor(request)
        held = self._held(request, template, visitor)
        if held is not None:
            return visitor, {}, held
        fields = await self._form(request, visitor)
        if fields is None:
            return visitor, {}, self._form_page(template, visitor, 403, FORM_EXPIRED)
        unproven = self.work.refusal(fields.get(FIELD))
        if unproven is not None:
            return visitor, fields, self._form_page(template, visitor, 422, _capital(unproven), fields.get("email", ""))
        return visitor, fields, None

    def _form_page(self, template: str, visitor: Visitor, status: int, message: str, email: str = "") -> HTMLResponse:
        """A sign-up or sign-in form again, saying why, with a new proof of work to solve."""
        return self._account_page(template, visitor, status, message=message, email=email,
                                  work_challenge=self._challenge())

    def _signed_in_response(self, request: Request, location: str, session_token: str) -> Response:
        response = RedirectResponse(location, status_code=303, headers=NO_STORE)
        response.set_cookie(SESSION_COOKIE, self.sessions.cookie(session_token), max_age=SESSION_MAX_AGE_S,
                            httponly=True, samesite="lax", secure=behind_tls(request.scope))
        return response

    def _signed_out_response(self, location: str) -> Response:
        response = RedirectResponse(location, status_code=303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
        return response

    async def _merge_cart(self, visitor: Visitor, account) -> None:
        """The cart this browser filled anonymously joins the account's (its refusals are the
        rules at work, not errors; a failure leaves the anonymous cart where it was)."""
        if visitor.cookie_shopper_id and shops_as_account(account):
            try:
                await self.inventory.merge_carts_async(visitor.cookie_shopper_id, account_shopper_id(account.id))
            except Exception as error:  # (the sign-in stands: the cart stays, merged at the next)
                log.warning("a cart was not merged at sign-in: %s", error)

    async def _end_this_session(self, visitor: Visitor) -> None:
        if visitor.session_token is not None:
            await self.inventory.database.in_thread(self.inventory.sign_out, visitor.session_token)
            self.sessions.forget(visitor.session_token)

    # --- sign up ---

    @account_routes.get("/account/signup", response_class=HTMLResponse)
    async def signup_page(self, request: Request):
        visitor, cookie = await self._minted(request)
        return self._with_cookie(self._account_page("account_signup.html", visitor, work_challenge=self._challenge()),
                                 request, cookie)

    @account_routes.post("/account/signup", response_class=HTMLResponse)
    async def signup(self, request: Request):
        visitor, fields, refused_page = await self._proven_form(request, "account_signup.html")
        if refused_page is not None:
            return refused_page
        email = fields.get("email", "")
        try:
            made = await self.inventory.sign_up_async(email, fields.get("password", ""), _client(request),
                                                      request.headers.get("user-agent", ""), visitor.session_token)
        except AccountRefused as refused:
            return self._form_page("account_signup.html", visitor, 422, _sentence(refused), email)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        self.sessions.forget(visitor.session_token)
        return self._signed_in_response(request, "/account?welcome=1", made.session_token)

    # --- sign in and out ---

    @account_routes.get("/account/login", response_class=HTMLResponse)
    async def login_page(self, request: Request):
        visitor, cookie = await self._minted(request)
        note = {"reset": "Your password is changed, and every device was signed out: sign in with the new one",
                "out": "You are signed out on every device"}.get(request.query_params.get("done", ""))
        return self._with_cookie(self._account_page("account_login.html", visitor, note=note,
                                                    work_challenge=self._challenge()), request, cookie)

    @account_routes.post("/account/login", response_class=HTMLResponse)
    async def login(self, request: Request):
        visitor, fields, refused_page = await self._proven_form(request, "account_login.html")
        if refused_page is not None:
            return refused_page
        email = fields.get("email", "")
        try:
            signed = await self.inventory.sign_in_async(email, fields.get("password", ""), _client(request),
                                                        request.headers.get("user-agent", ""), visitor.session_token)
        except AccountRefused as refused:
            return self._form_page("account_login.html", visitor, 401, _sentence(refused), email)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        self.sessions.forget(visitor.session_token)  # (ended: a new session id at every sign-in)
        await self._merge_cart(visitor, signed.account)
        return self._signed_in_response(request, "/", signed.session_token)

    @account_routes.get("/account/logout", response_class=HTMLResponse)
    async def logout_page(self, request: Request):
        visitor, cookie = await self._minted(request)
        return self._with_cookie(self._account_page("account_logout.html", visitor), request, cookie)

    @account_routes.post("/account/logout")
    async def logout(self, request: Request):
        visitor = await self._visitor(request)
        if await self._form(request, visitor) is None:
            return self._account_page("account_logout.html", visitor, 403, message=FORM_EXPIRED)
        try:
            await self._end_this_session(visitor)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        return self._signed_out_response("/")

    # --- the account ---

    @account_routes.get("/account", response_class=HTMLResponse)
    async def account(self, request: Request):
        visitor, cookie = await self._minted(request)
        if visitor.account is None:
            return self._with_cookie(RedirectResponse("/account/login", status_code=303, headers=NO_STORE),
                                     request, cookie)
        try:
            sessions = await self.inventory.database.in_thread(self.inventory.sessions, visitor.account.id,
                                                               visitor.session_token)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        note = {"1": "Welcome! We sent you a letter: follow its link to confirm your address",
                "sent": "We sent you another letter: follow its link to confirm your address"}.get(
                    request.query_params.get("welcome", ""))
        return self._with_cookie(self._account_page("account.html", visitor, sessions=sessions, note=note,
                                                    tab=self._tab(visitor)), request, cookie)

    @account_routes.post("/account/sessions/end")
    async def sign_out_everywhere(self, request: Request):
        visitor = await self._visitor(request)
        if await self._form(request, visitor) is None or visitor.account is None:
            return page_error(403, FORM_EXPIRED)
        try:
            await self.inventory.database.in_thread(self.inventory.sign_out_everywhere, visitor.account.id)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        self.sessions.forget(visitor.session_token)
        return self._signed_out_response("/account/login?done=out")

    @account_routes.post("/account/verify/again")
    async def send_verification(self, request: Request):
        visitor = await self._visitor(request)
        if await self._form(request, visitor) is None or visitor.account is None:
            return page_error(403, FORM_EXPIRED)
        held = self._held(request, "account_verify.html", visitor, token=None)
        if held is not None:
            return held
        try:
            await self.inventory.database.in_thread(self.inventory.send_verification, visitor.account.id)
        except AccountRefused as refused:  # (the account went meanwhile)
            return page_error(410, _sentence(refused))
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        return RedirectResponse("/account?welcome=sent", status_code=303, headers=NO_STORE)

    # --- the links in letters ---

    @account_routes.get("/account/verify", response_class=HTMLResponse)
    async def verify_page(self, request: Request):
        visitor, cookie = await self._minted(request)
        token = _token(request.query_params.get("token"))
        return self._with_cookie(self._account_page("account_verify.html", visitor, token=token), request, cookie)

    @account_routes.post("/account/verify", response_class=HTMLResponse)
    async def verify(self, request: Request):
        visitor = await self._visitor(request)
        fields = await self._form(request, visitor)
        token = _token(fields.get("token")) if fields is not None else None
        if fields is None or token is None:
            return self._account_page("account_verify.html", visitor, 403, token=token, message=FORM_EXPIRED)
        try:
            account = await self.inventory.database.in_thread(self.inventory.verify_email, token)
        except AccountRefused as refused:
            return self._account_page("account_verify.html", visitor, 410, token=None, message=_sentence(refused))
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        if visitor.account is not None and visitor.account.id == account.id:
            self.sessions.forget(visitor.session_token)  # (it shops under the account from now on)
            await self._merge_cart(visitor, account)
        return self._account_page("account_verify.html", visitor, token=None, verified=account)

    @account_routes.get("/account/reset", response_class=HTMLResponse)
    async def reset_page(self, request: Request):
        visitor, cookie = await self._minted(request)
        token = _token(request.query_params.get("token"))
        return self._with_cookie(self._account_page("account_reset.html", visitor, token=token), request, cookie)

    @account_routes.post("/account/reset", response_class=HTMLResponse)
    async def reset(self, request: Request):
        visitor = await self._visitor(request)
        fields = await self._form(request, visitor)
        if fields is None:
            return self._account_page("account_reset.html", visitor, 403, token=None, message=FORM_EXPIRED)
        token = _token(fields.get("token"))
        if token is None:  # (asking for a letter costs a try, as a sign-in does)
            held = self._held(request, "account_reset.html", visitor, token=None)
            if held is not None:
                return held
        try:
            if token is None:  # asked for a link: the same answer whether the address has an account
                await self.inventory.database.in_thread(self.inventory.ask_password_reset, fields.get("email", ""))
                return self._account_page("account_reset.html", visitor, token=None, sent=True)
            await self.inventory.database.in_thread(self.inventory.reset_password, token, fields.get("password", ""))
        except AccountRefused as refused:
            return self._account_page("account_reset.html", visitor, 422, token=token, message=_sentence(refused))
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, AWAY)
        self.sessions.forget(visitor.session_token)
        return self._signed_out_response("/account/login?done=reset")


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _sentence(refused: AccountRefused) -> str:
    return _capital(str(refused))


def _capital(said: str) -> str:
    return said[:1].upper() + said[1:]
