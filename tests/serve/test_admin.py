"""The admin dashboard's gate, actions and presence, on the session's store (three nodes)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from pydantic import ValidationError

from sneakers23.assembly import database_inventory
from sneakers23.serve.admin_gate import SESSION_COOKIE, AdminGate
from sneakers23.serve.shoppers import COOKIE
from sneakers23.settings import Settings
from tests.serve.test_carts import new_shopper, sizes_in_stock
from tests.support.store_fixtures import ADMIN_PASSWORD, STORE_SECRET, admin_login, dashboard_tokens
from harness.waiting import wait_for


@pytest.fixture
def unlocked(ray_settings):
    """Logins not throttled by an earlier test's failures, before and after."""
    inventory = database_inventory(ray_settings)
    inventory.unlock_logins("tests")
    yield inventory
    inventory.unlock_logins("tests")
    inventory.close()


def login_form(client: httpx.Client) -> str:
    page = client.get("/admin/login")
    assert page.status_code == 200
    return re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)


def test_without_a_session_the_dashboard_sends_you_to_log_in(store_url):
    with httpx.Client(base_url=store_url) as client:
        page = client.get("/admin/")
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"
        for method, path in (("POST", "/admin/actions"), ("GET", "/admin/audit")):
            answer = client.request(method, path, json={"action": "release", "product_id": 1})
            assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_a_login_needs_the_password_and_its_own_form(store_url, unlocked):
    with httpx.Client(base_url=store_url) as client:
        token = login_form(client)
        wrong = client.post("/admin/login", data={"who": "mallory", "password": "guess-guess", "form_token": token})
        assert wrong.status_code == 401 and "Wrong password" in wrong.text
        assert SESSION_COOKIE not in client.cookies
        # A form posted from elsewhere carries no login cookie (SameSite=Strict): refused.
        with httpx.Client(base_url=store_url) as elsewhere:
            forged = elsewhere.post("/admin/login", data={"who": "x", "password": ADMIN_PASSWORD, "form_token": token})
        assert forged.status_code == 403
        right = client.post("/admin/login", data={"who": "Ada", "password": ADMIN_PASSWORD, "form_token": login_form(client)})
        assert right.status_code == 303 and right.headers["location"] == "/admin/"
        assert "HttpOnly" in right.headers["set-cookie"] and "SameSite=strict" in right.headers["set-cookie"]
        assert client.get("/admin/").status_code == 200
    audit = unlocked.admin_audit(5)
    assert [(e.who, e.ok) for e in audit if e.action == "login"][:2] == [("Ada", True), ("mallory", False)]


def test_forged_expired_and_shopper_cookies_open_nothing(store_url, monkeypatch):
    gate = AdminGate(ADMIN_PASSWORD, STORE_SECRET, session_hours=8)
    good = gate.open_session("Ada")
    forged = URLSafeTimedSerializer("not-the-store-secret-key", salt="x").dumps({"who": "Eve", "csrf": "c"})
    with monkeypatch.context() as clock:  # signed nine hours ago: past the session's eight
        clock.setattr(time, "time", lambda: _hours_ago(9))
        expired = gate.open_session("Ada")
    with httpx.Client(base_url=store_url) as shopper:
        shopper.get("/")  # the shop sets the shopper's cookie
        shopper_cookie = shopper.cookies[COOKIE]
    for cookies in ({SESSION_COOKIE: forged}, {SESSION_COOKIE: expired}, {COOKIE: shopper_cookie},
                    {SESSION_COOKIE: shopper_cookie}, {SESSION_COOKIE: good[:-2] + "xx"}):
        with httpx.Client(base_url=store_url, cookies=cookies) as client:
            assert client.get("/admin/").status_code == 303, cookies
            assert client.post("/admin/actions", json={"action": "release", "product_id": 1}).status_code == 401
    with httpx.Client(base_url=store_url, cookies={SESSION_COOKIE: good}) as client:
        assert client.get("/admin/").status_code == 200  # the same gate's fresh session does open it


_REAL_TIME = time.time


def _hours_ago(hours: float) -> float:
    return _REAL_TIME() - hours * 3600


