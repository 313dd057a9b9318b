"""Read hardware profiles (YAML) into DeviceSpec objects — the only module of
hwmodels that touches files.

Profiles carry units in their key suffixes (``_gb``, ``_gib``, ``_mb``,
``_gb_per_s``, ``_us``, ``_tflops``, ``_mhz``, ``_kib``, ``_pj_per_byte``); this
module converts them once to SI. Every block names the source that backs its
numbers. Files are parsed with :func:`hwmodels.safeyaml.load_untrusted` only (no tags, no code,
no anchors or aliases, bounded size and nesting).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import json
import re
from collections.abc import Mapping
import dataclasses
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any


from ._checks import is_number
from .compute import ComputeUnit
from .device import DeviceSpec
from .efficiency import Efficiency
from .errors import ProfileError, SpecError, TierwiseError, UnknownIdError
from .format_support import FormatSupport, profile_families
from .fpga import FpgaResources
from .links import Link
from .memory import MemoryTier
from .precision import PRECISIONS
from .units import (
    BYTES_PER_GB,
    BYTES_PER_GIB,
    BYTES_PER_KIB,
    BYTES_PER_MB,
    FLOPS_PER_TFLOPS,
    HZ_PER_MHZ,
    JOULES_PER_PJ,
    SECONDS_PER_US,
)

SCHEMA_VERSION = 1
PROVENANCES = ("datasheet", "measured", "estimate")
_SUFFIXES = (".yaml", ".yml", ".json")
_COMMON = ("source", "provenance", "notes")


# PyYAML follows YAML 1.1, which reads "2.0e9" (no sign in the exponent) as a
# string; YAML 1.2 and every person read it as a number.
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _yaml12_float(value: Any) -> Any:
    if isinstance(value, str) and _YAML12_FLOAT.match(value.strip()):
        return float(value)
    return value


#: The largest number a profile field takes, in the field's own unit (GB, TFLOP/s, W, ...):
#: far above any device, and small enough that unit conversions cannot overflow to inf.
_LARGEST = 1e18
#: The smallest non-zero number a profile field takes, in its own unit: far below any device, and large
#: enough that dividing by it stays finite (a subnormal 1e-310 GB/s registered, then failed every plan).
_SMALLEST = 1e-18


class _Reader:
    """Reads one mapping of a profile; every error names the file and the dotted field."""

    def __init__(self, origin: str, data: Any, prefix: str) -> None:
        self.origin = origin
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise ProfileError(origin, prefix or "<document>", "a mapping of fields", data)
        self.data = data

    def field(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, expected: str, got: Any) -> ProfileError:
        return ProfileError(self.origin, self.field(key), expected, got)

    def allow(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.error(str(key), "one of the known fields (" + ", ".join(keys) + ")" + hint, str(key))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise self.error(key, "present", None)
        return self.data[key]

    def number(self, key: str, *, positive: bool = True, at_most: float | None = None, default: float | None = None) -> float:
        if not self.has(key):
            if default is not None:
                return default
            raise self.error(key, "a positive number" if positive else "a number >= 0", None)
        value = _yaml12_float(self.data[key])
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _LARGEST:
            raise self.error(key, f"a number at most {_LARGEST:g} (in the field's own unit)", value)
        if not is_number(value):
            raise self.error(key, "a number", value)
        if positive and value <= 0:
            raise self.error(key, "a positive number", value)
        if not positive and value < 0:
            raise self.error(key, "a number >= 0", value)
        if at_most is not None and value > at_most:
            raise self.error(key, f"a number in (0, {at_most:g}]", value)
        if value > _LARGEST:  # so that converted units (GB → bytes, TFLOP/s → FLOP/s) stay finite
            raise self.error(key, f"a number at most {_LARGEST:g} (in the field's own unit)", value)
        if 0 < value < _SMALLEST:  # so that rates and times derived by division stay finite
            raise self.error(key, f"0 or a number of at least {_SMALLEST:g} (in the field's own unit)"
                             if not positive else f"a number of at least {_SMALLEST:g} (in the field's own unit)", value)
        return float(value)

    def integer(self, key: str, *, minimum: int = 0, default: int | None = None) -> int:
        if not self.has(key):
            if default is not None:
                return default
            raise self.error(key, f"a whole number >= {minimum}", None)
        value = self.data[key]
        if isinstance(value, float) and value.is_integer() and abs(value) <= _LARGEST:
            value = int(value)  # 8.0 is the whole number 8, as JSON Schema and the REST API read it
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"a whole number >= {minimum}", value)
        if value > _LARGEST:
            raise self.error(key, f"a whole number from {minimum} to {_LARGEST:g}", value)
        return value

    def text(self, key: str, *, choices: tuple[str, ...] | None = None, default: str | None = None) -> str:
        if not self.has(key):
            if default is not None:
                return default
            raise self.error(key, "one of " + ", ".join(choices) if choices else "a non-empty string", None)
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "a non-empty string", value)
        if choices is not None and value not in choices:
            raise self.error(key, "one of " + ", ".join(choices), value)
        return value

    def boolean(self, key: str, *, default: bool | None = None) -> bool:
        if not self.has(key):
            if default is not None:
                return default
            raise self.error(key, "true or false", None)
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def sub(self, key: str) -> "_Reader":
        return _Reader(self.origin, self.raw(key), self.field(key))

    def items(self, key: str) -> list["_Reader"]:
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, "a non-empty list", value)
        return [_Reader(self.origin, item, f"{self.field(key)}[{i}]") for i, item in enumerate(value)]

    def pairs(self, key: str) -> list[tuple[float, float]]:
        """A list of [x, y] pairs of positive numbers."""
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, "a non-empty list of [x, y] pairs", value)
        out = []
        for index, pair in enumerate(value):
            where = f"{key}[{index}]"
            values = [_yaml12_float(v) for v in pair] if isinstance(pair, list) else []
            if len(values) != 2 or not all(is_number(v) and v > 0 for v in values):
                raise self.error(where, "a pair [x, y] of positive numbers", pair)
            out.append((float(values[0]), float(values[1])))
        return out

    def sources(self, key: str, known: Mapping[str, str]) -> tuple[str, ...]:
        value = self.raw(key)
        keys = [value] if isinstance(value, str) else value
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise self.error(key, "a source key or a list of source keys", value)
        for k in keys:
            if k not in known:
                raise self.error(key, "a key of 'sources' (" + ", ".join(known) + ")", k)
        return tuple(keys)


def _spec(origin: str, prefix: str, build: Any) -> Any:
    """Run a dataclass constructor, turning its SpecError into a ProfileError."""
    try:
        return build()
    except SpecError as error:
        field = f"{prefix}.{error.field}" if prefix else _TOP_FIELD_BLOCK.get(error.field, error.field)
        raise ProfileError(origin, field, error.expected, error.got) from None


#: Device fields checked across blocks, by the block of the profile that holds them (``idle_w`` above
#: ``tdp_w`` is ``power.idle_w`` in the file, not a top-level ``idle_w``).
_TOP_FIELD_BLOCK = {"idle_w": "power.idle_w", "tdp_w": "power.tdp_w"}


def _block_meta(reader: _Reader, block: str, known: Mapping[str, str], field_sources: dict, provenance: dict) -> None:
    field_sources[block] = reader.sources("source", known)
    provenance[block] = reader.text("provenance", choices=PROVENANCES, default="datasheet")
    if reader.has("notes"):
        reader.text("notes")


def _capacity_bytes(reader: _Reader) -> float:
    given = [k for k in ("capacity_gb", "capacity_gib", "capacity_mb") if reader.has(k)]
    if len(given) != 1:
        raise reader.error("capacity_gb", "exactly one of capacity_gb, capacity_gib, capacity_mb", given or None)
    scale = {"capacity_gb": BYTES_PER_GB, "capacity_gib": BYTES_PER_GIB, "capacity_mb": BYTES_PER_MB}[given[0]]
    return reader.number(given[0]) * scale


def _read_curve(reader: _Reader) -> list[tuple[float, float]]:
    """[[chunk_kib, gb_per_s], ...] checked in the file's own units, returned in SI."""
    points = reader.pairs("read_curve")
    rated = reader.number("bandwidth_gb_per_s")
    for index, (chunk, bandwidth) in enumerate(points):
        if index and chunk <= points[index - 1][0]:
            raise reader.error(f"read_curve[{index}][0]", "a chunk size (KiB) larger than the previous point's", chunk)
        # A large read can always be issued as several smaller ones at once, so
        # throughput never falls as the chunk grows.
        if index and bandwidth < points[index - 1][1]:
            raise reader.error(f"read_curve[{index}][1]", "a bandwidth (GB/s) at least the previous point's", bandwidth)
        if bandwidth > rated:
            raise reader.error(f"read_curve[{index}][1]", f"at most the rated bandwidth_gb_per_s ({rated:g})", bandwidth)
    return [(chunk * BYTES_PER_KIB, bandwidth * BYTES_PER_GB) for chunk, bandwidth in points]


