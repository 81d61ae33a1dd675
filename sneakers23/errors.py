"""Errors the shop reports to people: each says in one line what is wrong."""


class Sneakers23Error(Exception):
    """Base for errors with a message fit for a shopper, an operator or a log line."""


class NotFound(Sneakers23Error):
    pass


class DatabaseUnavailable(Sneakers23Error):
    pass


class SchemaMissing(Sneakers23Error):
    pass


class AlreadySeeded(Sneakers23Error):
    pass


class AlreadyReleased(Sneakers23Error):
    pass


class DropModeRefused(Sneakers23Error):
    """A setting the product's drop mode rules out (guests in a queue or a draw)."""


class DrawRefused(Sneakers23Error):
    """An entry in a draw that may not be made (domain/draws.py): the product is not a draw, its
    draw has closed, or the shopper is not signed in."""


class DrawSignInRequired(DrawRefused):
    """An entry in a draw from a shopper who is not signed in with a confirmed address."""


class DrawProofUsed(DrawRefused):
    """An entry in a draw with a proof of work that made another entry already."""


class QueueRefused(Sneakers23Error):
    """A place in a waiting room that may not be taken (domain/waiting_room.py): the product is not
    sold by queue, or its release is not scheduled yet."""


class QueueSignInRequired(QueueRefused):
    """A place in a waiting room asked for by a shopper who is not signed in with a confirmed address."""


class QueueProofUsed(QueueRefused):
    """A place in a waiting room asked for with a proof of work that took another place already."""


class SalesBusy(Sneakers23Error):
    """Too many purchases of these sizes are waiting: try again in a moment."""


class SalesUnavailable(Sneakers23Error):
    """The product's sales actor did not answer (it is restarting, or too slow): try again with
    the same idempotency key, which returns the purchase's result if it was committed."""