def test_actions_need_the_csrf_token_and_are_audited(store_url, fresh_shop, unlocked):
    client = admin_login(store_url, who="Ada")
    _socket_token, csrf = dashboard_tokens(client)
    release = {"action": "release", "product_id": 2}
    assert client.post("/admin/actions", json=release).status_code == 403
    assert client.post("/admin/actions", json=release, headers={"X-CSRF-Token": "nope"}).status_code == 403
    headers = {"X-CSRF-Token": csrf}
    for bad, status in ((b"{", 400), (b"[]", 400), (b'{"action": "release"}', 400), (b"[" * 3000 + b"]" * 3000, 413),
                        (b'{"action": "restock", "item_id": 1, "count": -4}', 400), (b"[" * 2000, 400),
                        (b"x" * 5000, 413)):
        answer = client.post("/admin/actions", content=bad, headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == status and answer.json()["message"], bad[:40]
    done = client.post("/admin/actions", json=release, headers=headers)
    assert done.status_code == 200 and done.json()["message"] == "released"
    again = client.post("/admin/actions", json={"action": "schedule", "product_id": 2, "at": "2099-01-01T00:00:00Z"},
                        headers=headers)
    assert again.status_code == 409 and "already released" in again.json()["message"]
    assert fresh_shop.complete_products()[1].released
    # The shop shows it, from memory, once the caches have it.
    wait_for(lambda: httpx.get(f"{store_url}/api/products").json()[1]["released"], what="the release on the pages")
    audit = client.get("/admin/audit").json()
    assert [(e["who"], e["action"], e["target"], e["ok"]) for e in audit[:2]] == [
        ("Ada", "schedule", "product 2", False), ("Ada", "release", "product 2", True)]
    # Logging out needs the token too; then the session is gone from the browser.
    assert client.post("/admin/logout", data={}).status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/admin/").status_code == 303


def test_failed_logins_past_the_limit_are_refused_for_a_while_even_sent_at_once(store_url, unlocked, ray_settings):
    limit = ray_settings.admin_failed_logins_per_minute
    clients = [httpx.Client(base_url=store_url, timeout=30) for _ in range(limit + 6)]
    try:
        forms = [login_form(client) for client in clients]
        with ThreadPoolExecutor(len(clients)) as threads:  # every guess at once: they take turns
            answers = list(threads.map(lambda pair: pair[0].post("/admin/login", data={
                "who": "mallory", "password": "nope-nope-nope", "form_token": pair[1]}), zip(clients, forms)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [401] * limit + [429] * 6, statuses
        refused = clients[0].post("/admin/login", data={"who": "Ada", "password": ADMIN_PASSWORD,
                                                         "form_token": login_form(clients[0])})
        assert refused.status_code == 429 and "Too many failed logins" in refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        unlocked.unlock_logins("ops")  # what `sneakers23 admin unlock` does: the desk sees it within a second
        wait_for(lambda: clients[0].post("/admin/login", data={"who": "Ada", "password": ADMIN_PASSWORD,
                                                               "form_token": login_form(clients[0])}).status_code == 303,
                 timeout=5, what="a login once the throttle is lifted")
    finally:
        for client in clients:
            client.close()


def test_the_dashboard_socket_needs_the_page_token_of_a_live_session(store_url, admin_client, unlocked, monkeypatch):
    gate = AdminGate(ADMIN_PASSWORD, STORE_SECRET, session_hours=8)
    with monkeypatch.context() as clock:  # the page was opened two days ago: its token lasts one
        clock.setattr(time, "time", lambda: _hours_ago(48))
        expired = gate.socket_token(gate.session(gate.open_session("Ada")))
    with monkeypatch.context() as clock:  # a session of 8 hours opened 7.99 hours ago: its token ends with it
        clock.setattr(time, "time", lambda: _hours_ago(7.99))
        ending = gate.socket_token(gate.session(gate.open_session("Ada")))
    logged_out_client = admin_login(store_url, who="Bob")
    logged_out, csrf = dashboard_tokens(logged_out_client)
    assert logged_out_client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    refused = [admin_client(token) for token in ("not-a-token", expired, logged_out)]
    good = admin_client(dashboard_tokens(admin_login(store_url))[0])
    assert wait_for(lambda: good.of("join_ok"), what="the dashboard's join")[0]["response"]["who"] == "Ada"
    assert wait_for(lambda: good.online(), what="the presence state") is not None
    for client in refused:
        wait_for(lambda client=client: client.of("error") or client.of("close"), what="the socket refused")
        assert not client.of("open") and not client.of("join_ok") and not client.of("presence")
    assert gate.socket_holder(ending)[0] is not None
    with monkeypatch.context() as clock:  # a minute later the session, and so the token, has ended
        clock.setattr(time, "time", lambda: _hours_ago(-0.02))
        assert gate.socket_holder(ending) == (None, "expired_token")


def test_a_logout_ends_the_session_even_for_a_copy_of_its_cookie(store_url, unlocked):
    client = admin_login(store_url)
    copy = dict(client.cookies)
    _token, csrf = dashboard_tokens(client)
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    with httpx.Client(base_url=store_url, cookies=copy) as stolen:
        assert stolen.get("/admin/").status_code == 303
        assert stolen.get("/admin/audit").status_code == 401
    assert unlocked.admin_audit(1)[0].action == "logout"


def test_an_empty_password_turns_the_pages_off_and_the_placeholder_is_refused():
    assert Settings(admin_password="  ").admin_password is None
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(admin_password="CHANGE-ME-please")
    with pytest.raises(ValidationError):
        Settings(admin_password="short")


def test_shopper_tabs_are_tracked_with_their_page_and_cart(store_url, fresh_shop, ray_settings, unlocked,
                                                          admin_client, cart_client):
    dashboard = admin_client(dashboard_tokens(admin_login(store_url))[0])
    wait_for(lambda: dashboard.online(), what="the dashboard's presence")
    from tests.support.cluster import ensure_released
    ensure_released(ray_settings, 1)
    shopper_id, _cookie, token = new_shopper()
    tab = cart_client()
    tab.join(f"cart:{shopper_id}", token=token, page="/checkout")
    mine = lambda: [t for t in (dashboard.online() or {"tabs": []})["tabs"] if t["shopper"] == shopper_id]  # noqa: E731
    (entry,) = wait_for(mine, what="the shopper's tab on the dashboard")
    assert entry["page"] == "/checkout" and entry["items"] == [] and entry["node"]
    size = sizes_in_stock(fresh_shop, 1, 1)[0]
    assert tab.reply(tab.push(f"cart:{shopper_id}", "add_item", {"item_id": size}))["status"] == "ok"
    wait_for(lambda: mine() and mine()[0]["items"] == [size], what="the cart's size on the dashboard")
    tab.close()
    wait_for(lambda: not mine(), what="the tab to leave the dashboard")
