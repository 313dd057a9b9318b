"""The planning web page and the two small JSON resources it needs beyond the other routes.

``GET /`` serves ``api/static/index.html``; ``GET /ui/app.js`` and ``GET /ui/app.css`` its
script and style sheet (package data, hand-written, no build step). These three paths
answer without the API key (:data:`PUBLIC_PATHS`): they are the same static files for
everyone, and the page asks for the key itself before it calls the API. The page sends
a Content-Security-Policy that allows only its own origin, so it cannot reach any other
host even if a value it shows were crafted to try.

``GET /v1/formats`` lists the numeric formats (with their price in bits), the sparsity
patterns and the export targets, so clients do not keep their own copies of the lists.
``GET /v1/hardware/{id}/roofs`` gives a device's compute roofs per precision and its
memory tiers' bandwidths: with the per-operator FLOPs and bytes of ``POST /v1/estimate``
(``per_op: true``) that is everything a roofline chart needs.
"""

from __future__ import annotations

import hashlib
import math
import typing
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from api.deps import CatalogDep
from api.errors import ApiError
from api.routes import COMMON, errors

#: The page's own files: answered without the API key (the key guards data, not these).
PUBLIC_PATHS = frozenset({"/", "/ui/app.js", "/ui/app.css"})

#: The page's files, shipped as package data beside this package's modules.
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

#: Only this origin, no inline script or style, no frames, no form posts elsewhere.
#: ``img-src data:`` lets the page use a data: favicon (so the browser asks no /favicon.ico).
#: Export downloads are blob: links of this origin, which fetch directives do not govern.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["ui"])


def _static(name: str, request: Request) -> Response:
    try:
        data = (STATIC_DIR / name).read_bytes()
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"the web page's file {name!r} is not installed (package data api/static/)") from None
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {**SECURITY_HEADERS, "ETag": etag}
    # no-cache + ETag: the browser revalidates each load and gets a body-less 304 when
    # the file is unchanged, so an upgraded server never runs against a stale script.
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type=_STATIC[name], headers=headers)


@router.get("/", include_in_schema=False)
def index(request: Request) -> Response:
    return _static("index.html", request)


@router.get("/ui/app.js", include_in_schema=False)
def app_js(request: Request) -> Response:
    return _static("app.js", request)


@router.get("/ui/app.css", include_in_schema=False)
def app_css(request: Request) -> Response:
    return _static("app.css", request)


# ---------------------------------------------------------------------------
# /v1/formats
# ---------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class FormatPublic(_Out):
    name: str
    kind: str
    family: str
    bits_per_value: float
    roles: list[str]
    hw_precision: str
    description: str


class FormatList(_Out):
    formats: list[FormatPublic]
    aliases: dict[str, str]
    sparsity: list[str]
    export_formats: list[str]


@router.get("/v1/formats", response_model=FormatList, tags=["formats"], responses=COMMON)
def list_formats() -> dict:
    """Every registered numeric format with its price in bits per value (4096 × 4096 matrix,
    scales and zero-points included), the sparsity patterns and the export targets."""
    from planner import formats as fm

    from api.routes.plans import ExportFormat

    items = [{
        "name": f.name, "kind": f.kind, "family": f.family, "bits_per_value": f.bits_per_value(),
        "roles": list(f.roles), "hw_precision": f.hw_precision, "description": f.description,
    } for f in fm.list_formats()]
    return {
        "formats": items,
        "aliases": dict(fm._ALIASES),
        # 'unstructured:S' takes any S in [0, 1); 0.5 is an example the page offers.
        "sparsity": ["dense", "2:4", "unstructured:0.5"],
        "export_formats": list(typing.get_args(ExportFormat)),
    }


# ---------------------------------------------------------------------------
# /v1/hardware/{id}/roofs
# ---------------------------------------------------------------------------


class RoofPublic(_Out):
    precision: str
    precisions: list[str]
    emulated_precisions: list[str]
    unit: str
    peak_flops_per_s: float
    sparse_2to4_peak_flops_per_s: float
    ridge_flop_per_byte: float | None


class TierRoofPublic(_Out):
    name: str
    role: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float


class RoofsPublic(_Out):
    hardware: str
    name: str
    device_tier: str
    device_bandwidth_bytes_per_s: float
    compute: list[RoofPublic]
    tiers: list[TierRoofPublic]


@router.get("/v1/hardware/{hardware_id}/roofs", response_model=RoofsPublic, tags=["hardware"],
            responses={**COMMON, **errors(404)})
def get_roofs(hardware_id: str, catalog: CatalogDep) -> dict:
    """Peak FLOP/s per precision (dense and 2:4 sparse) and bandwidth per memory tier.

    The ridge point is peak / device-tier bandwidth (Williams et al., "Roofline", CACM
    2009): operators of lower arithmetic intensity are bound by memory. Precisions with
    the same peak on one compute unit share one entry (``precisions`` names them all).
    Only precisions the unit has hardware for get a roof; one it runs by converting to a
    wider type (int4 on an H100) is listed in that roof's ``emulated_precisions``.
    """
    from hwmodels import PRECISIONS

    dev = catalog.device(hardware_id)
    bw = dev.device_tier.bandwidth_bytes_per_s
    roofs: list[dict] = []
    for unit in dev.unit_names:
        try:
            listed = set(dev.compute_unit(unit).precisions)
        except KeyError:  # the FPGA fabric: every precision it builds is its own
            listed = set(PRECISIONS)
        for prec in PRECISIONS:
            try:
                peak = dev.peak_flops_per_s(prec, unit=unit)
                sparse = dev.peak_flops_per_s(prec, unit=unit, sparse_2to4=True)
            except Exception:  # noqa: BLE001 - a unit without this precision (or a wider one) has no roof for it
                continue
            if not (peak > 0 and math.isfinite(peak)):
                continue
            # Precisions with the same peak on one unit (bf16 = fp16, fp8 = int8 on most
            # GPUs, or a precision served by a wider one) share one roof line.
            same = next((r for r in roofs if r["unit"] == unit and abs(r["peak_flops_per_s"] - peak) <= 1e-9 * peak), None)
            if prec not in listed:
                # No hardware for it (int4 on Hopper): it runs on a wider type's roof and
                # gets no roof of its own.
                if same is not None:
                    same["emulated_precisions"].append(prec)
                continue
            if same is not None:
                same["precisions"].append(prec)
                continue
            roofs.append({"precision": prec, "precisions": [prec], "emulated_precisions": [], "unit": unit, "peak_flops_per_s": peak,
                          "sparse_2to4_peak_flops_per_s": sparse, "ridge_flop_per_byte": peak / bw if bw > 0 else None})
    tiers = [{"name": t.name, "role": t.role, "capacity_bytes": t.capacity_bytes, "bandwidth_bytes_per_s": t.bandwidth_bytes_per_s}
             for t in dev.tiers]
    return {"hardware": dev.id, "name": dev.name, "device_tier": dev.device_tier.name, "device_bandwidth_bytes_per_s": bw,
            "compute": roofs, "tiers": tiers}
