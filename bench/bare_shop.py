"""The trivial shop that measures the load generator's own ceiling: it gives a shopper cookie on
GET / (and a form token) and refuses every purchase (409 sold_out) at once, with no Ray, no database and no check.

    uvicorn bench.bare_shop:app --port PORT
"""

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route


async def page(_request):
    # (A form token, as the store's pages carry one: the buyers wait for it before they buy.)
    response = HTMLResponse('<!DOCTYPE html><title>bare shop</title><main data-form-token="{}"></main>'.format("0" * 32))
    response.set_cookie("sneakers23_shopper", "a-shopper")
    return response


async def purchase(request):
    return JSONResponse({"error": "sold_out", "message": f"item {request.path_params['item_id']} is sold out"},
                        status_code=409)


async def healthz(_request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", page), Route("/healthz", healthz),
                        Route("/api/items/{item_id}/purchase", purchase, methods=["POST"])])
