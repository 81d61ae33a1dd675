"""A shopper's HTTP client as a browser makes it: the store page first, which gives it its cookie
and the form token that every purchase must carry."""

from __future__ import annotations

import httpx

from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in


def open_shop(client: httpx.Client) -> httpx.Response:
    """GET / with `client`, which then sends the page's form token with every request."""
    page = client.get("/")
    token = form_token_in(page.text) if page.status_code == 200 else None
    if token is not None:
        client.headers[FORM_TOKEN_HEADER] = token
    return page


def shopper_client(url: str, **options) -> httpx.Client:
    """A new shopper at `url`, with its cookie and form token."""
    client = httpx.Client(base_url=url, **{"timeout": 30, **options})
    page = open_shop(client)
    assert page.status_code == 200, page.status_code
    return client
