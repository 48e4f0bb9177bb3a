"""``scripts.scenario.keys``: keys from the options, else from ``make demo``'s key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.scenario.keys import first_key, read_env_file, resolve_keys


def test_keys_come_from_options_before_the_demo_file(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text(
        "# API keys of the local demo\nGATEWAY_API_KEYS=user-1, user-2\n"
        "GATEWAY_ADMIN_API_KEYS=admin-1\n"
    )
    assert read_env_file(env_file)["GATEWAY_API_KEYS"] == "user-1, user-2"
    assert resolve_keys(None, None, env_file) == ("user-1", "admin-1")
    assert resolve_keys("mine", "boss", env_file) == ("mine", "boss")
    assert resolve_keys(None, None, tmp_path / "absent.env") == (None, None)


def test_admin_key_alone_serves_both_routes(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text("GATEWAY_ADMIN_API_KEYS=admin-1\n")
    assert resolve_keys(None, None, env_file) == ("admin-1", "admin-1")


@pytest.mark.parametrize(("value", "key"), [("a,b", "a"), (" a ", "a"), ("", None), (None, None)])
def test_first_key(value: str | None, key: str | None) -> None:
    assert first_key(value) == key