def _link(reader: _Reader, block: str, known: Mapping[str, str], field_sources: dict, provenance: dict) -> Link:
    reader.allow("name", "bandwidth_gb_per_s", "peer_bandwidth_gb_per_s", "latency_us", *_COMMON)
    _block_meta(reader, block, known, field_sources, provenance)
    peer = None
    if reader.has("peer_bandwidth_gb_per_s"):
        peer = reader.number("peer_bandwidth_gb_per_s")
        if peer > reader.number("bandwidth_gb_per_s"):
            raise reader.error("peer_bandwidth_gb_per_s", f"at most bandwidth_gb_per_s ({reader.number('bandwidth_gb_per_s'):g})", peer)
    return _spec(
        reader.origin,
        reader.prefix,
        lambda: Link(
            name=reader.text("name"),
            bandwidth_bytes_per_s=reader.number("bandwidth_gb_per_s") * BYTES_PER_GB,
            latency_s=reader.number("latency_us", positive=False) * SECONDS_PER_US,
            peer_bandwidth_bytes_per_s=None if peer is None else peer * BYTES_PER_GB,
        ),
    )


def _format_list(reader: _Reader, key: str) -> frozenset[str]:
    if not reader.has(key):
        return frozenset()
    value = reader.data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise reader.error(key, "a list of format names", value)
    return profile_families(value)


