"""The account's pages on the session's store (serve/account_pages.py), over HTTP: sign-up with the
letter received by a real SMTP server, the link followed, sign-in on two devices, one cart and one
list of orders, the limits per person, sign-out everywhere, resets, and every refusal in words."""

from __future__ import annotations

import base64
import contextlib
import html
import itertools
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import altcha
import httpx
import pytest
import ray

from sneakers23.cluster import NAMESPACE, RELEASE_CLOCK_NAME, RayReplication
from sneakers23.domain.accounts import account_shopper_id
from sneakers23.inventory import Inventory
from sneakers23.serve import phoenix
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, SESSION_COOKIE, SESSION_RECHECK_S
from harness.waiting import wait_for
from tests.serve.test_admin import unlocked  # noqa: F401 (a fixture: logins not throttled by another test)
from tests.support.mailbox import link_in
from tests.support.shoppers import open_shop, shopper_client

PASSWORD = "seven pairs of yellow hop men"
FORM_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{32})"')
CHALLENGE = re.compile(r'data-work-challenge="([^"]+)"')
_addresses = itertools.count(2)
# An ended session reaches every replica as an AccountChanged within this (a replica that missed it
# would answer for the session until SESSION_RECHECK_S).
TOLD_WITHIN_S = 10.0


def shopper(store_url: str) -> httpx.Client:
    """A new shopper from an address of its own (127.0.1.x, 127.0.2.x, ...): the store allows each
    address a few sign-ups and sign-ins a minute."""
    n = next(_addresses)
    address = f"127.0.{1 + n // 250}.{1 + n % 250}"
    return shopper_client(store_url, transport=httpx.HTTPTransport(local_address=address))


def solved(page: httpx.Response) -> dict[str, str]:
    """The proof of work a page's form asks for, solved as its script would."""
    found = CHALLENGE.search(page.text)
    if found is None:
        return {}
    challenge = json.loads(html.unescape(found.group(1)))
    solution = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], challenge["algorithm"],
                                         challenge["maxnumber"])
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return {"altcha": base64.b64encode(json.dumps({**payload, "number": solution.number}).encode()).decode()}


@pytest.fixture
def publishing(ray_settings):
    """The inventory API, publishing to the store's caches as the CLI does."""
    inventory = Inventory(ray_settings, replication=RayReplication())
    yield inventory
    inventory.close()


def new_address() -> str:
    return f"shopper-{uuid.uuid4().hex[:10]}@example.com"


def form_token(page: httpx.Response) -> str:
    found = FORM_TOKEN.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


def post_form(client: httpx.Client, path: str, from_page: str | None = None, **fields) -> httpx.Response:
    """The form of the page at `path` (or `from_page`: GET first, for its form token), posted as a
    browser does."""
    page = client.get(from_page or (path if "token" not in fields else f"{path}?token={fields['token']}"))
    return client.post(path, data={"csrf_token": form_token(page), **solved(page), **fields})


