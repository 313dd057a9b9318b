"""What the routes call: id resolution (catalog or stored custom entries), estimates,
plan solves, exports. Routes stay thin; planner errors become :class:`ApiError` here.
"""

from __future__ import annotations

import difflib
import re
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from api.db import Store
from api.errors import ApiError, map_exception
from api.limits import check_depth, check_model_size, group_count
from api.settings import Settings


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn planner / hwmodels exceptions into ApiErrors (unknown ones propagate)."""
    from planner.errors import TierwiseError

    try:
        yield
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised
        mapped = map_exception(exc)
        if mapped is None and isinstance(exc, TierwiseError):
            mapped = ApiError(exc.http_status, exc.code, exc.render("rest"), exc.field, exc.render_details("rest"))
        if mapped is None:
            raise
        raise mapped from exc


def safe_yaml(text: str, field: str) -> Any:
    """Parse YAML from a client with :func:`hwmodels.safeyaml.load_untrusted`: no tags, no
    anchors or aliases, bounded size and nesting, refused before any object is built."""
    from hwmodels.safeyaml import UnsafeYamlError, load_untrusted

    try:
        return load_untrusted(text, field=field)
    except UnsafeYamlError as e:
        raise ApiError(422, "invalid_yaml", e.render("rest"), field) from None


@functools.lru_cache(maxsize=1)
def catalog_devices() -> frozenset[str]:
    from hwmodels import list_devices

    return frozenset(list_devices())


@functools.lru_cache(maxsize=1)
def catalog_models() -> frozenset[str]:
    from planner.arch import list_models

    return frozenset(list_models())


class Catalog:
    """Hardware and models by id: shipped catalog first, then custom entries in the store.

    Catalog ids are never read as paths (ids are checked against the catalog listing
    before any load), so a client cannot make the server open a file.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], Any] = {}
        self._archs: dict[str, Any] = {}

    # -- hardware ---------------------------------------------------------------------

    def device(self, id: str):
        from hwmodels import load_device, load_device_from_dict

        if id in catalog_devices():
            with domain_errors():
                return load_device(id)
        row = self.store.get_hardware(id)
        if row is None:
            known = sorted(catalog_devices() | {r.id for r in self.store.list_hardware()})
            raise ApiError(404, "not_found", _unknown_msg("hardware", id, known), "hardware",
                           {"suggestions": _suggest(id, known)} if _suggest(id, known) else None)
        key = (row.id, row.content_hash)
        with self._lock:
            spec = self._devices.get(key)
        if spec is None:
            with domain_errors():
                spec = load_device_from_dict(row.body, origin=f"<hardware {row.id}>")
            with self._lock:
                self._devices[key] = spec
        return spec

    def is_custom_device(self, id: str) -> bool:
        return id not in catalog_devices()

    # -- models -----------------------------------------------------------------------

    def arch(self, id: str):
        from planner.arch import arch_from_config, load_arch

        if id in catalog_models():
            with domain_errors():
                return load_arch(id)
        with self._lock:
            spec = self._archs.get(id)
        if spec is not None:
            return spec
        row = self.store.get_model(id)
        if row is None:
            known = sorted(catalog_models() | {r.id for r in self.store.list_models()})
            raise ApiError(404, "not_found", _unknown_msg("model", id, known), "model",
                           {"suggestions": _suggest(id, known)} if _suggest(id, known) else None)
        with domain_errors():
            spec = arch_from_config(row.config, model_id=row.id, origin=f"<model {row.id}>")
        with self._lock:
            self._archs[id] = spec
        return spec


def _suggest(id: str, known: list[str]) -> list[str]:
    """Close ids: the same one up to case and punctuation alone ('Llama-3.1-8B'), else those
    that start with it, then spelling neighbours."""
    from hwmodels.errors import close_ids

    exact = close_ids(id, known, n=1)
    if exact and re.sub(r"[^a-z0-9]", "", exact[0]) == re.sub(r"[^a-z0-9]", "", id.lower()):
        return exact
    prefix = [k for k in known if id and k.startswith(id.lower())]
    return (prefix + [k for k in difflib.get_close_matches(id, known, n=5, cutoff=0.6) if k not in prefix])[:6]


