"""Background jobs (plan solves and capacity searches) run by worker threads, recorded in
the database.

- **Admission** (:meth:`api.db.Store.admit_job`): one transaction commits the ``queued`` job,
  reserves the plan id and enforces the pending-jobs cap, so an accepted request survives a
  restart and two requests for one id cannot both be accepted.
- **One deadline per job**: each job runs under :class:`planner.deadline.Deadline` (the
  request's ``time_limit_s``, capped by the server's ``solve_time_limit_s``); the planner and
  the capacity search check it and stop there. :meth:`JobRunner.cancel` sets its event.
- **Workers are freed on time**: a job cancelled while running, or still running
  ``GRACE_S`` after its time limit, is marked ``cancelled`` / ``failed`` (code
  ``time_limit``) at once and its worker is replaced, so the slot is free within the grace
  even if one long solver call has not reached its next check; that call's result is
  discarded (:meth:`api.db.Store.add_plan` stores only for a ``running`` job). A finished,
  failed or cancelled job is never resumed; only ``queued``/``running`` jobs of a killed
  process are (:meth:`JobRunner.resume`).
- **Leases**: every job row names its owner (this process's :attr:`api.db.Store.owner`) and
  a lease (``lease_until``). One thread renews the leases of all this process's unfinished
  jobs every ``job_lease_s / 3`` seconds (one ``UPDATE``), and claims the unfinished jobs
  whose lease has expired, i.e. whose server is gone (:meth:`api.db.Store.claim_job`: one
  conditional ``UPDATE``, so of several servers exactly one takes a job). A second server on
  the same database therefore never re-runs the jobs of a live one, and a killed server's
  jobs are resumed within about one lease. A clean shutdown releases its leases so the next
  server takes its jobs at once. A process that finds a job of its own cancelled by another
  server, or claimed by one after its lease lapsed, stops working on it; its writes are
  conditional on still owning the job (``mine=True``), so a job is never stored twice.
- **Fairness**: ``workers`` general threads plus ``short_workers`` threads that take only
  jobs whose time limit is at most ``short_job_s`` (a short lane: a quick solve is never stuck
  behind long ones), and each thread takes the oldest job of the client with the fewest
  running jobs (one client cannot hold every worker while others wait).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from api.db import Store
from api.errors import ApiError, error_body, map_exception
from api.metrics import Metrics
from api.settings import Settings

log = logging.getLogger("tierwise.api.jobs")

#: Seconds past its time limit (or after a cancel) before a job's worker is replaced.
GRACE_S = 1.0


@dataclass(eq=False)
class _Job:
    id: str
    kind: str
    request: dict
    client: str
    limit_s: float
    seq: int
    done: Future = field(default_factory=Future)  # resolves with the final status, never raises
    http_status: int | None = None  # of a failure, for the route that waits on the job
    deadline: Any = None
    started: float | None = None
    worker: "_Worker | None" = None


class _Worker(threading.Thread):
    def __init__(self, runner: "JobRunner", short_only: bool, n: int) -> None:
        super().__init__(name=f"tierwise-{'short' if short_only else 'job'}-{n}", daemon=True)
        self.runner = runner
        self.short_only = short_only
        self.retired = False

    def run(self) -> None:
        while not self.retired:
            job = self.runner._take(self)
            if job is None:
                return
            try:
                self.runner._run(job)
            finally:
                self.runner._finished(job, self)


def job_time_limit(settings: Settings, request: dict) -> float:
    """The request's ``time_limit_s``, capped by the server's ``solve_time_limit_s``."""
    asked = request.get("time_limit_s")
    return min(float(asked), settings.solve_time_limit_s) if asked else settings.solve_time_limit_s


class JobRunner:
    def __init__(self, store: Store, catalog: Any, metrics: Metrics, settings: Settings) -> None:
        self.store = store
        self.catalog = catalog
        self.metrics = metrics
        self.settings = settings
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._jobs: dict[str, _Job] = {}
        self._running_by_client: dict[str, int] = {}
        self._seq = 0
        self._stopping = False
        self._zombies = 0  # replaced workers still inside a solver call
        self._nworkers = 0
        for _ in range(settings.workers):
            self._spawn(short_only=False)
        for _ in range(settings.short_workers):
            self._spawn(short_only=True)
        self._watchdog = threading.Thread(target=self._watch, name="tierwise-watchdog", daemon=True)
        self._watchdog.start()
        self._claiming = False  # set by the first resume(): from then on the lease thread claims too
        self._wake = threading.Event()
        self._leases = threading.Thread(target=self._keep_leases, name="tierwise-leases", daemon=True)
        self._leases.start()

    # ---- queue -----------------------------------------------------------------------

    def submit(self, job_id: str, kind: str, request: dict, client: str | None = None) -> _Job:
        """Queue an admitted job; ``job.done`` resolves with its final status."""
        with self._cond:
            self._seq += 1
            job = _Job(id=job_id, kind=kind, request=request, client=client or "-",
                       limit_s=job_time_limit(self.settings, request), seq=self._seq)
            self._jobs[job_id] = job
            self._pending.append(job)
            self._cond.notify_all()
            return job

    def future(self, job_id: str) -> Future | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return job.done if job else None


    def _is_short(self, job: _Job) -> bool:
        return job.limit_s <= self.settings.short_job_s

    def _take(self, worker: _Worker) -> _Job | None:
        with self._cond:
            while True:
                if self._stopping or worker.retired:
                    return None
                fits = [j for j in self._pending if not worker.short_only or self._is_short(j)]
                if fits:
                    job = min(fits, key=lambda j: (self._running_by_client.get(j.client, 0), j.seq))
                    self._pending.remove(job)
                    self._running_by_client[job.client] = self._running_by_client.get(job.client, 0) + 1
                    job.worker = worker
                    return job
                self._cond.wait()

    def _finished(self, job: _Job, worker: _Worker) -> None:
        with self._cond:
            self._release(job)
            if worker.retired:
                self._zombies -= 1
            self._cond.notify_all()

    def _release(self, job: _Job) -> None:
        """Forget a job (under the lock): its client's running count and its table entry."""
        if self._jobs.pop(job.id, None) is None:
            return
        if job.worker is not None:
            n = self._running_by_client.get(job.client, 1) - 1
            if n > 0:
                self._running_by_client[job.client] = n
            else:
                self._running_by_client.pop(job.client, None)

    def _spawn(self, short_only: bool) -> None:
        self._nworkers += 1
        _Worker(self, short_only, self._nworkers).start()

    def _retire(self, job: _Job, status: str) -> None:
        """Free a running job's worker now (under the lock): the thread finishes its current
        call in the background and exits; a fresh worker takes its place. Replacements are
        bounded by the worker count, so cancelling cannot multiply threads."""
        w = job.worker
        self._release(job)
        if not job.done.done():
            job.done.set_result(status)
        if w is None or w.retired:
            return
        if self._zombies < self.settings.workers + self.settings.short_workers:
            w.retired = True
            self._zombies += 1
            self._spawn(short_only=w.short_only)
        self._cond.notify_all()

    # ---- cancel and time limits ---------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job: marked ``cancelled`` now (so a restart does not
        resume it), its deadline's event set, its worker freed. False when it had ended."""
        if not self.store.set_job(job_id, status="cancelled", only_if=("queued", "running"),
                                  error={"code": "cancelled", "message": "the job was cancelled", "field": None}):
            return False
        elapsed = 0.0
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                if job.started is not None:
                    elapsed = time.monotonic() - job.started
                if job.deadline is not None:
                    job.deadline.cancel()
                if job in self._pending:
                    self._pending.remove(job)
                    self._jobs.pop(job_id, None)
                    job.done.set_result("cancelled")
                else:
                    self._retire(job, "cancelled")
        # The one count of this cancellation: the worker, when its call returns, finds the job
        # no longer running and records nothing (see _run).
        self.metrics.observe_solve("cancelled", elapsed)
        return True

    def _watch(self) -> None:
        while not self._stopping:
            time.sleep(0.25)
            now = time.monotonic()
            with self._cond:
                late = [j for j in self._jobs.values()
                        if j.started is not None and now - j.started > j.limit_s + GRACE_S and not j.done.done()]
            for job in late:
                err = {"code": "time_limit", "field": "time_limit_s",
                       "message": f"the job ran past its time limit of {job.limit_s:g} s ('time_limit_s') and was stopped"}
                if self.store.set_job(job.id, status="failed", error=err, solve_s=now - job.started, only_if=("running",),
                                      mine=True):
                    log.warning("job %s (%s) overran its %g s limit; its worker was replaced", job.id, job.kind, job.limit_s)
                    self.metrics.observe_solve("failed", now - job.started)
                with self._cond:
                    if job.deadline is not None:
                        job.deadline.cancel()
                    self._retire(job, "failed")

    # ---- running one job ----------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        from planner.deadline import Cancelled, Deadline, DeadlineExceeded

        if not self.store.set_job(job.id, status="running", only_if=("queued",), mine=True):
            if not job.done.done():
                job.done.set_result("cancelled")
            return
        with self._cond:
            if job.done.done():
                return  # cancelled between this worker marking it running and here: cancel() found no deadline
            job.deadline = Deadline(job.limit_s)
            job.started = time.monotonic()
        # Each outcome is counted once, by whoever ends the job in the store: this worker for
        # "succeeded" / "failed"; cancel() and the time-limit watch for the jobs they end (the
        # worker's call then returns "cancelled", or raises Cancelled, and counts nothing).
        t0 = time.perf_counter()
        try:
            status = self._execute(job, job.deadline)
        except Exception as exc:  # noqa: BLE001 - every outcome is recorded on the job
            if self._stopping:  # shutting down: left running, resumed on the next start
                return
            elapsed = time.perf_counter() - t0
            if isinstance(exc, Cancelled):
                status = "cancelled"
            else:
                err, job.http_status = self._error(job, exc)
                status = "failed" if self.store.set_job(job.id, status="failed", error=err, solve_s=elapsed,
                                                        only_if=("running",), mine=True) else "cancelled"
            if status != "cancelled":
                self.metrics.observe_solve(status, elapsed)
            if isinstance(exc, DeadlineExceeded):
                log.info("job %s stopped at its time limit", job.id)
        else:
            if status != "cancelled":
                self.metrics.observe_solve(status, time.perf_counter() - t0)
        if not job.done.done():
            job.done.set_result(status)

    def _execute(self, job: _Job, deadline: Any) -> str:
        from api import services

        t0 = time.perf_counter()
        if job.kind == "plan":
            body = services.solve_plan_request(self.catalog, self.settings, job.request, deadline=deadline)
            stored = self.store.add_plan(id=job.request["id"], body=body, request=job.request, job_id=job.id,
                                         solve_s=time.perf_counter() - t0)
            return "succeeded" if stored is not None else "cancelled"
        run: Callable[..., dict] = {"capacity": services.capacity, "capacity_train": services.train_capacity}[job.kind]
        result = run(self.catalog, job.request, deadline=deadline)
        ok = self.store.set_job(job.id, status="succeeded", result=result, solve_s=time.perf_counter() - t0,
                                only_if=("running",), mine=True)
        return "succeeded" if ok else "cancelled"

    def _error(self, job: _Job, exc: Exception) -> tuple[dict, int]:
        from planner.deadline import DeadlineExceeded

        if isinstance(exc, DeadlineExceeded):
            mapped = ApiError(422, "time_limit", f"nothing usable was found within the time limit of {job.limit_s:g} s "
                              "('time_limit_s'); raise it (up to the server's solve_time_limit_s) or relax the request",
                              "time_limit_s")
        else:
            mapped = map_exception(exc)
            if mapped is not None:
                mapped = self._at_server_limit(job, mapped)
        if mapped is None:
            log.exception("%s job %s failed", job.kind, job.id)
            mapped = ApiError(500, "internal", f"the job failed unexpectedly ({type(exc).__name__}); the server log has the details")
        return error_body(mapped.code, mapped.message, mapped.field, mapped.details)["error"], mapped.status

    def _at_server_limit(self, job: _Job, mapped: ApiError) -> ApiError:
        """A capacity search that found nothing ran up to this server's ``max_devices`` limit:
        say so, with the limit in ``details.server_limit``, so the answer is not read as the
        model's verdict (the CLI and the Python API may search further)."""
        from planner.request.capacity import CapacityServeRequest, CapacityTrainRequest
        from planner.request.fields import field_info

        cap = self.settings.max_devices
        kinds = {"capacity": CapacityServeRequest, "capacity_train": CapacityTrainRequest}
        if mapped.code != "infeasible" or job.kind not in kinds or job.request.get("max_devices") != cap:
            return mapped
        default = field_info(kinds[job.kind])["max_devices"].default
        further = f"; the CLI and the Python API search up to {default} by default" if default > cap else ""
        message = (f"{mapped.message}; the search went up to 'max_devices' {cap} devices, this server's limit "
                   f"(TIERWISE_MAX_DEVICES){further}")
        details = mapped.details
        if details is None or isinstance(details, dict):
            details = {**(details or {}), "server_limit": {"limit": "max_devices", "value": cap}}
        return ApiError(mapped.status, mapped.code, message, mapped.field, details)

    # ---- lifecycle -----------------------------------------------------------------------

    def resume(self) -> int:
        """Claim and re-queue the unfinished (``queued`` or ``running``) jobs whose server is
        gone: those whose lease has expired, or was released by a clean shutdown. Jobs of a
        live server (a fresh lease) stay its own; cancelled, failed and finished jobs stay as
        they are. From the first call on, the lease thread repeats this every
        ``job_lease_s / 3`` seconds, so a killed server's jobs are taken once its lease ends.
        Returns how many jobs this call claimed."""
        with self._cond:
            if self._stopping:
                return 0
            self._claiming = True
        n = 0
        for job in self.store.expired_jobs():
            with self._cond:
                if job.id in self._jobs:
                    continue  # this process's own job, its renewal late: the next renewal keeps it
            if self.store.claim_job(job.id, note="resumed: the server that held it stopped"):
                log.info("claimed %s job %s (its server's lease had expired)", job.kind, job.id)
                self.submit(job.id, job.kind, job.request, job.client)
                n += 1
        return n

    def _keep_leases(self) -> None:
        """Renew this process's leases and claim expired jobs, every ``job_lease_s / 3`` s."""
        interval = self.settings.job_lease_s / 3
        while not self._wake.wait(interval) and not self._stopping:
            try:
                held = self.store.renew_leases()
                self._drop_lost(held)
                if self._claiming:
                    claimed = self.resume()
                    if claimed:
                        log.info("resumed %d jobs of a server that stopped", claimed)
            except Exception:  # noqa: BLE001 - a database hiccup: the next round retries
                log.exception("renewing job leases failed; retrying in %g s", interval)

    def _drop_lost(self, held: set[str]) -> None:
        """Stop working on local jobs the database no longer lists as this process's and
        unfinished: cancelled through another server, or claimed by another server after
        this one's lease lapsed. (A job that just ended here is left to its worker.)"""
        with self._cond:
            missing = [j for j in self._jobs.values() if j.id not in held and not j.done.done()]
        for job in missing:
            row = self.store.get_job(job.id)
            if row is not None and row.status in ("succeeded", "failed"):
                continue
            if row is not None and row.owner == self.store.owner and row.status in ("queued", "running"):
                continue  # admitted or claimed after the renewal read the table
            log.warning("job %s is no longer this server's (%s); dropping it",
                        job.id, "cancelled" if row is not None and row.status == "cancelled" else "claimed by another server")
            with self._cond:
                if job.id not in self._jobs or job.done.done():
                    continue
                if job.deadline is not None:
                    job.deadline.cancel()
                if job in self._pending:
                    self._pending.remove(job)
                    self._jobs.pop(job.id, None)
                    job.done.set_result("cancelled")
                else:
                    self._retire(job, "cancelled")

    def shutdown(self, wait_s: float = 3.0) -> None:
        """Stop taking jobs and cancel the running ones' deadlines (their jobs stay
        ``running`` in the database); wait up to ``wait_s`` for the workers to leave the
        solver, then release this process's leases, so that the next server to start (or one
        already running on the same database) resumes those jobs at once."""
        with self._cond:
            self._stopping = True
            self._wake.set()
            for job in self._jobs.values():
                if job.deadline is not None:
                    job.deadline.cancel()
            self._cond.notify_all()
        end = time.monotonic() + wait_s
        mine = [t for t in threading.enumerate() if t is self._leases or isinstance(t, _Worker) and t.runner is self]
        for t in mine:
            if t is not threading.current_thread():
                t.join(max(0.0, end - time.monotonic()))
        try:
            self.store.release_leases()
        except Exception:  # noqa: BLE001 - the leases then expire on their own
            log.exception("releasing job leases failed; they expire in %g s", self.settings.job_lease_s)


__all__ = ["GRACE_S", "JobRunner", "job_time_limit"]