def signed_up(store_url: str, mailbox, address: str | None = None) -> tuple[httpx.Client, str]:
    """A shopper who signed up and followed the link of the letter they got: (their client, address)."""
    address = address or new_address()
    client = shopper(store_url)
    done = post_form(client, "/account/signup", email=address, password=PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/account?welcome=1", done.text[:300]
    link = link_in(mailbox.wait_for_letter(address, "Confirm your email"))
    assert link.startswith(f"{store_url}/account/verify?token=")
    token = link.partition("token=")[2]
    shown = client.get(link)  # a mail scanner's fetch: it shows a button, and uses nothing up
    assert shown.status_code == 200 and "CONFIRM MY ADDRESS" in shown.text
    confirmed = post_form(client, "/account/verify", token=token)
    assert confirmed.status_code == 200 and "is confirmed" in confirmed.text, confirmed.text[:300]
    return client, address


def signed_in(store_url: str, address: str, password: str = PASSWORD) -> httpx.Client:
    client = shopper(store_url)
    done = post_form(client, "/account/login", email=address, password=password)
    assert done.status_code == 303, done.text[:300]
    open_shop(client)  # (the account's form token, for purchases)
    return client


def cart_id(client: httpx.Client) -> str:
    return re.search(r'data-cart-id="([^"]+)"', client.get("/").text).group(1)


def test_sign_up_follow_the_letter_and_shop_as_the_account_on_two_devices(store_url, mailbox, fresh_shop,
                                                                           publishing):
    laptop, address = signed_up(store_url, mailbox)
    account = laptop.get("/account")
    assert account.status_code == 200 and address in account.text and "data-account-verified" in account.text
    cookie = next(c for c in laptop.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "lax"
    phone = signed_in(store_url, address.upper())  # (any case of the address)
    shopper = cart_id(phone)
    assert shopper == cart_id(laptop) and shopper.startswith("account-")
    listed = phone.get("/account").text
    assert listed.count("data-session>") == 2 and "(this device)" in listed
    # An order made on one device is on the other's orders page.
    publishing.release(1)
    item = next(i for i in fresh_shop.complete_products()[0].items if i.available_count > 0)
    wait_for(lambda: "size-container__entry" in phone.get("/").text, timeout=10, what="the release on the page")
    open_shop(phone)
    bought = phone.post(f"/api/items/{item.id}/purchase")
    assert bought.status_code == 200, bought.text
    orders = laptop.get("/orders")
    assert orders.status_code == 200 and orders.text.count('class="order"') == 1


def test_the_cart_filled_before_sign_in_joins_the_accounts(store_url, mailbox, fresh_shop, publishing):
    owner, address = signed_up(store_url, mailbox)
    inventory = publishing
    inventory.release(1)
    first, second, third = [i for i in fresh_shop.complete_products()[0].items if i.available_count > 0][:3]
    account_id = re.search(r"account-(\d+)", cart_id(owner)).group(1)
    inventory.add_to_cart(account_shopper_id(int(account_id)), first.id)
    guest = shopper(store_url)
    guest_id = cart_id(guest)
    for item in (second, third):  # the older joins; the newer would pass the limit of 2
        inventory.add_to_cart(guest_id, item.id)
    done = post_form(guest, "/account/login", email=address, password=PASSWORD)
    assert done.status_code == 303
    assert inventory.cart(account_shopper_id(int(account_id))).item_ids == (second.id, first.id)
    assert inventory.cart(guest_id).is_empty
    assert cart_id(guest) == f"account-{account_id}"  # the guest's browser shops as the account now


@pytest.mark.parametrize("email, password, says", [
    ("not an address", PASSWORD, "not an email address"),
    ("{new}", "short", "at least 12 characters"),
    ("{new}", "password1234", "harder to guess"),
    ("{new}", "{new}", "cannot be your email address"),
])
def test_a_sign_up_refused_says_why(store_url, email, password, says):
    address = new_address()
    client = shopper(store_url)
    refused = post_form(client, "/account/signup", email=email.format(new=address),
                        password=password.format(new=address))
    assert refused.status_code == 422 and says in refused.text and "data-account-message" in refused.text


def test_a_duplicate_a_wrong_password_and_a_missing_form_token_are_refused_in_words(store_url, mailbox):
    _client, address = signed_up(store_url, mailbox)
    again = post_form(shopper(store_url), "/account/signup", email=address.upper(), password=PASSWORD)
    assert again.status_code == 422 and "An account with this email address exists" in again.text
    wrong = post_form(shopper(store_url), "/account/login", email=address, password=PASSWORD + "!")
    unknown = post_form(shopper(store_url), "/account/login", email=new_address(), password=PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "The email address or the password is wrong" in wrong.text and \
        "The email address or the password is wrong" in unknown.text
    forged = shopper(store_url).post("/account/login", data={"email": address, "password": PASSWORD})
    assert forged.status_code == 403 and "out of date" in forged.text
    junk = shopper(store_url).post("/account/signup", content=b"\xff" * 100,
                                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert junk.status_code == 403


def test_a_reset_link_works_once_and_ends_every_session(store_url, mailbox):
    device, address = signed_up(store_url, mailbox)
    asked = post_form(shopper(store_url), "/account/reset", email=address)
    unknown = post_form(shopper(store_url), "/account/reset", email=new_address())
    assert asked.status_code == unknown.status_code == 200
    assert "data-reset-sent" in asked.text and "data-reset-sent" in unknown.text  # the same answer
    token = link_in(mailbox.wait_for_letter(address, "Reset your")).partition("token=")[2]
    resetter = shopper(store_url)
    new_password = "a brand new pair of laces 23"
    assert device.get("/account").status_code == 200  # (its session, remembered by the replica)
    done = post_form(resetter, "/account/reset", token=token, password=new_password)
    assert done.status_code == 303 and done.headers["location"] == "/account/login?done=reset"
    again = post_form(resetter, "/account/reset", token=token, password="yet another pair of laces 24")
    assert again.status_code == 422 and "used already" in again.text
    # The device signed in before the reset is signed out on every replica: at once, told by the
    # reset (an AccountChanged), well before the end of a replica's recheck.
    assert SESSION_RECHECK_S >= 3 * TOLD_WITHIN_S
    wait_for(lambda: device.get("/account").status_code == 303, timeout=TOLD_WITHIN_S, what="the old session ended")
    assert post_form(shopper(store_url), "/account/login", email=address, password=PASSWORD).status_code == 401
    signed_in(store_url, address, new_password)


def cookies_of(client: httpx.Client) -> str:
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)


def join_cart(store_url: str, cookies: str, page: str) -> tuple[dict, int | None]:
    """A socket with these cookies joins the cart a page names: (the join's reply, the close code
    when the server closed it, None when it was still open after a moment)."""
    import websockets.exceptions
    import websockets.sync.client

    shopper = re.search(r'data-cart-id="([^"]+)"', page).group(1)
    token = re.search(r'data-cart-token="([^"]+)"', page).group(1)
    with websockets.sync.client.connect(f"ws{store_url[4:]}/product_socket/websocket?vsn=2.0.0",
                                        additional_headers={"Cookie": cookies}) as socket:
        socket.send(json.dumps(["1", "1", f"cart:{shopper}", "phx_join", {"token": token}]))
        reply = json.loads(socket.recv(timeout=10))[4]
        try:
            while True:  # (pushes may come; a close ends it)
                socket.recv(timeout=3)
        except TimeoutError:
            return reply, None
        except websockets.exceptions.ConnectionClosed as closed:
            return reply, closed.rcvd.code if closed.rcvd else None


def test_an_accounts_cart_joins_with_its_session_and_a_socket_of_an_ended_session_is_closed(store_url, mailbox):
    laptop, _address = signed_up(store_url, mailbox)
    page, cookies = laptop.get("/").text, cookies_of(laptop)
    assert 'data-cart-id="account-' in page
    reply, closed = join_cart(store_url, cookies, page)
    assert reply["status"] == "ok" and closed is None
    stranger = shopper(store_url)  # the page's token with another browser's cookies
    assert join_cart(store_url, cookies_of(stranger), page)[0]["response"]["reason"] == "invalid_token"
    # A socket joined now, whose session ends meanwhile, is closed within the replica's recheck.
    import websockets.exceptions
    import websockets.sync.client

    from sneakers23.serve.carts import SOCKET_RECHECK_S

    shopper_id = re.search(r'data-cart-id="([^"]+)"', page).group(1)
    token = re.search(r'data-cart-token="([^"]+)"', page).group(1)
    with websockets.sync.client.connect(f"ws{store_url[4:]}/product_socket/websocket?vsn=2.0.0",
                                        additional_headers={"Cookie": cookies}) as socket:
        socket.send(json.dumps(["1", "1", f"cart:{shopper_id}", "phx_join", {"token": token}]))
        assert json.loads(socket.recv(timeout=10))[4]["status"] == "ok"  # (the join's check is done: the
        socket.ping().wait(timeout=5)                                     #  socket is open before the end)
        assert post_form(laptop, "/account/sessions/end", from_page="/account").status_code == 303
        with pytest.raises(websockets.exceptions.ConnectionClosed) as ended:
            deadline = time.monotonic() + SOCKET_RECHECK_S + 10
            while time.monotonic() < deadline:
                socket.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert ended.value.rcvd.code == phoenix.CLOSE_POLICY
    # A copy of the old cookies still carries a good signature: the join's check of the session refuses
    # it, before the cart is shown, and closes the socket.
    reply, closed = join_cart(store_url, cookies, page)
    assert reply["status"] == "error" and reply["response"]["reason"] == "signed_out", reply
    assert closed == phoenix.CLOSE_POLICY


def test_sign_out_everywhere_ends_the_other_devices_and_sign_out_this_one(store_url, mailbox):
    laptop, address = signed_up(store_url, mailbox)
    phone = signed_in(store_url, address)
    assert laptop.get("/account").status_code == 200  # (its session, remembered by the replica)
    done = post_form(phone, "/account/sessions/end", from_page="/account")
    assert done.status_code == 303 and done.headers["location"] == "/account/login?done=out"
    assert phone.get("/account").status_code == 303
    wait_for(lambda: laptop.get("/account").status_code == 303, timeout=TOLD_WITHIN_S,
             what="the laptop's session ended (told every replica, well before its recheck)")
    tablet = signed_in(store_url, address)
    assert post_form(tablet, "/account/logout").status_code == 303
    assert tablet.get("/account").status_code == 303


def test_ten_cookies_of_one_account_buy_no_more_than_the_limit(store_url, mailbox, fresh_shop, ray_settings,
                                                               publishing):
    _first, address = signed_up(store_url, mailbox)
    devices = [signed_in(store_url, address) for _ in range(10)]
    publishing.release(1)
    items = [i for i in fresh_shop.complete_products()[0].items if i.available_count > 0][:10]
    wait_for(lambda: "size-container__entry" in devices[0].get("/").text, timeout=10, what="the release")
    for device in devices:
        open_shop(device)
        assert device.headers[FORM_TOKEN_HEADER]

    def buy(pair):
        device, item = pair
        return device.post(f"/api/items/{item.id}/purchase").status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(buy, zip(devices, items)))
    assert statuses.count(200) == ray_settings.max_pairs_per_product, statuses
    assert set(statuses) <= {200, 409}
    shopper = cart_id(devices[0])
    assert fresh_shop.orders(shopper) and len(fresh_shop.orders(shopper)) == ray_settings.max_pairs_per_product


def test_in_chromium_sign_up_follow_the_letter_and_share_one_cart_and_orders_on_two_devices(
    browser, store_url, mailbox, fresh_shop, ray_settings, ray_cluster
):
    from playwright.sync_api import expect

    from tests.serve.test_browser import add_to_cart, open_shop as open_shop_page, released_sizes

    address = new_address()
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    laptop = browser.new_context().new_page()
    laptop.goto(f"{store_url}/account/signup")
    laptop.get_by_label("Email address").fill(address)
    laptop.get_by_label("Password").fill(PASSWORD)
    laptop.get_by_role("button", name="SIGN UP").click()
    expect(laptop.locator("[data-account-unverified]")).to_be_visible()
    laptop.goto(link_in(mailbox.wait_for_letter(address, "Confirm your email")))
    laptop.get_by_role("button", name="CONFIRM MY ADDRESS").click()
    expect(laptop.locator("[data-verified]")).to_contain_text("You now shop under your account")
    # The phone signs in on another node.
    other_node = f"http://127.0.0.1:{ray_cluster.proxy_ports['node_a']}"
    phone = browser.new_context().new_page()
    phone.goto(f"{other_node}/account/login")
    phone.get_by_label("Email address").fill(address)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="SIGN IN").click()
    phone.wait_for_url(f"{other_node}/")
    open_shop_page(laptop, store_url)
    open_shop_page(phone, other_node)
    add_to_cart(laptop, first.id, 1)
    expect(phone.locator(".cart__title")).to_have_text("Cart 1")  # the same cart, live
    add_to_cart(phone, second.id, 2)
    expect(laptop.locator(".cart__title")).to_have_text("Cart 2")
    phone.click(".cart__checkout")
    phone.click("[data-purchase]")
    expect(phone.locator("h2")).to_have_text("Order Complete!")
    expect(laptop.locator(".cart__title")).to_have_text("Cart 0")
    laptop.goto(f"{store_url}/orders")
    expect(laptop.locator(".order")).to_have_count(1)
    expect(laptop.locator(".order .checkout__item")).to_have_count(2)
    for device in (laptop, phone):
        device.context.close()


def test_a_missing_or_wrong_proof_of_work_is_refused_in_words(store_url):
    client = shopper(store_url)
    page = client.get("/account/login")
    assert solved(page), "the sign-in form asks for a proof of work"
    base = {"csrf_token": form_token(page), "email": new_address(), "password": PASSWORD}
    missing = client.post("/account/login", data=base)
    assert missing.status_code == 422 and "needs JavaScript" in missing.text
    forged = client.post("/account/login", data={**base, "altcha": base64.b64encode(b'{"number": 1}').decode()})
    assert forged.status_code == 422 and "not valid" in forged.text
    junk = client.post("/account/login", data={**base, "altcha": "%%%" * 20})
    assert junk.status_code == 422 and "not valid" in junk.text


def test_an_address_trying_too_often_is_held_and_told_when_to_come_back(store_url, ray_settings):
    from tests.support.cluster import live_node_count

    client = shopper(store_url)  # (an address of its own)
    # Each page replica (one a node here) counts an address's tries: the first 429 comes by the
    # limit's 10th try on every replica.
    allowed = ray_settings.model_fields["account_attempts_per_minute"].default * live_node_count()
    answers = []
    while len(answers) <= allowed and (not answers or answers[-1].status_code != 429):
        answers.append(post_form(client, "/account/login", email=new_address(), password=PASSWORD))
    statuses = [answer.status_code for answer in answers]
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429, statuses
    held = answers[-1]
    assert 0 < int(held.headers["retry-after"]) <= 60 and "Too many tries from your address" in held.text
    assert post_form(shopper(store_url), "/account/login", email=new_address(), password=PASSWORD).status_code == 401


def test_a_sign_in_drop_is_refused_to_guests_in_words_and_sold_to_an_account(store_url, mailbox, fresh_shop,
                                                                             publishing):
    publishing.release(1)
    publishing.require_sign_in(1)
    item = next(i for i in fresh_shop.complete_products()[0].items if i.available_count > 0)
    guest = shopper(store_url)
    wait_for(lambda: "data-sign-in-required" in guest.get("/").text, timeout=10, what="the sign-in note on the page")
    open_shop(guest)
    refused = guest.post(f"/api/items/{item.id}/purchase")
    assert refused.status_code == 403 and refused.json()["error"] == "sign_in_required"
    assert "sign in" in refused.json()["message"]
    member, _address = signed_up(store_url, mailbox)
    open_shop(member)
    assert member.post(f"/api/items/{item.id}/purchase").status_code == 200
    assert next(p for p in guest.get("/api/products").json() if p["id"] == 1)["sign_in_required"]


@pytest.mark.usefixtures("unlocked")
def test_the_dashboard_shows_the_accounts_the_unverified_share_and_the_last_minutes_sign_ups(
        store_url, mailbox, admin_client):
    from tests.support.store_fixtures import admin_login, dashboard_tokens

    signed_up(store_url, mailbox)  # (one more account, verified, in the last minute)
    dashboard = admin_client(dashboard_tokens(admin_login(store_url))[0])
    def counted():  # (the push on joining may be the figures of a dashboard opened before the sign-up)
        drops = [drop["payload"]["accounts"] for drop in dashboard.of("drop") if drop["payload"].get("accounts")]
        return next((a for a in reversed(drops) if a["accounts"] >= 1 and a["signed_up_last_minute"] >= 1), None)

    accounts = wait_for(counted, timeout=20, what="the accounts' figures with the sign-up")
    assert 0 <= accounts["unverified_share"] <= 1


def entry_proof(challenge: dict) -> str:
    """A draw entry's proof of work, solved as draws.js solves it."""
    found = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], challenge["algorithm"],
                                      challenge["maxnumber"])
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**payload, "number": found.number}).encode()).decode()


