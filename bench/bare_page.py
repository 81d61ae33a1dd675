"""The baseline for the page benchmark: bare uvicorn + Starlette serving the same bytes, no Ray."""

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

PAGE = Path(os.environ["BARE_PAGE_FILE"]).read_bytes()
HEADERS = {"Cache-Control": "no-store, must-revalidate"}


async def catalog(_request):
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


app = Starlette(routes=[Route("/", catalog)])