def _unknown_msg(kind: str, id: str, known: list[str]) -> str:
    s = _suggest(id, known)
    msg = f"unknown {kind} id {id!r}"
    if s:
        msg += "; did you mean " + ", ".join(s) + "?"
    return msg + f" (GET /v1/{'hardware' if kind == 'hardware' else 'models'} lists them)"


# ---------------------------------------------------------------------------
# hardware / model registration
# ---------------------------------------------------------------------------


def register_hardware(store: Store, catalog: Catalog, profile: dict | None, text: str | None) -> dict:
    from hwmodels import load_device_from_dict

    from api.db import DuplicateIdError

    src = "profile" if profile is not None else "yaml"
    data = profile if profile is not None else safe_yaml(text or "", "yaml")
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_profile", f"'{src}': the profile must be a mapping; got {type(data).__name__}", src)
    check_depth(data, src)
    pid = data.get("id")
    field = f"{src}.id"
    from hwmodels.ids import ID_PATTERN, ID_RE

    if not isinstance(pid, str) or not ID_RE.fullmatch(pid):
        raise ApiError(422, "invalid_field", f"'{field}' must be an id matching {ID_PATTERN}; got {pid!r}", field)
    if pid in catalog_devices():
        raise ApiError(409, "duplicate_id", f"'{field}': hardware id {pid!r} is a catalog profile; choose another id", field)
    with domain_errors(), profile_errors(src):
        spec = load_device_from_dict(data, origin=f"<hardware {pid}>")
    try:
        store.add_hardware(pid, json.loads(json.dumps(data)), spec.content_hash)
    except DuplicateIdError:
        raise ApiError(409, "duplicate_id", f"'{field}': hardware id {pid!r} is already registered", field) from None
    return hardware_public(spec, custom=True)


#: ``[0]`` in a profile field name (the loader's list index).
_INDEX = re.compile(r"\[(\d+)\]")


def body_path(src: str, field: str | None) -> str:
    """A profile field (``memory[0].read_curve[2][1]``, the loader's naming) as its path in the
    request body, in the form every other field of the API takes (``profile.memory.0.read_curve.2.1``;
    ``yaml.…`` for YAML text); the source itself for an error about the whole document."""
    if not field or field.startswith(("<", "(")):
        return src
    return src + "." + _INDEX.sub(r".\1", field)


@contextmanager
def profile_errors(src: str) -> Iterator[None]:
    """A hardware profile's error naming the field by its path in the request body
    (:func:`body_path`: ``'profile.sources'``, ``'profile.memory.0.bandwidth_gb_per_s'``), as the
    id's own error does, not by the bare key nor the profile's internal origin."""
    from hwmodels.errors import ProfileError, TierwiseError, describe_value

    try:
        yield
    except ProfileError as exc:
        where = body_path(src, exc.field)
        if where == src:
            text = f"'{where}' must be {exc.expected}; got {describe_value(exc.got)}"
        elif exc.expected == "present" and exc.got is None:
            text = f"'{where}' is missing"
        else:
            text = f"'{where}' must be {exc.expected}; got {describe_value(exc.got)}"
        raise ApiError(422, exc.code, text, where) from None
    except TierwiseError as exc:
        if exc.field is None or exc.field == src or exc.field.startswith(f"{src}."):
            raise
        raise ApiError(exc.http_status, exc.code, exc.render("rest"), body_path(src, exc.field)) from None


