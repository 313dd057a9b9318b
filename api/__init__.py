"""Tierwise REST service: thin FastAPI routes over the planner, with durable storage.

``create_app(settings)`` in :mod:`api.main` builds the application; ``tierwise serve``
runs it with uvicorn. Storage is SQLAlchemy 2.x (SQLite with WAL by default,
PostgreSQL through ``TIERWISE_DATABASE_URL``).
"""