def test_a_draw_entry_costs_a_fresh_proof_of_work_once_and_an_address_is_held_past_its_entries(
        store_url, mailbox, fresh_shop, publishing, ray_settings):
    from sneakers23.domain.drops import DropMode
    from tests.support.cluster import live_node_count

    publishing.set_drop_mode(2, DropMode.DRAW)
    item = next(p for p in fresh_shop.complete_products() if p.id == 2).items[0]
    entrants = []
    for _n in range(2):
        client, _address = signed_up(store_url, mailbox)
        open_shop(client)  # (its form token)
        entrants.append(client)
    first, second = entrants
    enter = lambda client, body: client.post(f"/api/products/2/draw/{item.id}", json=body)  # noqa: E731
    challenge = lambda client: client.get("/api/products/2/draw?record=0").json()["work_challenge"]  # noqa: E731

    missing = enter(first, {})
    assert (missing.status_code, missing.json()["error"]) == (422, "proof_of_work") and "did not run" in missing.json()["message"]
    form_solution = solved(shopper(store_url).get("/account/signup"))["altcha"]
    assert "not valid" in enter(first, {"altcha": form_solution}).json()["message"]  # a form's is no entry's
    assert enter(first, {"altcha": "%%%"}).status_code == 422
    proof = entry_proof(challenge(first))
    made = enter(first, {"altcha": proof})
    assert made.status_code == 201 and made.json()["outcome"] == "entered", made.text
    assert first.get("/api/products/2/draw?record=0").json()["work_challenge"] is None  # (entered: nothing to solve)
    # The same solution brought by another account (a bot's next), whichever replica it reaches.
    reused = enter(second, {"altcha": proof})
    assert (reused.status_code, reused.json()["error"]) == (422, "proof_of_work") and "used already" in reused.text
    assert enter(second, {"altcha": entry_proof(challenge(second))}).status_code == 201

    # A guest is asked to sign in, not to work (the draw's JSON gives a guest no challenge).
    guest = shopper(store_url)  # (an address of its own)
    open_shop(guest)
    assert guest.get("/api/products/2/draw?record=0").json()["work_challenge"] is None
    refused = enter(guest, {})
    assert (refused.status_code, refused.json()["error"]) == (403, "sign_in_required")
    # One address makes at most so many entries an hour on each page replica (one a node here):
    # past them, 429 with Retry-After, before anything else is checked (the guest's refused tries count).
    allowed = ray_settings.model_fields["entries_per_address_per_hour"].default * live_node_count()
    answers = [refused]
    while len(answers) <= allowed and answers[-1].status_code != 429:
        answers.append(enter(guest, {}))
    assert {a.status_code for a in answers[:-1]} == {403} and answers[-1].status_code == 429, \
        [a.status_code for a in answers]
    held = answers[-1]
    assert held.json()["error"] == "too_many_entries" and 0 < int(held.headers["retry-after"]) <= 3600
    assert enter(shopper(store_url), {}).status_code == 403  # (another address is not held)
    big = first.post(f"/api/products/2/draw/{item.id}", content=b"[" * 1_000 + b"]" * 1_000,
                     headers={"Content-Type": "application/json"})  # (nested past Python's recursion limit)
    assert (big.status_code, big.json()["error"]) == (422, "proof_of_work")


