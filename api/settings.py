"""Service settings: one frozen object, read from the environment once at start.

Environment variables (all optional):

``TIERWISE_DATABASE_URL``      SQLAlchemy URL; default an SQLite file in the user data folder
``TIERWISE_DATA_DIR``          folder of the default SQLite file (default ``$XDG_DATA_HOME/tierwise``)
``TIERWISE_API_KEY``           when set, every route but ``/healthz`` needs ``Authorization: Bearer <key>``
``TIERWISE_CORS_ORIGINS``      comma-separated origins allowed by CORS (CORS is off when unset)
``TIERWISE_MAX_BODY_BYTES``    largest request body accepted (default 1 MB) → 413 beyond
``TIERWISE_SOLVE_TIME_LIMIT_S`` most solver time one plan request may use (default 60 s)
``TIERWISE_SYNC_WAIT_S``       how long ``POST /v1/plans`` waits before answering 202 (default 5 s)
``TIERWISE_MAX_GROUPS``        largest problem a plan request may pose, in decision groups (default 5000)
``TIERWISE_MAX_DEVICES``       most devices a request may ask about (default 4096)
``TIERWISE_WORKERS``           job threads (plan solves, capacity searches; default 2)
``TIERWISE_SHORT_WORKERS``     extra threads that take only short jobs (default 1)
``TIERWISE_SHORT_JOB_S``       a job whose time limit is at most this is short (default 10 s)
``TIERWISE_MAX_PENDING_JOBS``  queued or running jobs beyond which new ones get 503 (default 200)
``TIERWISE_RETRY_AFTER_S``     the ``Retry-After`` of a 503 (default 5 s)
``TIERWISE_JOB_LEASE_S``       how long a server holds its unfinished jobs without renewing
                               them (default 15 s; renewed every third of it); another
                               server on the same database resumes a job only once its lease
                               has expired, i.e. its server is gone
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tierwise"


def _float(env: dict, key: str, default: float, *, positive: bool = True) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {key} must be a number; got {raw!r}") from None
    if positive and not value > 0:
        raise ValueError(f"environment variable {key} must be > 0; got {raw!r}")
    return value


def _int(env: dict, key: str, default: int, *, positive: bool = True) -> int:
    value = _float(env, key, float(default), positive=positive)
    if value != int(value):
        raise ValueError(f"environment variable {key} must be a whole number; got {env.get(key)!r}")
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service is configured by. Sizes in bytes, times in seconds."""

    database_url: str
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1_000_000
    solve_time_limit_s: float = 60.0
    sync_wait_s: float = 5.0
    max_groups: int = 5000
    max_devices: int = 4096
    workers: int = 2
    short_workers: int = 1
    short_job_s: float = 10.0
    max_pending_jobs: int = 200
    retry_after_s: int = 5
    job_lease_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.database_url:
            raise ValueError("Settings.database_url must be a SQLAlchemy URL such as sqlite:///tierwise.db")
        if not isinstance(self.short_workers, int) or self.short_workers < 0:
            raise ValueError(f"Settings.short_workers must be a non-negative integer; got {self.short_workers!r}")
        for name in ("max_body_bytes", "max_groups", "max_devices", "workers", "max_pending_jobs", "retry_after_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Settings.{name} must be a positive integer; got {v!r}")
        if not isinstance(self.job_lease_s, (int, float)) or not self.job_lease_s > 0:
            raise ValueError(f"Settings.job_lease_s must be a positive number of seconds; got {self.job_lease_s!r}")
        for name in ("solve_time_limit_s", "sync_wait_s", "short_job_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"Settings.{name} must be a non-negative number of seconds; got {v!r}")

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        url = env.get("TIERWISE_DATABASE_URL")
        if not url:
            folder = Path(env.get("TIERWISE_DATA_DIR") or default_data_dir())
            url = f"sqlite:///{folder / 'tierwise.db'}"
        origins = tuple(o.strip() for o in (env.get("TIERWISE_CORS_ORIGINS") or "").split(",") if o.strip())
        return cls(
            database_url=url,
            api_key=env.get("TIERWISE_API_KEY") or None,
            cors_origins=origins,
            max_body_bytes=_int(env, "TIERWISE_MAX_BODY_BYTES", 1_000_000),
            solve_time_limit_s=_float(env, "TIERWISE_SOLVE_TIME_LIMIT_S", 60.0),
            sync_wait_s=_float(env, "TIERWISE_SYNC_WAIT_S", 5.0, positive=False),
            max_groups=_int(env, "TIERWISE_MAX_GROUPS", 5000),
            max_devices=_int(env, "TIERWISE_MAX_DEVICES", 4096),
            workers=_int(env, "TIERWISE_WORKERS", 2),
            short_workers=_int(env, "TIERWISE_SHORT_WORKERS", 1, positive=False),
            short_job_s=_float(env, "TIERWISE_SHORT_JOB_S", 10.0, positive=False),
            max_pending_jobs=_int(env, "TIERWISE_MAX_PENDING_JOBS", 200),
            retry_after_s=_int(env, "TIERWISE_RETRY_AFTER_S", 5),
            job_lease_s=_float(env, "TIERWISE_JOB_LEASE_S", 15.0),
        )

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)