@dataclasses.dataclass
class _Meta:
    """What every block of one profile records: the citations it may cite, which it cites,
    and its provenance."""

    origin: str
    sources: dict[str, str]
    field_sources: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)

    def block(self, reader: _Reader, name: str) -> None:
        _block_meta(reader, name, self.sources, self.field_sources, self.provenance)


def _sources(top: _Reader) -> dict[str, str]:
    raw_sources = top.raw("sources")
    if not isinstance(raw_sources, Mapping) or not raw_sources:
        raise top.error("sources", "a non-empty mapping of source key -> citation text", raw_sources)
    for key, text in raw_sources.items():
        if not isinstance(key, str) or not isinstance(text, str) or not text.strip():
            raise top.error(f"sources.{key}", "a non-empty citation string", text)
    return dict(raw_sources)


def _compute_units(top: _Reader, device_class: str, meta: _Meta) -> list[ComputeUnit]:
    units: list[ComputeUnit] = []
    if not top.has("compute") and device_class == "fpga":
        return units  # an FPGA's roof comes from its fabric (the fpga block)
    for index, unit_reader in enumerate(top.items("compute")):
        unit_reader.allow("unit", "peak_tflops", "sparse_2to4_speedup", *_COMMON)
        block = f"compute[{index}]"
        meta.block(unit_reader, block)
        peaks_reader = unit_reader.sub("peak_tflops")
        peaks_reader.allow(*PRECISIONS)
        peaks = {key: peaks_reader.number(key) * FLOPS_PER_TFLOPS for key in peaks_reader.data}
        if not peaks:
            raise unit_reader.error("peak_tflops", "at least one precision: " + ", ".join(PRECISIONS), {})
        units.append(
            _spec(
                meta.origin,
                block,
                lambda r=unit_reader, p=peaks: ComputeUnit(
                    name=r.text("unit"),
                    peak_flops_per_s=p,
                    sparse_2to4_speedup=r.number("sparse_2to4_speedup", default=1.0),
                ),
            )
        )
    return units


