"""The one store: versions, jobs (retrain and activation intents), leases, and later feedback,
idempotency keys and review items, in one SQL database (SQLAlchemy 2, migrations by Alembic).

An SQLite file is the embedded default (``make demo``, the tests); PostgreSQL when several
processes or hosts share it (``STORE_DATABASE_URL``). ``engine`` opens it and migrates its schema,
``tables`` declares it, ``legacy`` imports what the file-based registry left, ``lease`` elects
the one acting controller.
"""
