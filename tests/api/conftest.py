"""Fixtures for the REST service tests: an in-process client on a fresh SQLite file, and
a helper that starts the real ``tierwise serve`` process on a free loopback port."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the plan factory of test_export

from api.main import create_app  # noqa: E402
from liveserver import Server, free_port  # noqa: E402,F401  (re-exported to the live tests)
from frontdoors import job_result  # noqa: E402,F401  (re-exported to the capacity route tests)
from api.settings import Settings  # noqa: E402
from api.db import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def make_settings(tmp_path: Path, **changes) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'tierwise.db'}", **changes)


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=True) as c:
        yield c




def custom_profile(id: str = "lab-accel") -> dict:
    """A custom accelerator profile: the shipped L4 profile re-labelled and given twice the
    memory, sent as JSON — exercises every rule of the profile loader."""
    from hwmodels import device_to_dict, load_device

    d = device_to_dict(load_device("l4"))
    d["id"] = id
    d["name"] = "Lab accelerator (L4 with 48 GB)"
    for tier in d.get("memory", []):
        if tier.get("role") == "device":
            for k in list(tier):
                if k.startswith("capacity"):
                    tier[k] = tier[k] * 2
    return d


PG = os.environ.get("TIERWISE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG, reason="TIERWISE_TEST_POSTGRES_URL not set"))])
def store_url(request, tmp_path):
    """A database per test for the store: one SQLite file, or one fresh PostgreSQL schema (through
    search_path) when TIERWISE_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    # one fresh schema per test: tables are created inside it through search_path
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = Store(PG)
    with admin.engine.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG else "?"
    yield f"{PG}{sep}options=-csearch_path%3D{schema}"
    with admin.engine.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.close()