def _memory_tiers(top: _Reader, meta: _Meta) -> list[MemoryTier]:
    tiers: list[MemoryTier] = []
    for index, tier_reader in enumerate(top.items("memory")):
        tier_reader.allow(
            "name", "role", "capacity_gb", "capacity_gib", "capacity_mb", "bandwidth_gb_per_s",
            "latency_us", "energy_pj_per_byte", "read_curve", *_COMMON,
        )
        block = f"memory[{index}]"
        meta.block(tier_reader, block)
        curve: list[tuple[float, float]] = []
        if tier_reader.has("read_curve"):
            curve = _read_curve(tier_reader)
        energy = None
        if tier_reader.has("energy_pj_per_byte"):
            energy = tier_reader.number("energy_pj_per_byte") * JOULES_PER_PJ
        tier = _spec(
            meta.origin,
            block,
            lambda r=tier_reader, c=curve, e=energy: MemoryTier(
                name=r.text("name"),
                role=r.text("role", choices=("on_chip", "device", "device_ext", "host", "storage")),
                capacity_bytes=_capacity_bytes(r),
                bandwidth_bytes_per_s=r.number("bandwidth_gb_per_s") * BYTES_PER_GB,
                latency_s=r.number("latency_us", positive=False) * SECONDS_PER_US,
                energy_j_per_byte=e,
                read_curve=tuple(c),
            ),
        )
        tiers.append(tier)
    return tiers


def _links(top: _Reader, meta: _Meta) -> tuple[int, dict[str, Link | None]]:
    """(devices per node, links by role) of the ``links`` block."""
    links: dict[str, Link | None] = {"intra_node": None, "inter_node": None, "host": None}
    if not top.has("links"):
        return 1, links
    links_reader = top.sub("links")
    links_reader.allow("devices_per_node", "intra_node", "inter_node", "host")
    devices_per_node = links_reader.integer("devices_per_node", minimum=1, default=1)
    for key in links:
        if links_reader.has(key):
            links[key] = _link(links_reader.sub(key), f"links.{key}", meta.sources, meta.field_sources, meta.provenance)
    return devices_per_node, links


def _power_and_price(top: _Reader, meta: _Meta) -> tuple[float, float, float | None]:
    """(TDP W, idle W, USD per hour or None)."""
    power = top.sub("power")
    power.allow("tdp_w", "idle_w", *_COMMON)
    meta.block(power, "power")
    usd_per_hour = None
    if top.has("price"):
        price = top.sub("price")
        price.allow("usd_per_hour", *_COMMON)
        meta.block(price, "price")
        usd_per_hour = price.number("usd_per_hour")
    return power.number("tdp_w"), power.number("idle_w", positive=False), usd_per_hour


def _efficiency(top: _Reader, meta: _Meta) -> Efficiency:
    eff = top.sub("efficiency")
    eff.allow(
        "compute_max", "compute_half_flops", "bandwidth_max", "bandwidth_half_bytes",
        "kernel_overhead_us", "compute_points", "bandwidth_points", "gemm_rows_points", "cores", "precision_max", *_COMMON,
    )
    meta.block(eff, "efficiency")
    return _spec(
        meta.origin,
        "efficiency",
        lambda: Efficiency(
            compute_max=eff.number("compute_max", at_most=1.0),
            compute_half_flops=eff.number("compute_half_flops"),
            bandwidth_max=eff.number("bandwidth_max", at_most=1.0),
            bandwidth_half_bytes=eff.number("bandwidth_half_bytes"),
            kernel_overhead_s=eff.number("kernel_overhead_us", positive=False) * SECONDS_PER_US,
            compute_points=tuple(eff.pairs("compute_points")) if eff.has("compute_points") else (),
            bandwidth_points=tuple(eff.pairs("bandwidth_points")) if eff.has("bandwidth_points") else (),
            gemm_rows_points=tuple(eff.pairs("gemm_rows_points")) if eff.has("gemm_rows_points") else (),
            cores=eff.integer("cores", minimum=0, default=0),
            precision_max=_precision_max(eff),
        ),
    )


def _precision_max(eff: _Reader) -> dict[str, float]:
    if not eff.has("precision_max"):
        return {}
    sub = eff.sub("precision_max")
    if not isinstance(sub.data, dict):
        raise eff.error("precision_max", "a mapping of compute precision to a fraction in (0, 1]", sub.data)
    sub.allow(*PRECISIONS)  # a typo (bf61) was kept and never read
    return {str(k): sub.number(str(k), at_most=1.0) for k in sub.data}