@pytest.mark.usefixtures("unlocked")
def test_in_chromium_two_accounts_enter_a_draw_and_each_is_told_on_the_page_and_by_letter(
    browser, store_url, mailbox, fresh_shop, publishing
):
    """A draw from the entries to the winner's order: two accounts enter size X of product 2, which
    has one pair of it, while the staff's dashboard counts the entries per size; the release closes
    the draw (the store's release clock draws and buys), and each page, each inbox and the
    dashboard say how it went."""
    from playwright.sync_api import expect

    from harness import shop
    from sneakers23.domain.drops import DropMode
    from tests.serve.test_browser import open_shop as open_shop_page

    publishing.set_drop_mode(2, DropMode.DRAW)
    item = next(p for p in fresh_shop.complete_products() if p.id == 2).items[0]
    product_1_item = next(p for p in fresh_shop.complete_products() if p.id == 1).items[0].id
    shop.set_available(fresh_shop, item.id, 1)
    pages, heard = {}, {}
    for _n in range(2):
        client, address = signed_up(store_url, mailbox)
        context = browser.new_context()
        context.add_cookies([{"name": cookie.name, "value": cookie.value, "url": store_url} for cookie in client.cookies.jar])
        pages[address] = page = context.new_page()
        heard[address] = listen_for_the_draws_end(page)
        open_shop_page(page, store_url)
    for page in pages.values():
        block = page.locator('[data-draw-for="2"]')
        expect(block.get_by_role("button", name="ENTER THE DRAW")).to_be_visible()
        block.get_by_label("Your size").select_option(str(item.id))
        block.get_by_role("button", name="ENTER THE DRAW").click()
        expect(block.locator("[data-draw-status]")).to_have_text(f"You are in the draw with size {item.size}.")
        expect(block.get_by_role("button", name="ENTER THE DRAW")).to_be_disabled()
        expect(block.locator(".draw__commitment")).to_contain_text(publishing.draw_state(2).commitment)
    # The staff's dashboard counts the entries per size, live.
    from tests.support.store_fixtures import ADMIN_PASSWORD

    staff = browser.new_context().new_page()
    staff.goto(f"{store_url}/admin")
    staff.fill("input[name=who]", "Ada")
    staff.fill("input[name=password]", ADMIN_PASSWORD)
    staff.click("button[type=submit]")
    expect(staff.locator(f'[data-draw-entries="{item.id}"]')).to_have_text("2")
    expect(staff.locator('[data-draw-status="2"]')).to_have_text("draw open: 2 entries so far (it closes at the release)")
    expect(staff.locator(f'[data-draw-entries="{product_1_item}"]')).to_have_text("not a draw")
    # A guest's page offers the entry too, and says to sign in when it is tried.
    guest = browser.new_context().new_page()
    open_shop_page(guest, store_url)
    guest.locator('[data-draw-for="2"]').get_by_role("button", name="ENTER THE DRAW").click()
    expect(guest.locator('[data-draw-for="2"] [data-draw-status]')).to_have_text(
        "Sign in with a confirmed email address to enter the draw.")

    publishing.release(2)  # the close: the release clock draws within a few seconds
    told = {address: page.locator('[data-draw-for="2"] [data-draw-status]') for address, page in pages.items()}
    wait_for(lambda: sorted(t.text_content() or "" for t in told.values()) == sorted([
        f"You won size {item.size}: your pair is in your orders.",
        f"The draw has closed: your entry (size {item.size}) was not drawn this time."]),
        timeout=30, interval=0.25, what="both pages telling how the draw went")
    for address, events in heard.items():  # (told by the draw's end pushed to it, not by asking every few seconds)
        pushed = [at for what, at in events if what == "pushed"]  # (a read soon after it: the 15 s recheck is not it)
        assert pushed and any(what == "read" and 0 <= at - pushed[0] < 5 for what, at in events), (address, events)
    winner = next(a for a, t in told.items() if t.text_content().startswith("You won"))
    loser = next(a for a in told if a != winner)
    assert "in your orders" in mailbox.wait_for_letter(winner, "You won the draw").get_content()
    assert "not drawn" in mailbox.wait_for_letter(loser, "The draw is closed").get_content()
    expect(staff.locator('[data-draw-status="2"]')).to_have_text(
        "draw finished: 2 entries; 1 pair bought for winners, 0 failed, 1 lost, 0 removed; every entrant told")
    pages[winner].goto(f"{store_url}/orders")
    expect(pages[winner].locator(".order")).to_have_count(1)
    assert publishing.verify_draw(2) == []
    published = httpx.get(f"{store_url}/api/products/2/draw").json()  # (anyone's: the record to check)
    assert len(published["record"]["order"]) == 2 and published["entry"] is None and published["finished"]
    assert httpx.get(f"{store_url}/api/products/2/draw?record=0").json()["record"] is None  # (what a page asks)
    assert httpx.get(f"{store_url}/api/products/1/draw").status_code == 404
    assert httpx.get(f"{store_url}/api/products/x/draw").status_code == 400
    for page in (*pages.values(), guest, staff):
        page.context.close()


