"""The storefront, one of the store's three Serve applications (`store`, route /): the catalog
page, static files, the JSON API, purchases, checkout and the shopper's orders. Short requests,
on replicas of their own that no socket can starve (the sockets are in sockets.py, the admin desk
in admin.py).

Every page is read from the node's live catalog (memory); purchases go to the database through the
inventory API, and checkout through sneakers23/checkout.py. `build_store` is the import path of the
Serve config file.
"""


import json
import logging
import math
import re
import time
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
import ray
from ray import serve

from sneakers23 import assembly
from sneakers23.checkout import Checkout
from sneakers23.db.engine import QueryCounter
from sneakers23.domain.checkout import CHECKOUT_MESSAGES, CheckoutRefusal, Refused
from sneakers23.domain.ids import parse_id
from sneakers23.domain.throttle import Throttle
from sneakers23.domain.levels import Level
from sneakers23.domain.purchases import MAX_UNITS_PER_PURCHASE, PurchaseResult, Refusal, orders_of, signed_in
from sneakers23.domain.shopper_events import SessionsToCheck
from sneakers23.domain.views import product_view
from sneakers23.errors import DatabaseUnavailable, SchemaMissing
from sneakers23.serve.account_pages import AccountPages, account_routes
from sneakers23.serve.guards import NO_STORE, behind_tls, install_door, json_error, read_body, tune_replica_server
from sneakers23.serve.http import REFUSAL_STATUS, error_json, error_page, opening_page, page_error
from sneakers23.serve.placement import on_every_node
from sneakers23.serve.proof_of_work import FIELD, ProofsOfWork
from sneakers23.serve.render import CART_MARKER, STATIC, catalog_page, checkout_page, complete_page, orders_page
from sneakers23.serve.replica import BACKPRESSURE, QUIET, READY_WAIT_S, deployment_settings
from sneakers23.serve.shoppers import (COOKIE, FORM_TOKEN_FIELD, FORM_TOKEN_HEADER, MAX_AGE_S, RENEW_AFTER_S,
                                       SESSION_COOKIE, CartTokens, FormTokens, ShopperCookies, SignedInShoppers, Visitor)
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

PAGE_REQUESTS_PER_REPLICA = 256
CART_CATCH_UP_S = 2.0  # how long the checkout page waits for the shopper's own cart change to reach this node
MAX_ENTRY_BYTES = 2_048  # a draw entry's body: its proof of work (at most 1,024 characters) in JSON

store_api = FastAPI(title="Sneakers23", docs_url=None, redoc_url=None, openapi_url=None)
store_api.mount("/static", StaticFiles(directory=STATIC), name="static")
install_door(store_api)
store_api.include_router(account_routes)  # (the account's pages: serve/account_pages.py)


async def _checkout_form(request: Request) -> tuple[int, list[int], str] | None:
    """The cart version, sizes and form token a checkout form posts; None when it is malformed
    (BodyRefused when the body itself is refused)."""
    body = await read_body(request)
    try:
        form = parse_qs(body.decode(), strict_parsing=False)
        version_field = form.get("version", [""])[0]
        form_token = form.get(FORM_TOKEN_FIELD, [""])[0]
        item_ids = [parse_id(part) for part in form.get("item_ids", [""])[0].split(",") if part]
    except (UnicodeDecodeError, ValueError):
        return None
    if not re.fullmatch(r"[0-9]{1,15}", version_field) or len(item_ids) > MAX_UNITS_PER_PURCHASE or \
            any(not i for i in item_ids):  # (None, or 0)
        return None
    version = int(version_field)
    return version, item_ids, form_token



def _json_field(body: bytes, name: str) -> object:
    """A field of a JSON object body; None for any other body. (Defined before the deployment:
    Serve takes the class, with the globals its methods use, as the decorator runs.)"""
    try:
        parsed = json.loads(body or b"null")
    except (UnicodeDecodeError, ValueError, RecursionError):  # (RecursionError: a thousand nested brackets)
        return None
    return parsed.get(name) if isinstance(parsed, dict) else None



