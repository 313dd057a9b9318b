"""DeviceSpec: everything the cost model needs to know about one device."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ._checks import check_name, check_non_negative, check_positive
from ._frozen import FrozenDict
from .compute import ComputeUnit
from .efficiency import Efficiency
from .errors import SpecError, UnsupportedPrecisionError
from .format_support import FormatSupport, Support
from .fpga import FpgaResources, fpga_peak_ops_per_s
from .links import Link
from .memory import ROLES, MemoryTier
from .precision import BITS, FLOAT_SPLIT, PRECISIONS, is_float_precision, normalize_precision

DEVICE_CLASSES: tuple[str, ...] = ("gpu", "tpu", "rdu", "fpga", "phone", "laptop", "edge", "cpu")

# Name of the compute unit derived from FPGA fabric resources.
FABRIC_UNIT = "fabric"

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSpec:
    """One device (a GPU, a TPU chip, an RDU socket, an FPGA card, a phone SoC...).

    All quantities are SI and per device. ``tiers`` are ordered fastest to
    slowest by role (on_chip, device, device_ext, host, storage).
    ``field_sources`` maps each block of the profile (``compute[0]``,
    ``memory[1]``, ``links.intra_node``, ``power``, ...) to the keys of
    ``sources`` that back it; ``provenance`` maps the same blocks to
    datasheet | measured | estimate.
    """

    id: str
    name: str
    device_class: str
    vendor: str
    compute_units: tuple[ComputeUnit, ...]
    tiers: tuple[MemoryTier, ...]
    devices_per_node: int
    intra_node_link: Link | None
    inter_node_link: Link | None
    host_link: Link | None
    tdp_w: float
    idle_w: float
    usd_per_hour: float | None
    efficiency: Efficiency
    formats: FormatSupport
    fpga: FpgaResources | None = None
    dataflow_fusion: bool = False
    app_usable_bytes: float | None = None
    sources: Mapping[str, str] = field(default_factory=FrozenDict)
    field_sources: Mapping[str, tuple[str, ...]] = field(default_factory=FrozenDict)
    provenance: Mapping[str, str] = field(default_factory=FrozenDict)
    notes: str = ""
    content_hash: str = ""
    # Micro-architecture generation as engines name it (``hopper``, ``ampere``, ``cdna3``,
    # ``a17-pro``…): what engine profiles match their kernel support on. Empty when unknown.
    arch: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            raise SpecError("id", "lower-case letters, digits, '.', '_' or '-' (e.g. 'h100-sxm')", self.id)
        check_name(self.name, "name")
        check_name(self.vendor, "vendor")
        if not isinstance(self.arch, str) or (self.arch and not _ID_PATTERN.fullmatch(self.arch)):
            raise SpecError("arch", "a lower-case generation name such as 'hopper' or 'ampere'", self.arch)
        if self.device_class not in DEVICE_CLASSES:
            raise SpecError("class", "one of " + ", ".join(DEVICE_CLASSES), self.device_class)

        units = tuple(self.compute_units)
        object.__setattr__(self, "compute_units", units)
        for index, unit in enumerate(units):
            if not isinstance(unit, ComputeUnit):
                raise SpecError(f"compute[{index}]", "a ComputeUnit", unit)
        names = [u.name for u in units]
        if len(set(names)) != len(names):
            raise SpecError("compute", "units with distinct names", names)
        if self.fpga is not None and not isinstance(self.fpga, FpgaResources):
            raise SpecError("fpga", "FpgaResources", self.fpga)
        if not units and self.fpga is None:
            raise SpecError("compute", "at least one compute unit (only FPGAs may omit it)", [])
        if self.fpga is not None and FABRIC_UNIT in names:
            raise SpecError("compute", f"no unit named '{FABRIC_UNIT}' (reserved for the FPGA fabric roof)", names)
        if self.device_class == "fpga" and self.fpga is None:
            raise SpecError("fpga", "an fpga block for class 'fpga'", None)

        tiers = tuple(self.tiers)
        object.__setattr__(self, "tiers", tiers)
        if not tiers:
            raise SpecError("memory", "at least one memory tier", [])
        last_rank = 0
        seen: set[str] = set()
        for index, tier in enumerate(tiers):
            if not isinstance(tier, MemoryTier):
                raise SpecError(f"memory[{index}]", "a MemoryTier", tier)
            rank = ROLES.index(tier.role)
            if rank < last_rank:
                raise SpecError(
                    f"memory[{index}].role",
                    "in fastest-to-slowest order (" + " < ".join(ROLES) + ")",
                    tier.role,
                )
            last_rank = rank
            if tier.name in seen:
                raise SpecError(f"memory[{index}].name", "unique among the tiers", tier.name)
            seen.add(tier.name)
        if not any(t.role == "device" for t in tiers):
            raise SpecError("memory", "a tier with role 'device'", [t.role for t in tiers])

        if not isinstance(self.devices_per_node, int) or isinstance(self.devices_per_node, bool) or self.devices_per_node < 1:
            raise SpecError("devices_per_node", "a whole number >= 1", self.devices_per_node)
        for name in ("intra_node_link", "inter_node_link", "host_link"):
            link = getattr(self, name)
            if link is not None and not isinstance(link, Link):
                raise SpecError(name, "a Link or None", link)
        host_tier = self.host_tier
        if host_tier is not None:
            if self.host_link is None:
                raise SpecError("links.host", "present when a memory tier has role 'host'", None)
            if host_tier.bandwidth_bytes_per_s > self.host_link.bandwidth_bytes_per_s * (1 + 1e-9):
                raise SpecError(
                    f"memory[{tiers.index(host_tier)}].bandwidth",
                    f"at most the host link bandwidth {self.host_link.bandwidth_bytes_per_s:g} B/s "
                    "(host memory is reached over that link)",
                    host_tier.bandwidth_bytes_per_s,
                )

        check_positive(self.tdp_w, "tdp_w")
        check_non_negative(self.idle_w, "idle_w")
        if self.idle_w > self.tdp_w:
            raise SpecError("idle_w", f"at most tdp_w ({self.tdp_w:g} W)", self.idle_w)
        if self.usd_per_hour is not None:
            check_positive(self.usd_per_hour, "usd_per_hour")
        if not isinstance(self.efficiency, Efficiency):
            raise SpecError("efficiency", "an Efficiency", self.efficiency)
        if not isinstance(self.formats, FormatSupport):
            raise SpecError("formats", "a FormatSupport", self.formats)
        if not isinstance(self.dataflow_fusion, bool):
            raise SpecError("dataflow_fusion", "true or false", self.dataflow_fusion)
        if self.device_class == "phone" and self.app_usable_bytes is None:
            raise SpecError("phone.app_usable_dram_gb", "given for class 'phone'", None)
        if self.app_usable_bytes is not None:
            check_positive(self.app_usable_bytes, "app_usable_bytes")
            capacity = self.device_tier.capacity_bytes
            if self.app_usable_bytes > capacity * (1 + 1e-9):
                raise SpecError("app_usable_bytes", f"at most the device memory ({capacity:g} B)", self.app_usable_bytes)
        for name in ("sources", "field_sources", "provenance"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise SpecError(name, "a mapping", value)
            if not isinstance(value, FrozenDict):
                object.__setattr__(self, name, FrozenDict(value))
        for block, keys in self.field_sources.items():
            for key in keys:
                if key not in self.sources:
                    raise SpecError(f"{block}.source", "a key of 'sources' (" + ", ".join(self.sources) + ")", key)

    def __hash__(self) -> int:
        return hash((self.id, self.content_hash))

    # ---- memory -------------------------------------------------------------------

    def tiers_with_role(self, role: str) -> tuple[MemoryTier, ...]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        return tuple(t for t in self.tiers if t.role == role)

    @property
    def device_tier(self) -> MemoryTier:
        """The first tier with role 'device' (HBM, GDDR, LPDDR or DDR)."""
        return _device_tier(self)

    @property
    def on_chip_tier(self) -> MemoryTier | None:
        return next((t for t in self.tiers if t.role == "on_chip"), None)

    @property
    def host_tier(self) -> MemoryTier | None:
        return next((t for t in self.tiers if t.role == "host"), None)

    @property
    def storage_tier(self) -> MemoryTier | None:
        return next((t for t in self.tiers if t.role == "storage"), None)

    def tier(self, name: str) -> MemoryTier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(f"{self.id} has no memory tier {name!r}; tiers: {', '.join(t.name for t in self.tiers)}")

    @property
    def memory_capacity_bytes(self) -> float:
        """Device memory a model may use: the device tier, capped on phones by what
        the OS lets one app use."""
        capacity = self.device_tier.capacity_bytes
        if self.app_usable_bytes is not None:
            return min(capacity, self.app_usable_bytes)
        return capacity

    # ---- compute ------------------------------------------------------------------

    @property
    def unit_names(self) -> tuple[str, ...]:
        names = tuple(u.name for u in self.compute_units)
        return names + ((FABRIC_UNIT,) if self.fpga is not None else ())

    def compute_unit(self, name: str | None = None) -> ComputeUnit:
        """A listed compute unit by name (the first one by default)."""
        if name is None and self.compute_units:
            return self.compute_units[0]
        for unit in self.compute_units:
            if unit.name == name:
                return unit
        raise KeyError(f"{self.id} has no compute unit {name!r}; units: {', '.join(self.unit_names)}")

    def sparse_2to4_speedup(self, unit: str | None = None) -> float:
        """Datasheet 2:4-sparse / dense peak ratio of a compute unit (default: the
        first); 1.0 on the FPGA fabric, where 2:4 sparsity is not modelled."""
        if unit == FABRIC_UNIT or (unit is None and not self.compute_units):
            if self.fpga is None:
                raise KeyError(f"{self.id} has no FPGA fabric; units: {', '.join(self.unit_names)}")
            return 1.0
        return self.compute_unit(unit).sparse_2to4_speedup

    def peak_flops_per_s(
        self,
        precision: str,
        *,
        unit: str | None = None,
        sparse_2to4: bool = False,
        weight_bits: int | None = None,
        act_bits: int | None = None,
        number_kind: str = "int",
    ) -> float:
        """Peak FLOP/s (OP/s for integers) at ``precision`` on a compute unit.

        ``unit`` picks a unit by name. By default the first listed unit that can
        run the precision is used (on an FPGA without listed units, the fabric).
        A precision a unit lacks falls back to the nearest wider precision it has
        (int4 -> int8 -> fp16 ..., see hwmodels.precision);
        UnsupportedPrecisionError if no unit has it or a wider one.
        ``sparse_2to4`` multiplies by the unit's 2:4 sparse speedup.

        On the FPGA fabric (``unit="fabric"``) the roof is derived from resources
        (hwmodels.fpga): operand widths default to the precision's bits and may be
        set with ``weight_bits`` / ``act_bits``; the MACs are minifloat when the
        precision is a float type or ``number_kind="float"``, integer otherwise.
        Fabric designs gain nothing from 2:4 sparsity here. Listed units ignore
        ``weight_bits``/``act_bits``: their peak depends on the compute precision only.
        """
        key = normalize_precision(precision)
        if number_kind not in ("int", "float"):
            raise ValueError(f"number_kind must be 'int' or 'float'; got {number_kind!r}")
        use_fabric = unit == FABRIC_UNIT or (unit is None and not self.compute_units)
        if use_fabric:
            if self.fpga is None:
                raise KeyError(f"{self.id} has no FPGA fabric; units: {', '.join(self.unit_names)}")
            kind = "float" if is_float_precision(key) or number_kind == "float" else "int"
            w_bits = BITS[key] if weight_bits is None else weight_bits
            a_bits = BITS[key] if act_bits is None else act_bits
            w_exp = a_exp = None
            if kind == "float" and is_float_precision(key):
                exponent = FLOAT_SPLIT[key][0]
                w_exp = exponent if w_bits == BITS[key] else None
                a_exp = exponent if a_bits == BITS[key] else None
                if number_kind == "int" and weight_bits is not None:
                    w_exp = 0  # integer weights (int2..int8, block-float mantissas) have no exponent
            return fpga_peak_ops_per_s(
                self.fpga, w_bits, a_bits, kind, weight_exponent_bits=w_exp, act_exponent_bits=a_exp
            )
        if unit is None:
            # The first unit that can run the precision (itself or a wider one): a
            # phone graph whose NPU lacks bf16 runs on the GPU, as Core ML / QNN
            # place operators the NPU cannot take.
            candidates = [u for u in self.compute_units if u.resolve(key) is not None]
            if not candidates:
                names = ", ".join(u.name for u in self.compute_units)
                available = [p for p in PRECISIONS if any(p in u.peak_flops_per_s for u in self.compute_units)]
                raise UnsupportedPrecisionError(self.id, names, key, available)
            compute = candidates[0]
        else:
            compute = self.compute_unit(unit)
        resolved = compute.resolve(key)
        if resolved is None:
            raise UnsupportedPrecisionError(self.id, compute.name, key, list(compute.precisions))
        peak = compute.peak_flops_per_s[resolved]
        if sparse_2to4:
            peak *= compute.sparse_2to4_speedup
        return peak

    # ---- formats ------------------------------------------------------------------

    def supports(self, format_name: str) -> Support:
        """'native', 'emulated' or 'unsupported' for a format name (aliases and
        group sizes accepted: 'fp8' == 'fp8-e4m3', 'int4-g32' -> 'int4', 'cb4' -> 'codebook')."""
        return self.formats.status(format_name)

    # ---- copies -------------------------------------------------------------------

    def with_efficiency(self, efficiency: Efficiency, *, source_key: str | None = None, source_text: str | None = None) -> "DeviceSpec":
        """A copy with other efficiency data (e.g. calibrated on this machine).

        ``content_hash`` changes with it so that caches keyed on the hash never
        mix calibrated and uncalibrated predictions. A source may be attached.
        """
        sources = dict(self.sources)
        field_sources = dict(self.field_sources)
        provenance = dict(self.provenance)
        if source_key is not None:
            sources[source_key] = source_text or source_key
            field_sources["efficiency"] = (source_key,)
            provenance["efficiency"] = "measured"
        digest = hashlib.sha256(f"{self.content_hash}|{efficiency!r}|{source_key}".encode()).hexdigest()
        return replace(
            self,
            efficiency=efficiency,
            sources=sources,
            field_sources=field_sources,
            provenance=provenance,
            content_hash=digest,
        )


@functools.lru_cache(maxsize=1024)
def _device_tier(device: DeviceSpec) -> MemoryTier:
    # The cost model asks for it for every operator; a profile's tiers never change (frozen).
    return next(t for t in device.tiers if t.role == "device")
