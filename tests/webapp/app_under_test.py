"""Where the app under test is, and the key its environment gives it (fixtures in conftest)."""

from __future__ import annotations

from pathlib import Path

APP_PATH = Path(__file__).resolve().parents[2] / "webapp" / "app.py"
API_KEY = "test-key-123"