@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=PAGE_REQUESTS_PER_REPLICA,
                  max_queued_requests=2 * PAGE_REQUESTS_PER_REPLICA, backpressure_config=BACKPRESSURE,
                  logging_config=QUIET)
@serve.ingress(store_api)
class Storefront(AccountPages):
    async def __init__(self, settings: Settings):
        tune_replica_server(settings)
        # A sale is committed before it is published: the shopper does not wait for replication.
        # (The store's own replicas publish to its own replication: no database check needed.)
        # Purchases go to the product's sales actor, found from this node's catalog.
        self.inventory = assembly.cluster_inventory(settings, product_of=self._product_of)
        self._queries = QueryCounter(self.inventory.engine)
        self.refused_at_edge = 0
        self.live = assembly.live_catalog(settings)  # this node's catalog, in memory
        self.sessions = SignedInShoppers(settings.secret_key, self.inventory.session_account_async)
        self.live.subscribe(self._sessions_to_check)  # (an account changed, on any node)
        self.live.start()
        self.cookies = ShopperCookies(settings.secret_key)
        self.cart_tokens = CartTokens(settings.secret_key)
        self.form_tokens = FormTokens(settings.secret_key)
        self.work = ProofsOfWork(settings.secret_key, settings.proof_of_work_max_number)
        self.account_attempts = Throttle(settings.account_attempts_per_minute)
        self.entry_work = ProofsOfWork(settings.secret_key, settings.entry_proof_of_work_max_number, purpose="entry")
        self.entry_attempts = Throttle(settings.entries_per_address_per_hour, window_s=3600)
        self.queue_work = ProofsOfWork(settings.secret_key, settings.entry_proof_of_work_max_number, purpose="queue")
        self.checkout = Checkout(self.live, self.inventory)
        self.node_id = ray.get_runtime_context().get_node_id()
        # Rendered once per catalog generation, around the place of the shopper's own cart token.
        self._page: tuple[int, bytes, bytes] = (-1, b"", b"")
        await self.live.wait_ready(READY_WAIT_S)

    def _sessions_to_check(self, events) -> None:
        for event in events:
            if isinstance(event, SessionsToCheck):
                self.sessions.forget_account(event.account_id)

    def _catalog_html(self, visitor: Visitor) -> bytes:
        generation = self.live.generation
        if self._page[0] != generation:
            before, _marker, after = catalog_page(self.live.products()).encode().partition(CART_MARKER.encode())
            self._page = (generation, before, after)
        shopper_id = visitor.shopper_id
        mine = (f'data-cart-id="{shopper_id}" data-cart-token="{self.cart_tokens.issue(shopper_id, visitor.cart_binding)}" '
                f'data-form-token="{self.form_tokens.issue(shopper_id)}"').encode()
        return self._page[1] + mine + self._page[2]

    def _tab(self, visitor: Visitor) -> dict | None:
        """What a page without the cart panel carries so that its tab still counts as the shopper's
        (its socket joins the cart channel, with the page it shows): presence, on the dashboard."""
        shopper_id = visitor.shopper_id
        return None if shopper_id is None else {
            "id": shopper_id, "token": self.cart_tokens.issue(shopper_id, visitor.cart_binding)}

    def _form_token(self, shopper_id: str | None) -> str | None:
        return None if shopper_id is None else self.form_tokens.issue(shopper_id)

    async def _visitor(self, request: Request) -> Visitor:
        """The request's shopper (its cookie's), and the account it is signed in to."""
        return Visitor(self.cookies.read(request.cookies.get(COOKIE)), *await self._session(request))

    async def _session(self, request: Request):
        """(the account the request's session cookie is signed in to, its session token): (None,
        None) for none."""
        token = self.sessions.token(request.cookies.get(SESSION_COOKIE))
        account = await self.sessions.account(token) if token is not None else None
        return account, token if account else None

    async def _minted(self, request: Request) -> tuple[Visitor, str | None]:
        """The visitor, with a shopper cookie made for one who has none (a first visit): (the
        visitor, the cookie to set, or None)."""
        shopper_id, age_s = self.cookies.read_with_age(request.cookies.get(COOKIE))
        cookie = None
        if shopper_id is None:
            shopper_id, cookie = self.cookies.new()
        elif age_s > RENEW_AFTER_S:  # a shopper who comes back keeps their cart
            cookie = self.cookies.sign(shopper_id)
        return Visitor(shopper_id, *await self._session(request)), cookie

    @staticmethod
    def _with_cookie(response, request: Request, cookie: str | None):
        if cookie is not None:
            response.set_cookie(COOKIE, cookie, max_age=MAX_AGE_S, httponly=True, samesite="lax",
                                secure=behind_tls(request.scope))
        return response

    @store_api.get("/", response_class=HTMLResponse)
    async def catalog(self, request: Request):
        if not self.live.ready:
            return opening_page()
        visitor, cookie = await self._minted(request)
        return self._with_cookie(HTMLResponse(self._catalog_html(visitor), headers=NO_STORE),
                                 request, cookie)

    # --- checkout (the cart is in the database; pages read this node's copy of it) ---

    @store_api.get("/checkout", response_class=HTMLResponse)
    async def checkout(self, request: Request, seen: int | None = Query(default=None, alias="cart", ge=0, le=2 ** 53)):
        """The cart to buy. `?cart=VERSION` (the version the shopper's page showed, store.js): the page
        waits up to CART_CATCH_UP_S for this node's copy to have it."""
        if not self.live.ready:
            return opening_page()
        visitor = await self._visitor(request)
        shopper_id = visitor.shopper_id
        if shopper_id and seen:
            cart = await self.live.cart_seen(shopper_id, seen, CART_CATCH_UP_S)
        else:
            cart = self.live.cart(shopper_id) if shopper_id else None
        lines = self.live.cart_lines(cart) if cart else []
        message = CHECKOUT_MESSAGES[CheckoutRefusal.EMPTY] if not lines else None
        return HTMLResponse(checkout_page(lines, cart.version if cart else 0, message, self._tab(visitor),
                                          self._form_token(shopper_id)),
                            headers=NO_STORE)

    @store_api.post("/checkout", response_class=HTMLResponse)
    async def purchase_cart(self, request: Request):
        """Buy the cart the checkout page showed (sneakers23/checkout.py)."""
        visitor = await self._visitor(request)
        shopper_id = visitor.shopper_id
        if shopper_id is None:
            return page_error(401, "Open the shop first: your browser sent no shopper cookie")
        if not self.live.ready:
            return opening_page()
        form = await _checkout_form(request)
        if form is None:
            return page_error(400, "This checkout form is not valid: open the checkout page again")
        version, item_ids, form_token = form
        if not self.form_tokens.check(shopper_id, form_token):
            return page_error(403, "This checkout form is not from this shop: open the checkout page again")
        try:
            outcome = await self.checkout.buy(shopper_id, version, item_ids)
        except Exception as error:
            return error_page(error)
        if isinstance(outcome, Refused):
            cart = outcome.cart or self.live.cart(shopper_id)
            return HTMLResponse(checkout_page(self.live.cart_lines(cart), cart.version, outcome.message,
                                              self._tab(visitor), self._form_token(shopper_id)),
                                status_code=409, headers=NO_STORE)
        return HTMLResponse(complete_page(self.live.lines(outcome.item_ids), self._tab(visitor)), headers=NO_STORE)

    @store_api.get("/orders", response_class=HTMLResponse)
    async def orders(self, request: Request):
        """The shopper's orders: the one page read from the database (a shopper's own history,
        not what the crowd reads)."""
        visitor = await self._visitor(request)
        shopper_id = visitor.shopper_id
        if shopper_id is None:
            return HTMLResponse(orders_page([]), headers=NO_STORE)
        try:
            pairs = await self.inventory.orders_async(shopper_id)
        except (DatabaseUnavailable, SchemaMissing):
            return page_error(503, "Your orders cannot be shown right now: try again in a moment")
        return HTMLResponse(orders_page([(order, self.live.lines(order.item_ids)) for order in orders_of(pairs)],
                                        self._tab(visitor)),
                            headers=NO_STORE)

    @store_api.get("/api/products")
    async def products(self):
        if not self.live.ready:
            return json_error(503, "starting", "the store is opening: try again in a moment")
        return JSONResponse([product_view(product) for product in self.live.products()], headers=NO_STORE)

    def _product_of(self, item_id: int) -> int | None:
        item = self.live.item(item_id)
        return None if item is None else item.product_id

    async def stats(self) -> dict:
        """What this replica did: purchases refused at the edge, and statements it sent to the
        database (`handle.broadcast("stats")` asks every replica)."""
        return {"node_id": self.node_id, "refused_at_edge": self.refused_at_edge, "queries": self._queries.count}

    @store_api.get("/healthz")
    async def healthz(self):
        if not self.live.ready:
            return json_error(503, "starting", "the node cache is not loaded yet")
        # The node tells ops (and a load balancer's logs) which node, and so which cache, answered.
        return JSONResponse({"status": "ok", "node_id": self.node_id, "changes_seen": self.live.changes_seen})

    async def _scripts_shopper(self, request: Request) -> str | JSONResponse:
        """The shopper of a page script's request that changes something: its cookie's (or its
        account's), with its page's form token in the header; else the JSON refusal to answer."""
        shopper_id = (await self._visitor(request)).shopper_id
        if shopper_id is None:
            return json_error(401, "no_shopper", "no valid shopper cookie: open the store page first")
        if not self.form_tokens.check(shopper_id, request.headers.get(FORM_TOKEN_HEADER)):
            return json_error(403, "csrf", f"the {FORM_TOKEN_HEADER} header is missing or wrong: it is the "
                                           "data-form-token of the store page")
        return shopper_id

    @store_api.post("/api/items/{item_id}/purchase")
    async def purchase(self, item_id: str, request: Request):
        shopper_id = await self._scripts_shopper(request)
        if not isinstance(shopper_id, str):
            return shopper_id  # (the refusal)
        if not self.live.ready:
            return json_error(503, "starting", "the store is opening: try again in a moment")
        parsed = parse_id(item_id)
        if parsed is None:
            return json_error(400, "bad_request", "an item id is 1 to 9 digits (0-9)")
        item = self.live.item(parsed)
        if item is None:
            return json_error(404, Refusal.UNKNOWN_ITEM, f"there is no item {parsed}")
        key = request.headers.get("Idempotency-Key")
        if key is None and item.level is Level.OUT:
            # Refused at the edge: no actor, no database. A stale "out" (just after a restock)
            # lasts at most the replication lag. A purchase with a key goes on: its earlier try
            # may be what sold the last pair, and the sales actor replays it.
            self.refused_at_edge += 1
            self.inventory.refused_from_memory("purchase", Refusal.SOLD_OUT)
            refused = PurchaseResult.refused(Refusal.SOLD_OUT, item.id)
            return json_error(REFUSAL_STATUS[Refusal.SOLD_OUT], str(Refusal.SOLD_OUT), refused.message)
        try:
            result = await self.inventory.purchase_async(shopper_id, [item.id], key)
        except Exception as error:
            return error_json(error)
        if not result.ok:
            return json_error(REFUSAL_STATUS[result.refusal], str(result.refusal), result.message)
        unit = result.units[0]
        return JSONResponse({"item_id": unit.item_id, "level": str(unit.level), "replayed": result.replayed,
                             "message": f"sold one pair of item {unit.item_id}"}, headers=NO_STORE)

    # --- draws (a product sold by draw: domain/draws.py) ---

    @store_api.get("/api/products/{product_id}/draw")
    async def draw(self, product_id: str, request: Request):
        """The product's draw: the commitment shown from the start, the record after the close
        (what `sneakers23 drop verify` checks; `?record=0` leaves it out, as the page asks), and the
        visitor's own entry, if any."""
        parsed = parse_id(product_id)
        if parsed is None:
            return json_error(400, "bad_request", "a product id is 1 to 9 digits (0-9)")
        visitor = await self._visitor(request)
        try:
            view = await self.inventory.draw_for_shopper_async(parsed, visitor.shopper_id,
                                                               request.query_params.get("record") != "0")
        except Exception as error:
            return error_json(error)
        # (An entry's proof of work to solve, while the visitor can make one: a fresh challenge each
        # time; a guest's browser is not set to work for an entry it may not make.)
        open_to_enter = (not view["closed"] and view["entry"] is None and self.entry_work.on
                         and visitor.shopper_id is not None and signed_in(visitor.shopper_id))
        return JSONResponse({**view, "work_challenge": json.loads(self.entry_work.challenge()) if open_to_enter else None},
                            headers=NO_STORE)

    # --- queues (a product sold through a waiting room: domain/waiting_room.py) ---

    @store_api.get("/api/products/{product_id}/queue")
    async def queue(self, product_id: str, request: Request):
        """The product's queue: the commitment shown from the start, the record of the pre-queue's
        shuffle after the release (what `sneakers23 drop verify` checks), and the visitor's place,
        if any (a place is taken on the product's page, over its socket)."""
        parsed = parse_id(product_id)
        if parsed is None:
            return json_error(400, "bad_request", "a product id is 1 to 9 digits (0-9)")
        visitor = await self._visitor(request)
        try:
            view = await self.inventory.queue_for_shopper_async(parsed, visitor.shopper_id, self.live.line(parsed),
                                                                request.query_params.get("record") != "0")
        except Exception as error:
            return error_json(error)
        # (A new place's proof of work, for a signed-in visitor with none yet: the page solves it,
        # then joins the queue's channel with it.)
        product = self.live.product(parsed)
        taking_places = product is not None and (product.released or product.release_at is not None)
        may_join = taking_places and view["place"] is None and visitor.shopper_id is not None \
            and signed_in(visitor.shopper_id)
        return JSONResponse({**view, "may_join": may_join,
                             "work_challenge": json.loads(self.queue_work.challenge())
                             if may_join and self.queue_work.on else None}, headers=NO_STORE)

    @store_api.post("/api/products/{product_id}/draw/{item_id}")
    async def enter_draw(self, product_id: str, item_id: str, request: Request):
        """An entry in the product's draw with one size: one per account (a second answers with
        the first, whatever its size)."""
        shopper_id = await self._scripts_shopper(request)
        if not isinstance(shopper_id, str):
            return shopper_id  # (the refusal)
        product, item = parse_id(product_id), parse_id(item_id)
        if product is None or item is None:
            return json_error(400, "bad_request", "a product id and an item id are 1 to 9 digits (0-9)")
        wait_s = self.entry_attempts.wait_s(request.client.host if request.client else "", time.monotonic())
        if wait_s > 0:
            refused = json_error(429, "too_many_entries", f"too many entries from your address: try again in "
                                                           f"{math.ceil(wait_s)} s")
            refused.headers["Retry-After"] = str(math.ceil(wait_s))
            return refused
        proof = None
        if signed_in(shopper_id):  # (a guest's entry is refused below, as the draw's rule says, with no work asked)
            unproven, proof = self.entry_work.taken(_json_field(await read_body(request, MAX_ENTRY_BYTES), FIELD))
            if unproven is not None:
                return json_error(422, "proof_of_work", unproven)
        try:
            entry = await self.inventory.enter_draw_async(shopper_id, product, item, proof)
        except Exception as error:
            return error_json(error)
        size = self.live.item(entry.item_id)
        return JSONResponse({"entry_id": entry.entry_id, "item_id": entry.item_id,
                             "size": None if size is None else size.size, "outcome": str(entry.outcome),
                             "message": f"you are in the draw with size {'?' if size is None else size.size}"},
                            status_code=201, headers=NO_STORE)


def build_store(args: dict):
    settings = deployment_settings(args)
    return Storefront.options(**on_every_node(settings.page_replicas_per_node)).bind(settings)
