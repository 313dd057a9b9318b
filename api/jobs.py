"""Plan solves in worker threads, recorded as jobs in the database.

A job row is committed (``queued``) before the solve starts, so an accepted request
survives a restart: :meth:`JobRunner.resume` re-submits jobs left ``queued`` or
``running`` by a previous process. The plan row and the job's ``succeeded`` status are
committed in one transaction. Each solve runs under the request's time limit (capped by
the server's ``solve_time_limit_s``), and at most ``workers`` solves run at once.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from api.db import Store
from api.errors import ApiError, map_exception
from api.metrics import Metrics
from api.services import Catalog, solve_plan_request
from api.settings import Settings

log = logging.getLogger("tierwise.api.jobs")


class JobRunner:
    def __init__(self, store: Store, catalog: Catalog, metrics: Metrics, settings: Settings) -> None:
        self.store = store
        self.catalog = catalog
        self.metrics = metrics
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="tierwise-solve")
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}

    def submit(self, job_id: str, request: dict) -> Future:
        fut = self._pool.submit(self._run, job_id, request)
        with self._lock:
            self._futures[job_id] = fut
        fut.add_done_callback(lambda _f: self._forget(job_id))
        return fut

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def _run(self, job_id: str, request: dict) -> str:
        plan_id = request["id"]
        self.store.set_job(job_id, status="running")
        t0 = time.perf_counter()
        try:
            if self.store.plan_exists(plan_id):  # a resumed job whose plan was already stored
                self.store.set_job(job_id, status="succeeded")
                return plan_id
            body = solve_plan_request(self.catalog, self.settings, request)
            elapsed = time.perf_counter() - t0
            self.store.add_plan(id=plan_id, body=body, request=request, job_id=job_id, solve_s=elapsed)
            self.metrics.observe_solve("succeeded", elapsed)
            return plan_id
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            elapsed = time.perf_counter() - t0
            mapped = map_exception(exc)
            if mapped is None:
                log.exception("plan job %s failed", job_id)
                mapped = ApiError(500, "internal", f"the solve failed unexpectedly ({type(exc).__name__}); the server log has the details")
            err = {"code": mapped.code, "message": mapped.message, "field": mapped.field}
            if mapped.details is not None:
                err["details"] = mapped.details
            self.store.set_job(job_id, status="failed", error=err, solve_s=elapsed)
            self.metrics.observe_solve("failed", elapsed)
            raise mapped from exc

    def future(self, job_id: str) -> Future | None:
        with self._lock:
            return self._futures.get(job_id)

    def resume(self) -> int:
        """Re-submit jobs a previous process accepted but did not finish."""
        jobs = self.store.unfinished_jobs()
        for job in jobs:
            self.store.set_job(job.id, status="queued", note="resumed after a restart")
            self.submit(job.id, job.request)
        return len(jobs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
