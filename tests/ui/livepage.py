"""What the browser tests of the web page run against: the real ``tierwise serve`` process
on a free loopback port with a fresh SQLite database, the system Chromium (Debian's
``chromium`` package; never a downloaded browser), and a recorder of every request the
page makes. (A module of its own rather than a conftest.py: tests/api imports its
conftest by name, and a second conftest module would shadow it.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "ui-test-key-4f9c2a"


def chromium_path() -> str | None:
    """The system Chromium: $TIERWISE_CHROMIUM when set (and only it), else chromium or
    chromium-browser on PATH, else Debian's /usr/bin/chromium; None when there is none."""
    explicit = os.environ.get("TIERWISE_CHROMIUM")
    cands = (explicit,) if explicit else (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
    for cand in cands:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tierwise serve --port N`` in its own process group, on a fresh data folder."""

    def __init__(self, data_dir: Path, env: dict | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TIERWISE_DATA_DIR": str(data_dir), **(env or {})}
        for k in ("TIERWISE_DATABASE_URL", "TIERWISE_CORS_ORIGINS"):
            self.env.pop(k, None)
        if "TIERWISE_API_KEY" not in (env or {}):
            self.env.pop("TIERWISE_API_KEY", None)
        self.key = self.env.get("TIERWISE_API_KEY")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
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


class Recorder:
    """Every request the page makes, and every uncaught script error."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.auth: dict[str, str | None] = {}

    def on_request(self, request) -> None:
        self.urls.append(request.url)
        self.auth[request.url] = request.headers.get("authorization")

    def foreign(self, origin: str) -> list[str]:
        """Requests that left the page's own origin (blob: URLs of this origin are local)."""
        out = []
        for url in self.urls:
            u = url[len("blob:"):] if url.startswith("blob:") else url
            if url.startswith("data:"):
                continue
            parts = urlsplit(u)
            if f"{parts.scheme}://{parts.netloc}" != origin:
                out.append(url)
        return out


def open_page(browser, base: str, recorder: Recorder, viewport=(1280, 800)):
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True, base_url=base)
    page = ctx.new_page()
    page.on("request", recorder.on_request)
    page.on("pageerror", lambda e: recorder.errors.append(str(e)))
    page.set_default_timeout(60_000)
    return ctx, page