@contextmanager
def config_errors(src: str, origin: str, data: dict) -> Iterator[None]:
    """A model config's error naming the key by its path in the request body, as the caller wrote
    it and as the size limits name it (``'config.hidden_size'``, ``'config.rope_scaling.factor'``;
    ``yaml.…`` for YAML text), not the bare key nor the config's internal origin."""
    from hwmodels.errors import describe_value

    from planner.archspec import ModelConfigError
    from planner.request.limits import MODEL_LIMITS

    try:
        yield
    except ModelConfigError as exc:
        block: Any = data
        path = [src]
        for name in re.findall(r" \(([^()]+)\)", exc.path[len(origin):] if exc.path.startswith(origin) else ""):
            path.append(name)
            block = block.get(name) if isinstance(block, dict) else None
        key = exc.field
        if key is not None and isinstance(block, dict) and key not in block and key in MODEL_LIMITS:
            key = next((k for k in MODEL_LIMITS[key][1] if k in block), key)  # an ArchSpec field → the config's key
        where = ".".join(path + ([key] if key is not None else []))
        if key is None:
            text = f"'{where}': {exc.expected}; got {exc.got}"
        elif getattr(exc, "_missing", False):  # the key is absent (not given as null)
            text = f"'{where}' is missing; it must be {exc.expected}"
        else:
            text = f"'{where}' must be {exc.expected}; got {describe_value(exc.got)}"
        raise ApiError(422, exc.code or "invalid_model_config", text, where) from None


def register_model(store: Store, id: str, config: dict | None, text: str | None) -> dict:
    from planner.arch import arch_from_config

    from api.db import DuplicateIdError

    data = config if config is not None else safe_yaml(text or "", "yaml")
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_model_config", f"the config must be a mapping; got {type(data).__name__}", "config")
    clash = next((m for m in catalog_models() if m.lower() == id.lower()), None)
    if clash is not None:  # LLAMA-3.1-8B beside llama-3.1-8b would name two models by one name
        same = "is" if clash == id else f"differs only in case from {clash!r},"
        raise ApiError(409, "duplicate_id", f"model id {id!r} {same} a catalog model; choose another id", "id")
    taken = next((m.id for m in store.list_models() if m.id.lower() == id.lower() and m.id != id), None)
    if taken is not None:
        raise ApiError(409, "duplicate_id", f"model id {id!r} differs only in case from the registered {taken!r}; "
                       "choose another id", "id")
    check_depth(data, "config")
    from hwmodels.loader import non_json_value

    bad = non_json_value(data)
    if bad is not None:
        raise ApiError(422, "invalid_model_config", f"'config.{bad[0]}' must be a finite number or other JSON data; got {bad[1]!r}",
                       f"config.{bad[0]}")
    try:
        json.dumps(data, allow_nan=False)
    except ValueError as e:
        raise ApiError(422, "invalid_model_config", f"'config' must be plain JSON data ({e})", "config") from None
    src = "config" if config is not None else "yaml"
    origin = f"<model {id}>"
    with domain_errors(), config_errors(src, origin, data):
        arch = arch_from_config(data, model_id=id, origin=origin)
        check_model_size(arch, data, src)
        summary = model_public(arch, custom=True)
    try:
        store.add_model(id, data)
    except DuplicateIdError:
        raise ApiError(409, "duplicate_id", f"model id {id!r} is already registered", "id") from None
    return summary


def _peak(dev, precision: str) -> float | None:
    try:
        return dev.peak_flops_per_s(precision)
    except Exception:  # noqa: BLE001 - a device may have no path for this precision
        return None


def hardware_public(dev, *, custom: bool) -> dict:
    """Summary in SI units plus the profile mapping itself (``device_to_dict``: YAML units)."""
    from hwmodels import device_to_dict
    from planner.cli.common import clean_json

    return clean_json({
        "id": dev.id,
        "name": dev.name,
        "class": dev.device_class,
        "vendor": dev.vendor,
        "memory_capacity_bytes": dev.memory_capacity_bytes,
        "device_bandwidth_bytes_per_s": dev.device_tier.bandwidth_bytes_per_s,
        "peak_bf16_flops_per_s": _peak(dev, "bf16"),
        "devices_per_node": dev.devices_per_node,
        "usd_per_hour": dev.usd_per_hour,
        "tiers": [{"name": t.name, "role": t.role, "capacity_bytes": t.capacity_bytes,
                   "bandwidth_bytes_per_s": t.bandwidth_bytes_per_s} for t in dev.tiers],
        "content_hash": dev.content_hash,
        "custom": custom,
        "profile": device_to_dict(dev),
    })


