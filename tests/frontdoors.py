"""The command line and an in-process REST app, for tests that send one request through every
front end (CLI, REST, Python) and compare the answers. Importable by name (a conftest is not:
tests/api has its own)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from planner.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    """``tierwise ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@contextlib.contextmanager
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    """The REST app on a fresh SQLite file in ``tmp_path``, raising server exceptions into the test."""
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'tw.db'}")),
                    raise_server_exceptions=True) as c:
        yield c


def job_result(client, response, timeout_s: float = 300.0) -> dict:
    """The answer of a capacity request: the 200 body, or the result of the job a 202 names."""
    import time

    if response.status_code == 200:
        return response.json()
    assert response.status_code == 202, response.text
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        job = client.get(response.headers["location"]).json()
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "succeeded", job
            return job["result"]
        time.sleep(0.1)
    raise AssertionError(f"{response.headers['location']} unfinished after {timeout_s} s")