def _formats(top: _Reader, meta: _Meta) -> FormatSupport:
    fmt = top.sub("formats")
    fmt.allow("native", "emulated", *_COMMON)
    if fmt.has("source"):
        meta.block(fmt, "formats")
    if not fmt.has("native"):
        raise fmt.error("native", "a list of format names", None)
    return _spec(
        meta.origin, "formats",
        lambda: FormatSupport(native=_format_list(fmt, "native"), emulated=_format_list(fmt, "emulated")),
    )


def _class_block(top: _Reader, key: str, device_class: str, meta: _Meta, expected: str, *keys: str) -> _Reader | None:
    """The optional block named like a device class (fpga, rdu, phone): required for that
    class, allowed for others."""
    if not top.has(key):
        if device_class == key:
            raise top.error(key, f"{expected} for class {key!r}", None)
        return None
    reader = top.sub(key)
    reader.allow(*keys, *_COMMON)
    meta.block(reader, key)
    return reader


def _fpga(top: _Reader, device_class: str, meta: _Meta) -> FpgaResources | None:
    fr = _class_block(top, "fpga", device_class, meta, "an fpga block (dsp_slices, luts, ...)", "dsp_slices", "luts",
                      "bram_mb", "uram_mb", "clock_mhz", "dsp_usable", "lut_usable", "dsp_type")
    if fr is None:
        return None
    return _spec(
        meta.origin,
        "fpga",
        lambda: FpgaResources(
            dsp_slices=fr.integer("dsp_slices"),
            luts=fr.integer("luts"),
            bram_bytes=fr.number("bram_mb", positive=False) * BYTES_PER_MB,
            uram_bytes=fr.number("uram_mb", positive=False, default=0.0) * BYTES_PER_MB,
            clock_hz=fr.number("clock_mhz") * HZ_PER_MHZ,
            dsp_usable=fr.number("dsp_usable", at_most=1.0),
            lut_usable=fr.number("lut_usable", at_most=1.0),
            dsp_type=fr.text("dsp_type"),
        ),
    )


def _rdu(top: _Reader, device_class: str, devices_per_node: int, meta: _Meta) -> tuple[bool, int]:
    """(dataflow fusion, devices per node): an RDU node counts its sockets."""
    rdu = _class_block(top, "rdu", device_class, meta, "an rdu block (dataflow_fusion, sockets_per_node)",
                       "dataflow_fusion", "sockets_per_node")
    if rdu is None:
        return False, devices_per_node
    dataflow_fusion = rdu.boolean("dataflow_fusion")
    if rdu.has("sockets_per_node"):
        sockets = rdu.integer("sockets_per_node", minimum=1)
        if top.has("links") and top.sub("links").has("devices_per_node") and sockets != devices_per_node:
            raise rdu.error("sockets_per_node", f"equal to links.devices_per_node ({devices_per_node})", sockets)
        devices_per_node = sockets
    return dataflow_fusion, devices_per_node


def _phone(top: _Reader, device_class: str, meta: _Meta) -> float | None:
    """Bytes of DRAM one app may use, or None."""
    phone = _class_block(top, "phone", device_class, meta, "a phone block (app_usable_dram_gb)", "app_usable_dram_gb")
    return None if phone is None else phone.number("app_usable_dram_gb") * BYTES_PER_GB


