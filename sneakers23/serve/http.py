"""How the store answers over HTTP when it does not sell: one table from each error to its status,
and the refusals of a purchase to theirs. Pages and JSON read the same table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape

from fastapi.responses import HTMLResponse, JSONResponse

from sneakers23.domain.purchases import Refusal
from sneakers23.errors import (DatabaseUnavailable, DrawProofUsed, DrawRefused, DrawSignInRequired, NotFound,
                               QueueProofUsed, QueueRefused, QueueSignInRequired, SalesBusy, SalesUnavailable, SchemaMissing,
                               Sneakers23Error)
from sneakers23.serve.guards import NO_STORE, RETRY_AFTER_S, json_error

log = logging.getLogger(__name__)

REFUSAL_STATUS = {
    Refusal.SOLD_OUT: 409,
    Refusal.LIMIT_REACHED: 409,
    Refusal.NOT_RELEASED: 403,
    Refusal.UNKNOWN_ITEM: 404,
    Refusal.KEY_REUSED: 422,
    Refusal.SIGN_IN_REQUIRED: 403,
    Refusal.SOLD_BY_DRAW: 403,
    Refusal.NOT_ADMITTED: 403,
}


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    error: str  # the JSON's `error`
    message: str | None  # what a page says; None: the error's own line
    log_level: int = logging.DEBUG
    own_line_in_json: bool = True  # False: the JSON says `message` too (the error's line is for the log)


# The first entry whose type matches answers; a 503 carries Retry-After.
ERROR_ANSWERS: list[tuple[type[Exception] | tuple[type[Exception], ...], ErrorAnswer]] = [
    (SalesBusy, ErrorAnswer(503, "busy", "So many shoppers are buying right now: try again in a moment")),
    ((SalesUnavailable, DatabaseUnavailable, SchemaMissing),  # (their line names the database: logged, not shown)
     ErrorAnswer(503, "unavailable", "The store cannot sell right now: try again in a moment", logging.WARNING,
                 own_line_in_json=False)),
    (NotFound, ErrorAnswer(404, "not_found", None)),
    (DrawSignInRequired, ErrorAnswer(403, "sign_in_required", None)),
    (DrawProofUsed, ErrorAnswer(422, "proof_of_work", None)),
    (DrawRefused, ErrorAnswer(409, "draw_refused", None)),
    (QueueSignInRequired, ErrorAnswer(403, "sign_in_required", None)),
    (QueueProofUsed, ErrorAnswer(422, "proof_of_work", None)),
    (QueueRefused, ErrorAnswer(409, "queue_refused", None)),
    (ValueError, ErrorAnswer(400, "bad_request", None)),  # (a malformed idempotency key, say)
    (Sneakers23Error, ErrorAnswer(500, "error", "Your purchase could not be completed", logging.ERROR)),
]


def answer_for(error: Exception) -> ErrorAnswer | None:
    """The table's answer to an error, logged at its level; None for an error not in it (a bug:
    let it rise)."""
    for types, answer in ERROR_ANSWERS:
        if isinstance(error, types):
            log.log(answer.log_level, "answered %d: %s", answer.status, error)
            return answer
    return None


def error_json(error: Exception) -> JSONResponse:
    answer = answer_for(error)
    if answer is None:
        raise error
    shown = str(error) if answer.own_line_in_json or answer.message is None else answer.message
    return json_error(answer.status, answer.error, shown)


def error_page(error: Exception) -> HTMLResponse:
    answer = answer_for(error)
    if answer is None:
        raise error
    return page_error(answer.status, answer.message or str(error))


def page_error(status: int, message: str) -> HTMLResponse:
    headers = {**NO_STORE, "Retry-After": str(RETRY_AFTER_S)} if status == 503 else NO_STORE
    return HTMLResponse(f'<!DOCTYPE html><title>Sneakers23</title><link rel="stylesheet" href="/static/css/store.css">'
                        f'<p class="flash flash--error" role="alert" data-checkout-message>{escape(message)}</p>'
                        f'<p><a href="/checkout">Back to checkout</a></p>', status_code=status, headers=headers)


def opening_page() -> HTMLResponse:
    return HTMLResponse("<!DOCTYPE html><title>Sneakers23</title><p>The store is opening: try again in a moment.",
                        status_code=503, headers={**NO_STORE, "Retry-After": str(RETRY_AFTER_S)})
