"""``python -m scripts.scenario``: the drift scenario's command (options in ``cli.py``)."""

from scripts.scenario.cli import app

if __name__ == "__main__":
    app()
