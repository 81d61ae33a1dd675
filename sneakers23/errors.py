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