def hardware_summary(dev, *, custom: bool) -> dict:
    from planner.cli.common import clean_json

    return clean_json({
        "id": dev.id,
        "name": dev.name,
        "class": dev.device_class,
        "memory_capacity_bytes": dev.memory_capacity_bytes,
        "device_bandwidth_bytes_per_s": dev.device_tier.bandwidth_bytes_per_s,
        "peak_bf16_flops_per_s": _peak(dev, "bf16"),
        "usd_per_hour": dev.usd_per_hour,
        "custom": custom,
    })


def model_public(arch, *, custom: bool) -> dict:
    from planner.cli.common import clean_json

    kv = arch.kv_bytes_per_token(2.0) if arch.generative else 0
    return clean_json({
        "id": arch.id,
        "model_type": arch.model_type,
        "family": arch.family,
        "params": arch.param_count(),
        "active_params": arch.active_param_count(),
        "num_layers": arch.num_layers,
        "hidden_size": arch.hidden_size,
        "num_heads": arch.num_heads,
        "num_kv_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "intermediate_size": arch.intermediate_size,
        "vocab_size": arch.vocab_size,
        "num_experts": arch.num_experts,
        "experts_per_token": arch.experts_per_token,
        "max_position_embeddings": arch.max_position_embeddings,
        "kv_cache_bytes_per_token_bf16": kv,
        "source": arch.source,
        "custom": custom,
    })


# ---------------------------------------------------------------------------
# estimates
# ---------------------------------------------------------------------------


class _Lru:
    """A small thread-safe LRU for pure results (estimates are functions of their inputs)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


_ESTIMATES = _Lru(4096)


def _estimate_key(req: dict) -> str:
    return json.dumps({k: v for k, v in req.items() if v is not None}, sort_keys=True)


def estimate_cached(catalog: Catalog, req: dict) -> bytes | None:
    """A cached estimate for a catalog model and catalog hardware, else None (no I/O)."""
    if req["model"] not in catalog_models() or req["hardware"] not in catalog_devices():
        return None
    return _ESTIMATES.get(("catalog", _estimate_key(req)))


def estimate(catalog: Catalog, req: dict) -> bytes:
    """The JSON bytes of ``tierwise estimate --json`` for one request (cached: pure).

    The request goes through the one request layer (``planner.request``), as the CLI's and
    the Python API's do. Catalog entries are immutable while the server runs; custom ones
    are keyed by their content so that a cached answer never outlives the profile it was
    computed from."""
    from planner.request import build_estimate_request, estimate_result_dict, run_estimate

    with domain_errors():
        build_estimate_request(req)  # field errors before any lookup
    arch = catalog.arch(req["model"])
    dev = catalog.device(req["hardware"])
    if req["model"] in catalog_models() and req["hardware"] in catalog_devices():
        key: tuple = ("catalog", _estimate_key(req))
    else:
        key = ("custom", _estimate_key(req), id(arch), dev.content_hash)
    hit = _ESTIMATES.get(key)
    if hit is not None:
        return hit
    with domain_errors():
        r = build_estimate_request({**req, "model": arch, "hardware": dev})
        result = estimate_result_dict(r, run_estimate(r))
    body = json.dumps(result, separators=(",", ":")).encode()
    _ESTIMATES.put(key, body)
    return body


# ---------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------


def check_plan_limits(catalog: Catalog, settings: Settings, req: dict) -> None:
    """Refuse a solve that is over the service's limits (422 naming the limit), cheaply:
    the group count comes from the workload's blocks, not from building every group."""

    devices = int(req.get("devices") or 1)
    if devices > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'devices' {devices} is over this server's limit max_devices={settings.max_devices}", "devices",
                       {"limit": "max_devices", "value": settings.max_devices})
    tl = req.get("time_limit_s")
    if tl is not None and tl > settings.solve_time_limit_s:
        raise ApiError(422, "limit_exceeded", f"'time_limit_s' {tl:g} is over this server's limit solve_time_limit_s={settings.solve_time_limit_s:g}",
                       "time_limit_s", {"limit": "solve_time_limit_s", "value": settings.solve_time_limit_s})
    arch = catalog.arch(req["model"])
    catalog.device(req["hardware"])
    with domain_errors():
        groups = group_count(arch)
    if groups > settings.max_groups:
        raise ApiError(422, "limit_exceeded", f"model {arch.id!r} has {groups} decision groups, over this server's limit "
                       f"max_groups={settings.max_groups}", "model", {"limit": "max_groups", "value": settings.max_groups})