def listen_for_the_draws_end(page) -> list[tuple[str, float]]:
    """The `draw_finished` pushes a page's socket receives and its reads of its draw, as they come."""
    events: list[tuple[str, float]] = []

    def socket(ws):
        ws.on("framereceived", lambda payload: events.append(("pushed", time.monotonic()))
              if '"draw_finished"' in str(payload) else None)

    page.on("websocket", socket)
    page.on("request", lambda request: events.append(("read", time.monotonic()))
            if "/draw?record=0" in request.url else None)
    return events


class QueueTab:
    """A tab's socket on a queued drop: joins `queue:PRODUCT` with its cookies, and keeps every frame."""

    def __init__(self, store_url: str, cookies: str, product_id: int, client: httpx.Client | None = None):
        """`client`: the shopper's, which asks the queue for a fresh proof of work (a new place's)."""
        import websockets.sync.client

        self.topic = f"queue:{product_id}"
        challenge = client.get(f"/api/products/{product_id}/queue").json()["work_challenge"] if client else None
        params = {"altcha": entry_proof(challenge)} if challenge else {}
        self._open = contextlib.ExitStack()
        self.socket = self._open.enter_context(websockets.sync.client.connect(
            f"ws{store_url[4:]}/product_socket/websocket?vsn=2.0.0", additional_headers={"Cookie": cookies}))
        self.frames: list[list] = []
        self.socket.send(json.dumps(["1", "1", self.topic, "phx_join", params]))
        self.joined = self.next(lambda f: f[1] == "1")[4]

    def next(self, wanted, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if wanted(frame):
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such frame within {timeout}s: {self.frames[-5:]}")
            try:
                self.frames.append(json.loads(self.socket.recv(timeout=min(left, 10))))
            except TimeoutError:  # (a heartbeat, as the page's client sends: an idle socket is let go)
                self.socket.send(json.dumps([None, "hb", "phoenix", "heartbeat", {}]))

    def place(self, stage: str, timeout: float = 30) -> dict:
        """The newest `place` push of this stage (waited for)."""
        return self.next(lambda f: f[3] == "place" and f[4]["stage"] == stage, timeout)[4]

    def close(self):
        self._open.close()


def test_a_queued_drop_takes_places_over_the_socket_lets_one_in_at_a_time_and_sells_only_to_a_turn(
        store_url, mailbox, fresh_shop, publishing):
    from datetime import datetime, timedelta, timezone

    from sneakers23.domain.drops import DropMode

    publishing.set_drop_mode(2, DropMode.QUEUE)
    publishing.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    publishing.set_queue_pace(2, 0)  # (paused: nobody is let in before both are in line)
    ada, _ = signed_up(store_url, mailbox)
    bob, _ = signed_up(store_url, mailbox)
    wait_for(lambda: 'data-queue-for="2"' in ada.get("/").text, timeout=15, what="the queue's block on the page")
    guest = QueueTab(store_url, cookies_of(shopper(store_url)), 2)
    assert guest.joined["status"] == "error" and guest.joined["response"]["reason"] == "sign_in_required"
    guest.close()
    unproven = QueueTab(store_url, cookies_of(ada), 2)  # (no proof of work: no place)
    assert unproven.joined["response"]["reason"] == "proof_of_work", unproven.joined
    unproven.close()
    tabs = {name: QueueTab(store_url, cookies_of(client), 2, client) for name, client in (("ada", ada), ("bob", bob))}
    try:
        for tab in tabs.values():
            assert tab.joined["status"] == "ok" and tab.joined["response"]["stage"] == "pre_queue", tab.joined
        assert ada.get("/api/products/2/queue").json()["work_challenge"] is None  # (a place held: no work)
        again = QueueTab(store_url, cookies_of(ada), 2)  # a second tab: the same place, no work asked
        assert again.joined["response"]["entry"] == tabs["ada"].joined["response"]["entry"]
        again.close()

        # The release shuffles them: each tab is told its place in line.
        publishing.release(2)
        shown = {name: tab.place("queue") for name, tab in tabs.items()}
        assert sorted(place["position"] for place in shown.values()) == [1, 2], shown
        first = min(shown, key=lambda name: shown[name]["position"])
        second = "bob" if first == "ada" else "ada"
        record = ada.get("/api/products/2/queue").json()["record"]
        assert record["order"] == [shown[first]["entry"], shown[second]["entry"]]

        # Nobody is let in yet (paused): a purchase without a turn is refused.
        clients = {"ada": ada, "bob": bob}
        for client in clients.values():
            open_shop(client)
        item = next(i for i in fresh_shop.complete_products()[1].items if i.available_count > 0)
        refused = clients[second].post(f"/api/items/{item.id}/purchase")
        assert refused.status_code == 403 and refused.json()["error"] == "not_admitted", refused.text
        assert "queue" in refused.json()["message"]
        # Three a minute: the first is let in (within 20 s), told how long the turn lasts, and buys;
        # the second is told it is next.
        publishing.set_queue_pace(2, 3)
        turn = tabs[first].place("admitted", timeout=60)
        assert 0 < turn["left_s"] <= publishing.settings.queue_turn_minutes * 60
        tabs[second].next(lambda f: f[3] == "place" and f[4].get("position") == 1)
        # The keeper's actor (the release clock) killed in the middle: started again, it reads its room
        # from the rows: nobody loses a place, and nobody is let in twice.
        publishing.set_queue_pace(2, 0)  # (paused: a pace's second's worth is not let in on the restart)
        places_now = lambda: _queue_places(publishing, 2)  # noqa: E731
        before, version = places_now(), _line_version(publishing, 2)
        ray.kill(ray.get_actor(RELEASE_CLOCK_NAME, namespace=NAMESPACE), no_restart=False)
        wait_for(lambda: _line_version(publishing, 2) > version, timeout=60, what="the restarted keeper's line")
        assert places_now() == before, (before, places_now())
        assert clients[first].post(f"/api/items/{item.id}/purchase").status_code == 200
        # The turn is used: a second purchase needs another, and the tab says it bought.
        other = next(i for i in fresh_shop.complete_products()[1].items if i.available_count > 0 and i.id != item.id)
        assert clients[first].post(f"/api/items/{other.id}/purchase").json()["error"] == "not_admitted"
        tabs[first].place("bought")
    finally:
        for tab in tabs.values():
            tab.close()


def test_in_chromium_two_accounts_queue_see_their_places_one_buys_and_the_other_is_told_it_is_sold_out(
        browser, store_url, mailbox, fresh_shop, publishing):
    """A queued drop with one pair left: two accounts take their places before the release (the
    countdown runs), see their positions after it, the first is let in and buys through the cart,
    and the second is told it is sold out the moment the last pair is held by the first's turn."""
    from datetime import datetime, timedelta, timezone

    from playwright.sync_api import expect

    from harness import shop
    from sneakers23.domain.drops import DropMode
    from tests.serve.test_browser import open_shop as open_shop_page

    publishing.set_drop_mode(2, DropMode.QUEUE)
    items = next(p for p in fresh_shop.complete_products() if p.id == 2).items
    for other in items[1:]:
        shop.set_available(fresh_shop, other.id, 0)
    shop.set_available(fresh_shop, items[0].id, 1)  # (one pair left in all)
    publishing.set_queue_pace(2, 0)  # (nobody let in before both are in line)
    publishing.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    pages = []
    try:
        _two_accounts_queue(browser, store_url, mailbox, fresh_shop, publishing, items, pages, expect, open_shop_page)
    finally:  # (a page left open keeps its tab online for the tests after: CI44 and CI46 counted two)
        for page in pages:
            page.context.close()


def _two_accounts_queue(browser, store_url, mailbox, fresh_shop, publishing, items, pages, expect, open_shop_page):
    from harness import shop

    for _n in range(2):
        client, _address = signed_up(store_url, mailbox)
        context = browser.new_context()
        pages.append(context.new_page())
        context.add_cookies([{"name": cookie.name, "value": cookie.value, "url": store_url} for cookie in client.cookies.jar])
        open_shop_page(pages[-1], store_url)
    statuses = [page.locator('[data-queue-for="2"] [data-queue-status]') for page in pages]
    for page, status in zip(pages, statuses):
        expect(page.locator(".product-soon-2 .product-soon__countdown")).to_contain_text("on sale in")
        page.locator('[data-queue-for="2"]').get_by_role("button", name="TAKE MY PLACE IN THE QUEUE").click()
        expect(status).to_contain_text("You are in the queue.", timeout=20_000)
        expect(page.get_by_role("button", name="TAKE MY PLACE IN THE QUEUE")).to_be_hidden()

    publishing.release(2)  # the keeper shuffles the pre-queue: each page shows its number in line
    wait_for(lambda: sorted(s.text_content() or "" for s in statuses) == [
        "You are number 1 in line: 0 ahead of you; the line is paused for now.",
        "You are number 2 in line: 1 ahead of you; the line is paused for now."],
        timeout=30, interval=0.25, what="both pages showing their places")
    first = next(n for n, s in enumerate(statuses) if "number 1" in s.text_content())
    second = 1 - first
    publishing.set_queue_pace(2, 6)  # (one let in within 10 s)
    expect(statuses[first]).to_contain_text("It is your turn: buy your pair within", timeout=30_000)
    # Its turn holds the last pair: the other page says so at once, keeping its place.
    expect(statuses[second]).to_contain_text("Sold out for now", timeout=10_000)
    page = pages[first]
    page.locator(f'[data-sizes-for="2"] .size-container__entry[value="{items[0].id}"]').click()
    page.wait_for_selector(".cart__title:has-text('Cart 1')")
    page.click(".cart__checkout")
    page.click("[data-purchase]")
    page.wait_for_selector("h2:has-text('Order Complete!')")
    assert shop.available(fresh_shop, items[0].id) == 0


def _queue_places(inventory, product_id: int) -> list:
    from sneakers23.db import waiting_rooms

    with inventory.database.reading() as connection:
        return waiting_rooms.places(connection, product_id)


def _line_version(inventory, product_id: int) -> int:
    from sneakers23.db import waiting_rooms

    with inventory.database.reading() as connection:
        return waiting_rooms.room(connection, product_id, with_record=False).version
