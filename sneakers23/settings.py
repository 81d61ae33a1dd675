"""Settings from SNEAKERS23_* environment variables (see the README)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNEAKERS23_")

    # SQLite in the working directory needs nothing installed; clusters use postgresql+psycopg://…
    database_url: str = "sqlite:///sneakers23.db"
    max_pairs_per_product: int = Field(default=2, ge=1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
