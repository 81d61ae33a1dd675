"""A second reference for the page benchmark: the smallest Ray Serve application that serves the
same bytes (one FastAPI route, no cache, no cookie, no database), on the same request path as the
store. What it reaches is what Serve itself allows on this machine; the store can only come close.

    python -m bench.bare_serve_page PAGE_FILE PORT    (the request-path flags come from the environment)
"""

import signal
import sys
import threading
from pathlib import Path

import ray
from fastapi import FastAPI
from fastapi.responses import Response
from ray import serve

PAGE = Path(sys.argv[1]).read_bytes()
HEADERS = {"Cache-Control": "no-store, must-revalidate"}
api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256,
                  logging_config={"enable_access_log": False})
@serve.ingress(api)
class BarePage:
    @api.get("/")
    async def catalog(self):
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


if __name__ == "__main__":
    ray.init(log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
    serve.run(BarePage.bind(), name="bare", route_prefix="/")
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    ray.shutdown()  # takes HAProxy and the replicas with it
