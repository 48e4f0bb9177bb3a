"""The API keys the scenario sends: from its options, else from ``make demo``'s key file.

Example:
    >>> first_key(" user-1, user-2")
    'user-1'
"""

from __future__ import annotations

from pathlib import Path

from scripts.demo_env import DEMO_ENV, read_env_file

__all__ = ["DEMO_ENV", "first_key", "read_env_file", "resolve_keys"]


def first_key(value: str | None) -> str | None:
    """The first of comma-separated keys (``GATEWAY_API_KEYS`` may list several)."""
    keys = [k.strip() for k in (value or "").split(",") if k.strip()]
    return keys[0] if keys else None


def resolve_keys(
    api_key: str | None, admin_key: str | None, env_file: Path
) -> tuple[str | None, str | None]:
    """Keys from the options (or their env variables), else from ``make demo``'s key file."""
    demo = read_env_file(env_file)
    user = api_key or first_key(demo.get("GATEWAY_API_KEYS"))
    admin = admin_key or first_key(demo.get("GATEWAY_ADMIN_API_KEYS"))
    # The admin key is accepted on user routes too; a demo with only an admin key still works.
    return user or admin, admin
