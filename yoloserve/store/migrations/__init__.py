"""Alembic migrations of the store (``yoloserve.store.engine.Store.upgrade`` runs them)."""
