"""Settings from SNEAKERS23_* environment variables (see the README)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNEAKERS23_")

    # SQLite in the working directory needs nothing installed; clusters use postgresql+psycopg://…
    database_url: str = "sqlite:///sneakers23.db"
    max_pairs_per_product: int = Field(default=2, ge=1)
    # How often each node cache checks its versions against the database, healing lost changes.
    resync_seconds: float = Field(default=2.0, gt=0, le=60)
    # The Ray cluster that release and sell publish to: "auto" joins one running on this machine
    # (or at RAY_ADDRESS) if there is one, "none" only writes the database, anything else is an address.
    cluster: str = "auto"
    # Signs the shopper cookie. Every web replica of a store needs the same one; `sneakers23 serve`
    # makes one up when it is not set.
    secret_key: str | None = Field(default=None, min_length=16)
    # Replicas of the page deployment on every node (sockets have their own, one per node).
    page_replicas_per_node: int = Field(default=1, ge=1, le=16)
    # Purchases of one product admitted in memory and waiting for the database; past it, a purchase
    # is answered 503 busy at once rather than queued without end.
    sales_queue_limit: int = Field(default=5_000, ge=1)

    @field_validator("database_url")
    @classmethod
    def _absolute_sqlite_path(cls, url: str) -> str:
        """Pin a relative SQLite path to this directory: Ray's workers run in other directories."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            return url  # reported, with the URL, when the database is first used
        path = parsed.database
        if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" or os.path.isabs(path):
            return url
        return parsed.set(database=os.path.abspath(path)).render_as_string(hide_password=False)


@lru_cache
def get_settings() -> Settings:
    return Settings()
