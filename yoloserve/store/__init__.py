"""The one store: versions, jobs (retrains and activation intents), leases, feedback rows and
their idempotency keys, review items and the review budget, in one SQL database (SQLAlchemy 2,
migrations by Alembic); ``data/prod_data.csv`` is an export of the feedback rows
(``yoloserve.feedback.export``). Images stay files on the shared data volume.

An SQLite file is the embedded default (``make demo``, the tests); PostgreSQL when several
processes or hosts share it (``STORE_DATABASE_URL``). ``engine`` opens it and migrates its schema,
``tables`` declares it (the registry's records: ``yoloserve.modelserver.registry``), ``lease``
elects the one acting holder of a lease (the controller, a swap).

May import: the top level (``paths``) only; every sub-package above may import it.
"""
