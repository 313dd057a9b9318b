"""Durable storage: SQLAlchemy 2.x models and a small repository (:class:`Store`).

SQLite by default (one file, WAL journal, ``synchronous=FULL`` so that an answered
write survives a killed process or a power cut), PostgreSQL through
``TIERWISE_DATABASE_URL=postgresql+psycopg://...``. The schema is created on start.
Every write is one transaction: a plan row and the job that produced it are committed
together, so a crash leaves either both or neither.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON, DateTime, Float, Index, String, Text, create_engine, delete, event, func, inspect, select, text, update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from hwmodels.errors import TierwiseError

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: Statuses of a job that is still to run (the only ones resumed after a restart).
UNFINISHED = ("queued", "running")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_utc(t: dt.datetime) -> str:
    """ISO 8601 in UTC with its offset (``2026-01-02T03:04:05.123456+00:00``); SQLite hands
    back naive datetimes for what was stored in UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat()


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class HardwareRow(Base):
    """A custom hardware profile registered through the API (profile mapping as sent)."""

    __tablename__ = "hardware_profiles"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(80), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ModelRow(Base):
    """A custom HF-style model config registered through the API."""

    __tablename__ = "model_configs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict] = mapped_column(JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class PlanRow(Base):
    """A stored plan: the full plan document plus columns to filter and page on."""

    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    hardware: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    checksum: Mapped[str] = mapped_column(String(80), nullable=False)
    body: Mapped[dict] = mapped_column(JSON, nullable=False)
    request: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_plans_model_created", "model", "created_at"),
        Index("ix_plans_hardware_created", "hardware", "created_at"),
        Index("ix_plans_created", "created_at"),
    )