def check_plan(catalog: Catalog, settings: Settings, req: dict) -> None:
    """Validate a plan request before it becomes a job: the service's limits, then the request
    layer's resolution of the request (every field's value, the engine on the hardware, the
    formats: everything before the solve), so bad input answers 4xx at once instead of queueing
    a job that can only fail."""
    from planner.request.plan import PlanRequest, resolve_plan

    check_plan_limits(catalog, settings, req)
    fields = {k: v for k, v in req.items() if v is not None and k != "id"}
    arch = catalog.arch(req["model"])
    dev = catalog.device(req["hardware"])
    with domain_errors():
        resolve_plan(PlanRequest(**{**fields, "model": arch, "hardware": dev}))


def solve_plan_request(catalog: Catalog, settings: Settings, req: dict, deadline=None) -> dict:
    """Solve one plan request under ``deadline`` (a :class:`planner.deadline.Deadline`; by
    default the request's time limit capped by the server's) and return the plan as a dict."""
    from planner.deadline import Deadline
    from planner.plan import plan_to_dict

    from api.jobs import job_time_limit

    deadline = deadline or Deadline(job_time_limit(settings, req))
    arch = catalog.arch(req["model"])
    dev = catalog.device(req["hardware"])
    with domain_errors():
        plan = _solve(arch, dev, req, deadline)
        return plan_to_dict(plan)


def _solve(arch, dev, req: dict, deadline):
    """The request layer's plan (``planner.request.plan``) under the job's ``deadline``."""
    from planner.request.plan import PlanRequest, run_plan

    deadline.check("the solve")
    fields = {k: v for k, v in req.items() if v is not None and k != "id"}
    # time_limit_s: what is left of the job's deadline (it also bounds the ILP backend's own limit)
    time_limit_s = max(deadline.remaining(), 0.01)
    return run_plan(PlanRequest(**{**fields, "model": arch, "hardware": dev, "time_limit_s": time_limit_s}),
                    deadline=deadline)


def export_context(catalog: Catalog, plan: dict):
    """What the exporters may know beyond the plan: module names and device capacity."""
    from planner.export import ExportContext, group_modules

    arch = dev = None
    try:
        arch = catalog.arch(str(plan.get("model")))
    except ApiError:
        pass
    try:
        dev = catalog.device(str(plan.get("hardware")))
    except ApiError:
        pass
    return ExportContext(
        modules=group_modules(arch) if arch is not None else None,
        arch=arch,
        device_capacity_bytes=dev.memory_capacity_bytes if dev is not None else None,
        devices_per_node=getattr(dev, "devices_per_node", None) if dev is not None else None,
    )


# ---------------------------------------------------------------------------
# capacity
# ---------------------------------------------------------------------------


def _serve_request(catalog: Catalog, req: dict):
    from planner.request.capacity import CapacityServeRequest

    fields = {k: v for k, v in req.items() if v is not None}
    if fields.get("model") is not None:
        fields["model"] = catalog.arch(fields["model"])
    if fields.get("models") is not None:
        fields["models"] = [catalog.arch(m) for m in fields["models"]]
    _hardware(catalog, fields)
    return CapacityServeRequest(**fields)


