"""hwmodels: hardware math for Tierwise.

Device specs (compute peaks per precision, memory tiers, links, power, price,
achievable efficiencies, format support, FPGA resources) loaded from the YAML
profiles in ``profiles/hardware``, plus roofline and FPGA-roof helpers.
Knows nothing about models; all quantities are SI.
"""

from .compute import ComputeUnit
from .device import DEVICE_CLASSES, FABRIC_UNIT, DeviceSpec
from .efficiency import Efficiency
from .errors import ProfileError, SpecError, UnknownIdError, UnsupportedPrecisionError
from .format_support import FAMILIES, FAMILY_GROUPS, KNOWN_FAMILIES, FormatSupport, format_family, profile_families
from .fpga import FpgaResources, MacCost, fpga_peak_ops_per_s, mac_cost
from .links import Link
from .loader import device_path, device_to_dict, list_devices, load_device, load_device_from_dict
from .memory import ROLES, MemoryTier
from .precision import PRECISIONS, normalize_precision
from .roofline import attainable_flops_per_s, ridge_point

__all__ = [
    "ComputeUnit",
    "DEVICE_CLASSES",
    "DeviceSpec",
    "Efficiency",
    "FAMILIES",
    "FAMILY_GROUPS",
    "FABRIC_UNIT",
    "FormatSupport",
    "FpgaResources",
    "KNOWN_FAMILIES",
    "Link",
    "MacCost",
    "MemoryTier",
    "PRECISIONS",
    "ProfileError",
    "ROLES",
    "SpecError",
    "UnknownIdError",
    "UnsupportedPrecisionError",
    "attainable_flops_per_s",
    "device_path",
    "device_to_dict",
    "format_family",
    "fpga_peak_ops_per_s",
    "list_devices",
    "load_device",
    "load_device_from_dict",
    "mac_cost",
    "normalize_precision",
    "profile_families",
    "ridge_point",
]
