"""What every replica of the store's three Serve applications (storefront.py, sockets.py, admin.py)
is deployed with."""

from __future__ import annotations

from sneakers23.cluster import check_database_fits
from sneakers23.errors import Sneakers23Error
from sneakers23.serve.guards import RETRY_AFTER_S
from sneakers23.settings import Settings

# Requests a replica admits past its `max_ongoing_requests` before it answers 503 (with
# Retry-After) at once: Serve's default queue has no bound.
BACKPRESSURE = {"status_code": 503, "retry_after_s": RETRY_AFTER_S}

# A replica counts as started (and HAProxy, which balances over every node's replicas, sends it
# shoppers) when its constructor returns: wait for the node's cache first, but not forever (a
# replica without it answers 503 and /healthz says so).
READY_WAIT_S = 30.0

# A log line per request costs more than rendering the page: errors are still logged.
QUIET = {"enable_access_log": False}


def deployment_settings(args: dict) -> Settings:
    settings = Settings(**args)
    if not settings.secret_key:
        raise Sneakers23Error("SNEAKERS23_SECRET_KEY is not set: every web replica needs the same one")
    check_database_fits(settings)
    return settings
