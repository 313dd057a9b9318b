"""Durable storage: SQLAlchemy 2.x models and a small repository (:class:`Store`).

SQLite by default (one file, WAL journal, ``synchronous=FULL`` so that an answered
write survives a killed process or a power cut), PostgreSQL through
``TIERWISE_DATABASE_URL=postgresql+psycopg://...``. The schema is created on start.
Every write is one transaction: a plan row and the job that produced it are committed
together, so a crash leaves either both or neither.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, String, Text, create_engine, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from hwmodels.errors import TierwiseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

JOB_STATUSES = ("queued", "running", "succeeded", "failed")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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


class JobRow(Base):
    """A plan solve run in the background; ``request`` is kept so a restart can resume it."""

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

    __table_args__ = (Index("ix_jobs_status", "status"),)


class DuplicateIdError(TierwiseError):
    """An id that is already taken; ``catalog`` is what it names (plan, hardware, model)."""

    kind = "conflict"
    code = "duplicate_id"

    def __init__(self, catalog: str, id: str) -> None:
        self.catalog = catalog
        self.id = id
        super().__init__(f"{catalog} id {id!r} already exists", field="id")


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
    """All reads and writes of the service; each method is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

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
                 solve_s: float | None = None) -> PlanRow:
        """Store a plan (and mark its job succeeded in the same transaction)."""
        row = PlanRow(id=id, model=str(body.get("model")), hardware=str(body.get("hardware")), created_at=utcnow(),
                      checksum=str(body.get("checksum") or ""), body=body, request=request)
        try:
            with self.session() as s:
                s.add(row)
                s.flush()
                if job_id is not None:
                    job = s.get(JobRow, job_id)
                    if job is not None:
                        job.status, job.plan_id, job.solve_s, job.updated_at = "succeeded", id, solve_s, utcnow()
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

    def add_job(self, *, id: str, kind: str, request: dict) -> JobRow:
        now = utcnow()
        return self._insert(JobRow(id=id, kind=kind, status="queued", request=request, created_at=now, updated_at=now), "job")

    def get_job(self, id: str) -> JobRow | None:
        with self.session() as s:
            return s.get(JobRow, id)

    def set_job(self, id: str, *, status: str, error: dict | None = None, note: str | None = None,
                solve_s: float | None = None) -> None:
        assert status in JOB_STATUSES
        with self.session() as s:
            job = s.get(JobRow, id)
            if job is None:
                return
            job.status, job.updated_at = status, utcnow()
            if error is not None:
                job.error = error
            if note is not None:
                job.note = note
            if solve_s is not None:
                job.solve_s = solve_s

    def unfinished_jobs(self) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.status.in_(("queued", "running"))).order_by(JobRow.created_at)))

    def count_unfinished_jobs(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(("queued", "running")))) or 0)

    # ---- helpers ---------------------------------------------------------------

    def _insert(self, row: Any, kind: str) -> Any:
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            raise DuplicateIdError(kind, row.id) from None
        return row
