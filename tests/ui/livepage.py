"""What the browser tests of the web page run against: the real ``tierwise serve`` process
on a free loopback port with a fresh SQLite database, the system Chromium (Debian's
``chromium`` package; never a downloaded browser), and a recorder of every request the
page makes. (A module of its own rather than a conftest.py: tests/api imports its
conftest by name, and a second conftest module would shadow it.)"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit


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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared live-server helper
from liveserver import Server, free_port  # noqa: E402,F401


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


_PLAYWRIGHT: dict = {}


def shared_browser():
    """One headless system Chromium for the whole test process (the sync Playwright API runs
    one event loop per process, so every browser test module shares this one); None when
    there is no system Chromium. Closed when the process exits."""
    if "browser" not in _PLAYWRIGHT:
        exe = chromium_path()
        if exe is None:
            return None
        import atexit

        from playwright.sync_api import sync_playwright

        # Chromium refuses its sandbox as root (CI containers); elsewhere keep it.
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        pw = sync_playwright().start()
        _PLAYWRIGHT["pw"] = pw
        _PLAYWRIGHT["browser"] = pw.chromium.launch(executable_path=exe, headless=True, args=args)

        def _close() -> None:
            try:
                _PLAYWRIGHT["browser"].close()
            finally:
                pw.stop()

        atexit.register(_close)
    return _PLAYWRIGHT["browser"]


def post_result(client, path: str, body: dict, timeout_s: float = 300.0):
    """POST to a route that may run as a job (``/v1/capacity``): the response's JSON on 200
    (or on an error), else the job's ``result`` once ``GET /v1/jobs/{id}`` says it has
    ended. A failed job gives its ``{"error": …}`` body, as a direct answer would."""
    res = client.post(path, json=body)
    if res.status_code != 202:
        return res.json()
    return poll_job(client, res.json(), timeout_s)


def poll_job(client, job: dict, timeout_s: float = 300.0):
    """Follow a job (as a 202 answer gives it) to its ``result``, or ``{"error": …}``."""
    import time

    end = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        if time.monotonic() > end:
            raise AssertionError(f"job {job['id']} still {job['status']} after {timeout_s} s")
        time.sleep(0.2)
        job = client.get(job["url"]).json()
    if job["status"] != "succeeded":
        return {"error": job["error"]}
    return job["result"]


def screenshot_dir(tmp_path_factory, name: str) -> Path:
    """Where a test module's screenshots go: $TIERWISE_UI_SCREENSHOT_DIR, or a fresh temporary folder."""
    folder = os.environ.get("TIERWISE_UI_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp(name)
    path.mkdir(parents=True, exist_ok=True)
    return path