def capacity(catalog: Catalog, req: dict, deadline=None) -> dict:
    """``tierwise capacity serve`` for one request, as its ``--json`` answer; ``deadline``
    (a :class:`planner.deadline.Deadline`, the job's) stops the search."""
    from planner.request import json_safe
    from planner.request.capacity import run_capacity_serve

    request = _serve_request(catalog, req)
    with domain_errors():
        return json_safe(run_capacity_serve(request, deadline=deadline).to_dict())


def check_capacity(catalog: Catalog, kind: str, req: dict) -> None:
    """Validate a capacity request (serving or training) before it becomes a job: every error
    a search would raise before it starts (an unknown id, an engine that does not run the
    pair, a refused launch mode, optimizer or layout) is raised here, so the caller answers
    4xx at once instead of queueing a job that can only fail."""
    from planner.request.capacity import resolve_capacity_serve, resolve_training_fleet

    with domain_errors():
        if kind == "capacity":
            resolve_capacity_serve(_serve_request(catalog, req))
        else:
            resolve_training_fleet(_train_request(catalog, req)[0])


def _hardware(catalog: Catalog, fields: dict) -> None:
    """Hardware ids resolved (custom ones from the store); left out with an engine given, the
    request layer keeps the catalog devices one of the engines runs on. An empty list stays
    empty (the request layer refuses it), it is not "every device"."""
    if fields.get("hardware") is not None or fields.get("engine") is None:
        given = fields.get("hardware")
        fields["hardware"] = [catalog.device(h) for h in (sorted(catalog_devices()) if given is None else given)]


def frontier(catalog: Catalog, req: dict, deadline=None) -> dict:
    """``tierwise capacity frontier`` for one request, as its ``--json`` answer; ``deadline``
    (a :class:`planner.deadline.Deadline`) stops the search: the answer then covers the pairs
    searched (``status: "time_limit"``), or 422 ``time_limit`` when none was."""
    from planner.deadline import DeadlineExceeded
    from planner.request import json_safe
    from planner.request.capacity import CapacityFrontierRequest, run_capacity_frontier

    fields = {k: v for k, v in req.items() if v is not None}
    fields["model"] = catalog.arch(fields["model"])
    _hardware(catalog, fields)
    with domain_errors():
        try:
            return json_safe(run_capacity_frontier(CapacityFrontierRequest(**fields), deadline=deadline).to_dict())
        except DeadlineExceeded:
            raise ApiError(422, "time_limit", "no (engine, hardware) pair was searched within the time limit "
                           "('time_limit_s'); raise it (up to the server's solve_time_limit_s) or ask for fewer "
                           "hardware, engines or formats", "time_limit_s") from None


def _train_request(catalog: Catalog, req: dict):
    """(CapacityTrainRequest, several hardware?) of a REST body."""
    from planner.request.capacity import CapacityTrainRequest

    fields = {k: v for k, v in req.items() if v is not None}
    fields["model"] = catalog.arch(fields["model"])
    several = isinstance(fields["hardware"], list)  # one answer per hardware, as for several on the CLI
    fields["hardware"] = [catalog.device(h) for h in fields["hardware"]] if several else catalog.device(fields["hardware"])
    return CapacityTrainRequest(**fields), several


def train_capacity(catalog: Catalog, req: dict, deadline=None) -> dict:
    """``tierwise capacity train`` for one request, as its ``--json`` answer (``deadline``: as
    for :func:`capacity`)."""
    from planner.request import json_safe
    from planner.request.capacity import run_capacity_train

    request, several = _train_request(catalog, req)
    with domain_errors():
        fleet = run_capacity_train(request, deadline=deadline)
        return json_safe(fleet.to_dict() if several else fleet[0].to_dict())