def _parse(data: Any, origin: str, content_hash: str) -> DeviceSpec:
    top = _Reader(origin, data, "")
    top.allow(
        "schema_version", "id", "name", "class", "vendor", "arch", "sources", "compute", "memory", "links",
        "power", "price", "efficiency", "formats", "fpga", "rdu", "phone", "notes",
    )
    if top.has("schema_version") and top.integer("schema_version", minimum=1) != SCHEMA_VERSION:
        raise top.error("schema_version", f"{SCHEMA_VERSION}", top.data["schema_version"])
    meta = _Meta(origin=origin, sources=_sources(top))
    device_id = top.text("id")
    device_class = top.text("class", choices=("gpu", "tpu", "rdu", "fpga", "phone", "laptop", "edge", "cpu"))
    units = _compute_units(top, device_class, meta)
    tiers = _memory_tiers(top, meta)
    devices_per_node, links = _links(top, meta)
    tdp_w, idle_w, usd_per_hour = _power_and_price(top, meta)
    efficiency = _efficiency(top, meta)
    formats = _formats(top, meta)
    fpga = _fpga(top, device_class, meta)
    dataflow_fusion, devices_per_node = _rdu(top, device_class, devices_per_node, meta)
    app_usable_bytes = _phone(top, device_class, meta)
    return _spec(
        origin,
        "",
        lambda: DeviceSpec(
            id=device_id,
            name=top.text("name"),
            device_class=device_class,
            vendor=top.text("vendor"),
            arch=top.text("arch") if top.has("arch") else "",
            compute_units=tuple(units),
            tiers=tuple(tiers),
            devices_per_node=devices_per_node,
            intra_node_link=links["intra_node"],
            inter_node_link=links["inter_node"],
            host_link=links["host"],
            tdp_w=tdp_w,
            idle_w=idle_w,
            usd_per_hour=usd_per_hour,
            efficiency=efficiency,
            formats=formats,
            fpga=fpga,
            dataflow_fusion=dataflow_fusion,
            app_usable_bytes=app_usable_bytes,
            sources=meta.sources,
            field_sources=meta.field_sources,
            provenance=meta.provenance,
            notes=top.text("notes").strip() if top.has("notes") else "",
            content_hash=content_hash,
        ),
    )


# ---- catalog ------------------------------------------------------------------------


def _catalog_dir() -> Traversable:
    return resources.files("profiles") / "hardware"


def list_devices() -> list[str]:
    """Ids of the shipped hardware profiles, sorted."""
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in _catalog_dir().iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


def is_file(path: Any) -> bool:
    """``path.is_file()``, False (not an error) for a name the filesystem refuses (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def exists(path: Any) -> bool:
    """``path.exists()``, False for a name the filesystem refuses."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def is_dir(path: Any) -> bool:
    """``path.is_dir()``, False for a name the filesystem refuses."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def device_path(device_id: str) -> Traversable:
    """The packaged file of a catalog id (UnknownIdError if there is none)."""
    path = _catalog_dir() / f"{device_id}.yaml"
    if not is_file(path):
        raise _unknown(device_id)
    return path


def _unknown(device_id: str) -> UnknownIdError:
    known = list_devices()
    needle = str(device_id).strip().lower()
    # Ids that start with / contain what was typed come first ("h100" -> h100-sxm,
    # h100-pcie), then spelling neighbours.
    prefix = [k for k in known if needle and k.startswith(needle)]
    contains = [k for k in known if needle and needle in k and k not in prefix]
    close = [k for k in difflib.get_close_matches(needle, known, n=5, cutoff=0.6) if k not in prefix + contains]
    return UnknownIdError(str(device_id), "hardware", (prefix + contains + close)[:6], known)


def _read_text(origin: str, read: Any) -> str:
    try:
        return read()
    except UnicodeDecodeError as error:
        raise ProfileError(origin, "<document>", "UTF-8 text", f"undecodable bytes ({error.reason})") from None


def _load_yaml(text: str, origin: str) -> Any:
    """Parse a profile with :func:`hwmodels.safeyaml.load_untrusted` (no tags, no anchors or
    aliases, bounded size and nesting): profiles may come from a client of the service."""
    from hwmodels.safeyaml import UnsafeYamlError, load_untrusted

    try:
        return load_untrusted(text, field="yaml")
    except UnsafeYamlError as error:
        if error.repeated is not None:
            raise ProfileError(origin, "<document>", "each key given once in a mapping", error.repeated) from None
        raise ProfileError(origin, "<document>", "plain YAML without tags such as !!python/..., anchors or aliases, "
                           "of bounded size and nesting", error.reason) from None


@lru_cache(maxsize=None)
def _load_catalog(device_id: str) -> DeviceSpec:
    path = device_path(device_id)
    origin = f"{device_id}.yaml"
    text = _read_text(origin, lambda: path.read_text(encoding="utf-8"))
    spec = _parse(_load_yaml(text, origin), origin, hashlib.sha256(text.encode("utf-8")).hexdigest())
    if spec.id != device_id:
        raise ProfileError(origin, "id", f"equal to the file name stem {device_id!r}", spec.id)
    return spec


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(_SUFFIXES)


def load_device(id_or_path: str | Path) -> DeviceSpec:
    """A DeviceSpec from a catalog id (cached) or a path to a YAML/JSON profile.

    Unknown id -> UnknownIdError (with suggestions); malformed file -> ProfileError; anything
    but a string or a path (``None``, a number, a mapping) -> TierwiseError naming ``hardware``.
    """
    if not isinstance(id_or_path, (str, Path)):
        raise TierwiseError(f"{{@hardware}} must be a catalog hardware id or a profile file path; got {id_or_path!r}",
                            field="hardware", code="invalid_field")
    if isinstance(id_or_path, Path) or _looks_like_path(str(id_or_path)):
        path = Path(id_or_path)
        origin = str(path)
        if is_dir(path):
            raise ProfileError(origin, "<file>", "a catalog hardware id or a hardware profile file (.yaml, .yml or .json)",
                               "a directory")
        if not is_file(path):
            raise ProfileError(origin, "<file>", "an existing hardware profile file",
                               "not a regular file" if exists(path) else "no such file")
        text = _read_text(origin, lambda: path.read_text(encoding="utf-8"))
        return _parse(_load_yaml(text, origin), origin, hashlib.sha256(text.encode("utf-8")).hexdigest())
    # _load_catalog raises UnknownIdError (not cached) for ids without a file.
    return _load_catalog(str(id_or_path).strip())


def non_json_value(data: Any) -> tuple[str, Any] | None:
    """(path, value) of the first value of ``data`` that JSON cannot hold — a NaN, an infinity
    (``1e400`` parses as one), or a non-data object — with the path as profile errors name keys
    (``memory[0].bandwidth_gb_per_s``); None when there is none. Walked without recursion."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path or "<document>", value
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            return path or "<document>", value
    return None


