"""Where the store is: ``STORE_DATABASE_URL`` (SQLAlchemy URL), every service reads the same one.

Unset or empty: the embedded SQLite file ``<YOLOSERVE_DATA_DIR>/yoloserve.db``. PostgreSQL:
``postgresql+psycopg://user:password@host:5432/yoloserve`` (compose's ``postgres`` profile, the
Kubernetes manifests).

Example:
    >>> StoreSettings(database_url="sqlite:////tmp/x.db").url
    'sqlite:////tmp/x.db'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths

DEFAULT_FILE_NAME = "yoloserve.db"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file (absolute, so any working directory reads it)."""
    return f"sqlite:///{Path(path).resolve()}"


class StoreSettings(BaseSettings):
    """``STORE_*``: the database every service shares."""

    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty: the SQLite file <YOLOSERVE_DATA_DIR>/yoloserve.db",
    )
    busy_timeout_s: float = Field(
        default=30.0, gt=0, description="SQLite: how long a writer waits for another writer"
    )

    @property
    def url(self) -> str:
        """The URL to open: ``database_url``, or the embedded SQLite file."""
        return self.database_url or sqlite_url(paths.DATA_DIR / DEFAULT_FILE_NAME)
