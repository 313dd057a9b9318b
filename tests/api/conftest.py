"""Fixtures for the REST service tests: an in-process client on a fresh SQLite file, and
a helper that starts the real ``tierwise serve`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the plan factory of test_export

from api.main import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def make_settings(tmp_path: Path, **changes) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'tierwise.db'}", **changes)


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=True) as c:
        yield c


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tierwise serve`` in a child process (its own process group, so it can be killed whole)."""

    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "TIERWISE_DATA_DIR": str(data_dir), **(env or {})}
        self.env.pop("TIERWISE_DATABASE_URL", None) if "TIERWISE_DATABASE_URL" not in (env or {}) else None
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / f"server-{self.port}.log"

    def start(self, timeout_s: float = 60.0) -> "Server":
        cmd = [sys.executable, "-c", "from planner.cli import run; run()", "serve", "--port", str(self.port), "--log-level", "warning"]
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout_s} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing — what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._logf.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if not self._logf.closed:
            self._logf.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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