def load_device_from_dict(data: dict, origin: str = "<dict>") -> DeviceSpec:
    """A DeviceSpec from an already-parsed profile (e.g. a REST request body),
    validated exactly like a file. ``content_hash`` hashes its canonical JSON."""
    bad = non_json_value(data)
    if bad is not None:
        raise ProfileError(origin, bad[0], "a finite number or other JSON data", bad[1])
    try:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ProfileError(origin, "<document>", "JSON-compatible data (numbers, strings, lists, mappings)", str(error)) from None
    return _parse(data, origin, hashlib.sha256(canonical.encode("utf-8")).hexdigest())


# ---- writing ------------------------------------------------------------------------


def _round(value: float) -> float | int:
    """Undo float noise from unit conversion (80e9 / 1e9 -> 80) for readable YAML."""
    rounded = float(f"{value:.12g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def _meta(spec: DeviceSpec, block: str) -> dict[str, Any]:
    keys = spec.field_sources.get(block, ())
    out: dict[str, Any] = {"source": keys[0] if len(keys) == 1 else list(keys)}
    prov = spec.provenance.get(block, "datasheet")
    if prov != "datasheet":
        out["provenance"] = prov
    return out


def _tiers_to_dicts(spec: DeviceSpec) -> list[dict[str, Any]]:
    memory = []
    for i, tier in enumerate(spec.tiers):
        entry: dict[str, Any] = {
            "name": tier.name,
            "role": tier.role,
            "capacity_gb": _round(tier.capacity_bytes / BYTES_PER_GB),
            "bandwidth_gb_per_s": _round(tier.bandwidth_bytes_per_s / BYTES_PER_GB),
            "latency_us": _round(tier.latency_s / SECONDS_PER_US),
        }
        if tier.energy_j_per_byte is not None:
            entry["energy_pj_per_byte"] = _round(tier.energy_j_per_byte / JOULES_PER_PJ)
        if tier.read_curve:
            entry["read_curve"] = [[_round(c / BYTES_PER_KIB), _round(b / BYTES_PER_GB)] for c, b in tier.read_curve]
        entry.update(_meta(spec, f"memory[{i}]"))
        memory.append(entry)
    return memory


def _efficiency_to_dict(spec: DeviceSpec) -> dict[str, Any]:
    eff = spec.efficiency
    eff_out: dict[str, Any] = {
        "compute_max": _round(eff.compute_max),
        "compute_half_flops": _round(eff.compute_half_flops),
        "bandwidth_max": _round(eff.bandwidth_max),
        "bandwidth_half_bytes": _round(eff.bandwidth_half_bytes),
        "kernel_overhead_us": _round(eff.kernel_overhead_s / SECONDS_PER_US),
    }
    if eff.compute_points:
        eff_out["compute_points"] = [[_round(x), _round(f)] for x, f in eff.compute_points]
    if eff.bandwidth_points:
        eff_out["bandwidth_points"] = [[_round(x), _round(f)] for x, f in eff.bandwidth_points]
    if eff.cores:
        eff_out["cores"] = eff.cores
    if eff.precision_max:
        eff_out["precision_max"] = {k: _round(v) for k, v in eff.precision_max.items()}
    if eff.gemm_rows_points:
        eff_out["gemm_rows_points"] = [[_round(x), _round(f)] for x, f in eff.gemm_rows_points]
    eff_out.update(_meta(spec, "efficiency"))
    return eff_out


def device_to_dict(spec: DeviceSpec) -> dict[str, Any]:
    """The profile mapping (YAML units) of a DeviceSpec: ``load_device_from_dict``
    of the result gives back an equal spec (except ``content_hash``). Used to write
    calibrated profiles."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": spec.id,
        "name": spec.name,
        "class": spec.device_class,
        "vendor": spec.vendor,
        **({"arch": spec.arch} if spec.arch else {}),
        "sources": dict(spec.sources),
    }
    if spec.compute_units:
        out["compute"] = [
            {
                "unit": unit.name,
                "peak_tflops": {k: _round(v / FLOPS_PER_TFLOPS) for k, v in unit.peak_flops_per_s.items()},
                "sparse_2to4_speedup": _round(unit.sparse_2to4_speedup),
                **_meta(spec, f"compute[{i}]"),
            }
            for i, unit in enumerate(spec.compute_units)
        ]
    out["memory"] = _tiers_to_dicts(spec)
    links: dict[str, Any] = {"devices_per_node": spec.devices_per_node}
    for key, link in (("intra_node", spec.intra_node_link), ("inter_node", spec.inter_node_link), ("host", spec.host_link)):
        if link is not None:
            links[key] = {
                "name": link.name,
                "bandwidth_gb_per_s": _round(link.bandwidth_bytes_per_s / BYTES_PER_GB),
                **({"peer_bandwidth_gb_per_s": _round(link.peer_bandwidth_bytes_per_s / BYTES_PER_GB)}
                   if link.peer_bandwidth_bytes_per_s is not None else {}),
                "latency_us": _round(link.latency_s / SECONDS_PER_US),
                **_meta(spec, f"links.{key}"),
            }
    if "rdu" in spec.field_sources:
        links.pop("devices_per_node")
    out["links"] = links
    out["power"] = {"tdp_w": _round(spec.tdp_w), "idle_w": _round(spec.idle_w), **_meta(spec, "power")}
    if spec.usd_per_hour is not None:
        out["price"] = {"usd_per_hour": _round(spec.usd_per_hour), **_meta(spec, "price")}
    out["efficiency"] = _efficiency_to_dict(spec)
    out["formats"] = {"native": sorted(spec.formats.native), "emulated": sorted(spec.formats.emulated)}
    if "formats" in spec.field_sources:
        out["formats"].update(_meta(spec, "formats"))
    if spec.fpga is not None:
        f = spec.fpga
        out["fpga"] = {
            "dsp_slices": f.dsp_slices,
            "luts": f.luts,
            "bram_mb": _round(f.bram_bytes / BYTES_PER_MB),
            "uram_mb": _round(f.uram_bytes / BYTES_PER_MB),
            "clock_mhz": _round(f.clock_hz / HZ_PER_MHZ),
            "dsp_usable": _round(f.dsp_usable),
            "lut_usable": _round(f.lut_usable),
            "dsp_type": f.dsp_type,
            **_meta(spec, "fpga"),
        }
    if "rdu" in spec.field_sources:
        out["rdu"] = {"dataflow_fusion": spec.dataflow_fusion, "sockets_per_node": spec.devices_per_node, **_meta(spec, "rdu")}
    if spec.app_usable_bytes is not None:
        out["phone"] = {"app_usable_dram_gb": _round(spec.app_usable_bytes / BYTES_PER_GB), **_meta(spec, "phone")}
    if spec.notes:
        out["notes"] = spec.notes
    return out
