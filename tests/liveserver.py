"""The real ``tierwise serve`` process on a free loopback port, for the live-server API tests
and the browser tests (one helper for both)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

#: A capacity search that stays busy for tens of seconds (six large models on one fleet, every
#: catalog hardware, up to 4096 devices: about 36 s in one worker thread on a 2-core machine), for
#: the tests that need a job still running or still queued behind one. A one-model search ends in
#: about 3 s, too soon to hold a worker on a fast machine.
LONG_CAPACITY = {"models": ["llama-3.1-405b", "deepseek-v3", "mixtral-8x22b", "llama-3.1-70b", "falcon-180b", "bloom-176b"],
                 "qps": 20, "ttft_slo_s": 2, "tpot_slo_s": 0.1, "max_devices": 4096, "max_pp": 64}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tierwise serve --port N`` in its own process group (so it can be killed whole), on
    ``data_dir``. Service settings from the caller's environment are dropped unless ``env``
    sets them, so every test starts from the defaults."""

    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        given = env or {}
        self.env = {**os.environ, "TIERWISE_DATA_DIR": str(data_dir), **given}
        for k in ("TIERWISE_DATABASE_URL", "TIERWISE_CORS_ORIGINS", "TIERWISE_API_KEY"):
            if k not in given:
                self.env.pop(k, None)
        self.key = self.env.get("TIERWISE_API_KEY")
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

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

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=120.0)

    def solve(self, body: dict) -> dict:
        """POST /v1/plans and wait for the plan (polling the job on 202)."""
        with self.client() as c:
            r = c.post("/v1/plans", json=body)
            while r.status_code == 202:
                time.sleep(0.3)
                job = c.get(r.json()["url"]).json()
                if job["status"] == "succeeded":
                    r = c.get(job["plan_url"])
                elif job["status"] == "failed":
                    raise AssertionError(f"solve failed: {job['error']}")
            assert r.status_code in (200, 201), r.text
            return r.json()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def checked_server(tmp_path_factory, name: str, env: dict | None = None):
    """For a module-scoped fixture (``yield from``): a started server for the module's tests;
    afterwards it is stopped and its log must hold no traceback."""
    srv = Server(tmp_path_factory.mktemp(name), env=env).start()
    yield srv
    srv.stop()
    log = srv.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
