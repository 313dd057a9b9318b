"""One format-family vocabulary, owned by hwmodels and used by the planner's registry,
the hardware profiles and the docs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

import hwmodels
from hwmodels import FAMILIES, FAMILY_GROUPS, KNOWN_FAMILIES, SpecError, device_path, format_family, list_devices
from hwmodels import load_device, load_device_from_dict
from hwmodels.errors import ProfileError
from planner import formats as planner_formats
from planner.formats import list_formats

ROOT = Path(__file__).resolve().parents[1]
ALL = list_formats()


def test_planner_uses_the_hwmodels_vocabulary():
    assert planner_formats.FAMILIES is hwmodels.FAMILIES
    assert KNOWN_FAMILIES == frozenset(FAMILIES) and len(FAMILIES) == len(KNOWN_FAMILIES)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_every_registry_format_has_a_family_hwmodels_knows(fmt):
    assert fmt.family in KNOWN_FAMILIES
    # The two vocabularies agree: the family a device looks a format up under is the
    # family the registry gives it (fp8-e4m3, bfp8, fp6-e3m2, fp4-e2m1 used to differ).
    assert format_family(fmt.name) == fmt.family


def _raw(device_id: str) -> dict:
    return yaml.safe_load(device_path(device_id).read_text())


def test_a_profile_declaring_the_bfp_group_loads_and_runs_both_widths():
    data = _raw("alveo-u280")
    data["formats"]["native"] = [f for f in data["formats"]["native"] if not f.startswith("bfp")] + ["bfp"]
    data["formats"]["emulated"] = [f for f in data["formats"]["emulated"] if not f.startswith("bfp")]
    dev = load_device_from_dict(data, "bfp-profile")
    assert {"bfp8", "bfp4"} <= dev.formats.native
    assert dev.supports("bfp8") == "native" and dev.supports("bfp4") == "native"
    assert dev.formats.native == load_device("alveo-u280").formats.native


def test_the_fp8_group_means_both_ocp_encodings_and_aliases_map_to_families():
    data = _raw("h100-sxm")
    data["formats"]["native"] = [f for f in data["formats"]["native"] if not f.startswith("fp8")] + ["FP8", "fp6"]
    data["formats"]["emulated"] = [f for f in data["formats"]["emulated"] if f != "fp6-e3m2"]
    dev = load_device_from_dict(data, "fp8-profile")
    assert {"fp8-e4m3", "fp8-e5m2", "fp6-e3m2"} <= dev.formats.native
    assert dev.formats.native <= KNOWN_FAMILIES


@pytest.mark.parametrize("bad", ["bfp16", "fp7-e9m9", "int9", "mxfp5"])
def test_an_unknown_family_is_refused_naming_the_vocabulary(bad):
    data = copy.deepcopy(_raw("h100-sxm"))
    data["formats"]["native"] = [*data["formats"]["native"], bad]
    with pytest.raises(ProfileError) as info:
        load_device_from_dict(data, "typo-profile")
    message = str(info.value)
    assert bad in message and "bfp8" in message and "fp8-e4m3" in message
    with pytest.raises(SpecError):
        hwmodels.FormatSupport(native=frozenset({bad}), emulated=frozenset())


@pytest.mark.parametrize("device_id", list_devices())
def test_every_shipped_profile_supports_a_format_exactly_when_it_lists_its_family(device_id):
    dev = load_device(device_id)
    for fmt in ALL:
        expected = ("native" if fmt.family in dev.formats.native
                    else "emulated" if fmt.family in dev.formats.emulated else "unsupported")
        assert dev.supports(fmt.name) == expected, fmt.name


def test_docs_list_the_same_family_names():
    formats_md = (ROOT / "docs" / "formats.md").read_text()
    hardware_md = (ROOT / "docs" / "hardware.md").read_text()
    section = formats_md.split("## Format families", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9-]+)`", section.split("\n\n")[2]))
    assert listed == KNOWN_FAMILIES
    row = next(line for line in hardware_md.splitlines() if line.startswith("| `formats` |"))
    assert set(re.findall(r"`([^`]+)`", row)[3].split()) == KNOWN_FAMILIES
    for group, members in FAMILY_GROUPS.items():
        assert f"`{group}`" in section and f"`{group}` (= `{' '.join(members)}`)" in row
    # The registry table's family column matches the registry.
    by_name = {f.name: f for f in ALL}
    for line in formats_md.splitlines():
        match = re.match(r"\| `([^`]+)` \|", line)
        if match and match.group(1) in by_name:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) < 10:  # other tables (SQNR) name formats too
                continue
            assert cells[8] == by_name[match.group(1)].family, line


def test_a_group_overlapping_a_member_in_the_other_list_is_refused():
    data = _raw("alveo-u280")
    data["formats"]["native"] = [f for f in data["formats"]["native"] if not f.startswith("bfp")] + ["BFP"]
    data["formats"]["emulated"] = [*data["formats"]["emulated"], "bfp4"]
    with pytest.raises(ProfileError, match="disjoint"):
        load_device_from_dict(data, "overlap-profile")