class PlanIdRow(Base):
    """A plan id reserved by an accepted plan request: the unique key that makes two
    concurrent requests for one id end in one job and one 409. Released when the job fails
    or is cancelled; kept with the stored plan."""

    __tablename__ = "plan_ids"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class JobRow(Base):
    """A plan solve or capacity search run in the background; ``request`` is kept so a
    restart can resume it; ``result`` holds a capacity answer."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    request: Mapped[dict] = mapped_column(JSON, nullable=False)
    plan_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    solve_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    client: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: The server process that runs (or will run) the job: :attr:`Store.owner` of its store.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Until when the owner holds the job; the owner renews it while the job is queued or
    #: running, and any server may claim an unfinished job whose lease has expired (or is
    #: NULL: a job stored before leases existed, or released by a server that stopped).
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_jobs_status", "status"),)


#: Columns added after the first release, added on start when missing (their SQL type is
#: the model's, compiled for the database's dialect).
_ADDED_COLUMNS = (("jobs", "result"), ("jobs", "client"), ("jobs", "owner"), ("jobs", "lease_until"))


class DuplicateIdError(TierwiseError):
    """An id that is already taken; ``catalog`` is what it names (plan, hardware, model)."""

    kind = "conflict"
    code = "duplicate_id"

    def __init__(self, catalog: str, id: str) -> None:
        self.catalog = catalog
        self.id = id
        super().__init__(f"{catalog} id {id!r} already exists", field="id")


class QueueFullError(TierwiseError):
    """``max_pending`` jobs are already queued or running."""

    kind = "unavailable"
    code = "busy"

    def __init__(self, pending: int) -> None:
        self.pending = pending
        super().__init__(f"{pending} jobs are already queued or running; retry later")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; synchronous=FULL: a commit is on disk
    # before it returns (SQLite docs, "PRAGMA synchronous": FULL is durable in WAL
    # mode across power loss; NORMAL may lose the last commits).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    """All reads and writes of the service; each method is one transaction.

    ``owner`` names this server process in the jobs it admits or claims (a fresh id by
    default); ``lease_s`` is how long such a job stays its own without a renewal
    (:meth:`renew_leases`)."""

    def __init__(self, url: str, *, owner: str | None = None, lease_s: float = 15.0) -> None:
        if not lease_s > 0:
            raise ValueError(f"Store lease_s must be > 0; got {lease_s!r}")
        self.url = url
        self.owner = owner or new_id()
        self.lease_s = float(lease_s)
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # Serializes job admission in this process; PostgreSQL also takes a table lock so
        # that several server processes admit against one exact count.
        self._admit = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        """Add columns newer than an existing database, and reserve the ids of plans stored
        before ids were reserved."""
        have = {t: {c["name"] for c in inspect(self.engine).get_columns(t)} for t in {t for t, _ in _ADDED_COLUMNS}}
        with self.engine.begin() as c:
            for table, column in _ADDED_COLUMNS:
                if column not in have[table]:
                    sqltype = Base.metadata.tables[table].c[column].type.compile(dialect=self.engine.dialect)
                    c.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sqltype}"))
            c.execute(text("INSERT INTO plan_ids (id, job_id) SELECT p.id, NULL FROM plans p "
                           "WHERE NOT EXISTS (SELECT 1 FROM plan_ids r WHERE r.id = p.id)"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        with self.engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return True

    # ---- custom hardware -------------------------------------------------------

    def add_hardware(self, id: str, body: dict, content_hash: str) -> HardwareRow:
        row = HardwareRow(id=id, body=body, content_hash=content_hash, created_at=utcnow())
        return self._insert(row, "hardware")

    def get_hardware(self, id: str) -> HardwareRow | None:
        with self.session() as s:
            return s.get(HardwareRow, id)

    def list_hardware(self) -> list[HardwareRow]:
        with self.session() as s:
            return list(s.scalars(select(HardwareRow).order_by(HardwareRow.id)))

    # ---- custom models ---------------------------------------------------------

    def add_model(self, id: str, config: dict) -> ModelRow:
        return self._insert(ModelRow(id=id, config=config, created_at=utcnow()), "model")

    def get_model(self, id: str) -> ModelRow | None:
        with self.session() as s:
            return s.get(ModelRow, id)

    def list_models(self) -> list[ModelRow]:
        with self.session() as s:
            return list(s.scalars(select(ModelRow).order_by(ModelRow.id)))

    # ---- plans -----------------------------------------------------------------

    def add_plan(self, *, id: str, body: dict, request: dict | None, job_id: str | None = None,
                 solve_s: float | None = None) -> PlanRow | None:
        """Store a plan and mark its job succeeded, in one transaction.

        With ``job_id``: the id was reserved by :meth:`admit_job`; returns None (and stores
        nothing) when the job is no longer running (cancelled, or failed at its time limit) or
        no longer this store's (another server claimed it after this one's lease expired).
        Without: the id is reserved here (:class:`DuplicateIdError` when taken)."""
        row = PlanRow(id=id, model=str(body.get("model")), hardware=str(body.get("hardware")), created_at=utcnow(),
                      checksum=str(body.get("checksum") or ""), body=body, request=request)
        try:
            with self.session() as s:
                if job_id is not None:
                    job = s.get(JobRow, job_id)
                    if job is None or job.status != "running" or job.owner != self.owner:
                        return None
                    job.status, job.plan_id, job.solve_s, job.updated_at = "succeeded", id, solve_s, utcnow()
                else:
                    s.add(PlanIdRow(id=id, job_id=None))
                    s.flush()
                s.add(row)
        except IntegrityError:
            raise DuplicateIdError("plan", id) from None
        return row

    def get_plan(self, id: str) -> PlanRow | None:
        with self.session() as s:
            return s.get(PlanRow, id)

    def plan_exists(self, id: str) -> bool:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(PlanRow).where(PlanRow.id == id)) > 0

    def delete_plan(self, id: str) -> bool:
        with self.session() as s:
            row = s.get(PlanRow, id)
            if row is None:
                return False
            s.delete(row)
            s.execute(delete(PlanIdRow).where(PlanIdRow.id == id))
            return True

    def list_plans(self, *, model: str | None, hardware: str | None, limit: int, offset: int) -> tuple[int, list[PlanRow]]:
        q = select(PlanRow)
        c = select(func.count()).select_from(PlanRow)
        if model:
            q, c = q.where(PlanRow.model == model), c.where(PlanRow.model == model)
        if hardware:
            q, c = q.where(PlanRow.hardware == hardware), c.where(PlanRow.hardware == hardware)
        q = q.order_by(PlanRow.created_at.desc(), PlanRow.id).limit(limit).offset(offset)
        with self.session() as s:
            return int(s.scalar(c) or 0), list(s.scalars(q))

    # ---- jobs ------------------------------------------------------------------

    def admit_job(self, *, id: str, kind: str, request: dict, max_pending: int, plan_id: str | None = None,
                  client: str | None = None) -> JobRow:
        """Commit a ``queued`` job in one transaction that (1) counts pending jobs and raises
        :class:`QueueFullError` at ``max_pending`` and (2) reserves ``plan_id`` (unique key:
        :class:`DuplicateIdError` when a stored plan or an accepted request holds it)."""
        now = utcnow()
        job = JobRow(id=id, kind=kind, status="queued", request=request, created_at=now, updated_at=now, client=client,
                     owner=self.owner, lease_until=now + dt.timedelta(seconds=self.lease_s))
        with self._admit:
            try:
                with self.session() as s:
                    if s.get_bind().dialect.name == "postgresql":
                        s.execute(text("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE"))
                    pending = int(s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(UNFINISHED))) or 0)
                    if pending >= max_pending:
                        raise QueueFullError(pending)
                    if plan_id is not None:
                        s.add(PlanIdRow(id=plan_id, job_id=id))
                        s.flush()
                    s.add(job)
            except IntegrityError:
                raise DuplicateIdError("plan", plan_id or id) from None
        return job

    def get_job(self, id: str) -> JobRow | None:
        with self.session() as s:
            return s.get(JobRow, id)

    def job_of_plan_id(self, plan_id: str) -> JobRow | None:
        """The job that reserved ``plan_id`` and has not stored it yet (queued or running), else None."""
        with self.session() as s:
            res = s.get(PlanIdRow, plan_id)
            if res is None or res.job_id is None:
                return None
            job = s.get(JobRow, res.job_id)
            return job if job is not None and job.status in ("queued", "running") else None

    def set_job(self, id: str, *, status: str, error: dict | None = None, note: str | None = None,
                solve_s: float | None = None, result: dict | None = None, only_if: tuple[str, ...] | None = None,
                mine: bool = False) -> bool:
        """Update a job; ``only_if``: only while its status is one of these (False otherwise);
        ``mine``: only while this store's :attr:`owner` holds it (a server whose lease expired
        and whose job another server claimed writes nothing).
        The check and the write are one ``UPDATE … WHERE status IN (…)``, so two threads or
        processes changing one job (a cancel and the worker starting it) cannot both win: a
        read-then-write would let the second write undo the first. A plan job that ends without
        a plan releases its reserved id in the same transaction."""
        assert status in JOB_STATUSES
        values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        for key, value in (("error", error), ("note", note), ("solve_s", solve_s), ("result", result)):
            if value is not None:
                values[key] = value
        cond = [JobRow.id == id]
        if only_if is not None:
            cond.append(JobRow.status.in_(only_if))
        if mine:
            cond.append(JobRow.owner == self.owner)
        with self.session() as s:
            if s.execute(update(JobRow).where(*cond).values(**values)).rowcount != 1:
                return False
            if status in ("failed", "cancelled"):
                # no-op for a capacity job: only plan jobs reserve an id
                s.execute(delete(PlanIdRow).where(PlanIdRow.job_id == id))
            return True

    def unfinished_jobs(self) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.status.in_(UNFINISHED)).order_by(JobRow.created_at)))

    # ---- job leases ------------------------------------------------------------

    def _claimable(self, now: dt.datetime) -> Any:
        return (JobRow.status.in_(UNFINISHED)) & (JobRow.lease_until.is_(None) | (JobRow.lease_until < now))

    def renew_leases(self) -> set[str]:
        """Extend the lease of every unfinished job this store's owner holds (one ``UPDATE``);
        returns their ids (a job missing from them was cancelled, ended, or claimed by
        another server)."""
        now = utcnow()
        mine = (JobRow.owner == self.owner) & JobRow.status.in_(UNFINISHED)
        with self.session() as s:
            s.execute(update(JobRow).where(mine).values(lease_until=now + dt.timedelta(seconds=self.lease_s)))
            return set(s.scalars(select(JobRow.id).where(mine)))

    def release_leases(self) -> int:
        """Give up this owner's unfinished jobs (a clean shutdown): their lease ends now, so
        the next server to look claims them without waiting for it to expire."""
        with self.session() as s:
            mine = (JobRow.owner == self.owner) & JobRow.status.in_(UNFINISHED)
            return s.execute(update(JobRow).where(mine).values(lease_until=None)).rowcount

    def expired_jobs(self) -> list[JobRow]:
        """Unfinished jobs whose lease has expired (their server is gone), oldest first."""
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(self._claimable(utcnow())).order_by(JobRow.created_at)))

    def claim_job(self, id: str, note: str | None = None) -> bool:
        """Take an unfinished job whose lease has expired: it becomes this owner's, ``queued``,
        with a fresh lease. The check and the write are one ``UPDATE … WHERE lease_until <
        now``: of several servers claiming one job at once exactly one gets it (True)."""
        now = utcnow()
        values: dict[str, Any] = {"owner": self.owner, "lease_until": now + dt.timedelta(seconds=self.lease_s),
                                  "status": "queued", "updated_at": now}
        if note is not None:
            values["note"] = note
        with self.session() as s:
            return s.execute(update(JobRow).where(JobRow.id == id, self._claimable(now)).values(**values)).rowcount == 1

    def count_unfinished_jobs(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(UNFINISHED))) or 0)

    # ---- helpers ---------------------------------------------------------------

    def _insert(self, row: Any, kind: str) -> Any:
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            raise DuplicateIdError(kind, row.id) from None
        return row
