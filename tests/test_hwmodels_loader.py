"""Profile loading: catalog lookup, errors for people, dict loading and round trips."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from hwmodels import (
    DeviceSpec,
    Efficiency,
    ProfileError,
    UnknownIdError,
    device_path,
    device_to_dict,
    list_devices,
    load_device,
    load_device_from_dict,
)


@pytest.fixture(scope="module")
def h100_data() -> dict:
    return yaml.safe_load(device_path("h100-sxm").read_text(encoding="utf-8"))


def _write(tmp_path, data, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _error(tmp_path, data, name="bad.yaml") -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_device(_write(tmp_path, data, name))
    return info.value


def test_negative_bandwidth_names_file_and_field(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["memory"][0]["bandwidth_gb_per_s"] = -3
    error = _error(tmp_path, data, "h100.yaml")
    assert str(error) == "h100.yaml: field 'memory[0].bandwidth_gb_per_s' must be a positive number; got -3"
    assert error.field == "memory[0].bandwidth_gb_per_s"
    assert error.path.endswith("h100.yaml")
    assert error.got == -3


def test_missing_field(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    del data["power"]["tdp_w"]
    error = _error(tmp_path, data)
    assert error.field == "power.tdp_w"
    assert "bad.yaml" in str(error) and "missing" in str(error)


def test_missing_block(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    del data["efficiency"]
    assert _error(tmp_path, data).field == "efficiency"


def test_wrong_type(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["compute"][0]["peak_tflops"]["bf16"] = "fast"
    error = _error(tmp_path, data)
    assert error.field == "compute[0].peak_tflops.bf16"
    assert "must be a number; got 'fast'" in str(error)


def test_boolean_is_not_a_number(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["power"]["idle_w"] = True
    assert _error(tmp_path, data).field == "power.idle_w"


def test_unknown_class(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["class"] = "quantum"
    error = _error(tmp_path, data)
    assert error.field == "class"
    assert "one of gpu, tpu, rdu, fpga, phone, laptop, edge, cpu" in str(error)


def test_unknown_field_suggests_spelling(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["memory"][0]["bandwith_gb_per_s"] = data["memory"][0].pop("bandwidth_gb_per_s")
    error = _error(tmp_path, data)
    assert error.field == "memory[0].bandwith_gb_per_s"
    assert "did you mean 'bandwidth_gb_per_s'" in str(error)


def test_source_key_must_exist(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["power"]["source"] = "S99"
    error = _error(tmp_path, data)
    assert error.field == "power.source" and error.got == "S99"


def test_block_without_source_is_rejected(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    del data["compute"][0]["source"]
    assert _error(tmp_path, data).field == "compute[0].source"


def test_python_tag_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("id: !!python/object/apply:os.system ['echo hacked']\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_device(path)
    assert info.value.field == "<document>"
    assert "evil.yaml" in str(info.value) and "without tags" in str(info.value)


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nname: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="line"):
        load_device(path)


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="no such file"):
        load_device(tmp_path / "nope.yaml")


def test_memory_roles_must_run_fastest_to_slowest(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["memory"].reverse()
    error = _error(tmp_path, data)
    assert error.field == "memory[1].role"


def test_class_blocks_are_required(tmp_path, h100_data):
    data = copy.deepcopy(h100_data)
    data["class"] = "phone"
    assert _error(tmp_path, data).field == "phone"
    data["class"] = "fpga"
    assert _error(tmp_path, data).field == "fpga"


def test_flash_curve_checked_in_file_units(tmp_path):
    data = yaml.safe_load(device_path("snapdragon-8-gen-3").read_text(encoding="utf-8"))
    data["memory"][1]["read_curve"] = [[4, 0.4], [16, 0.3]]
    error = _error(tmp_path, data)
    assert error.field == "memory[1].read_curve[1][1]" and error.got == 0.3


def test_scientific_notation_without_exponent_sign_is_a_number(tmp_path, h100_data):
    # PyYAML (YAML 1.1) reads "2.0e9" as a string; profiles may write it anyway.
    data = copy.deepcopy(h100_data)
    text = yaml.safe_dump(data, sort_keys=False).replace("compute_half_flops: 2000000000.0", "compute_half_flops: 2.0e9")
    path = tmp_path / "sci.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_device(path).efficiency.compute_half_flops == 2.0e9


def test_unknown_id_suggests_close_ids():
    with pytest.raises(UnknownIdError) as info:
        load_device("h100")
    error = info.value
    assert error.id == "h100" and error.catalog == "hardware"
    assert error.suggestions[:2] == ["h100-pcie", "h100-sxm"]
    assert "did you mean h100-pcie, h100-sxm" in str(error)
    with pytest.raises(UnknownIdError) as info:
        load_device("a100-80gb-sxn")
    assert info.value.suggestions[0] == "a100-80gb-sxm"
    with pytest.raises(UnknownIdError):
        device_path("no-such-device")


def test_catalog_loads_are_cached_and_hashable():
    first = load_device("h100-sxm")
    assert load_device("h100-sxm") is first
    assert {first: "ok"}[load_device("h100-sxm")] == "ok"
    assert isinstance(first, DeviceSpec)


def test_content_hash_is_sha256_of_file_text():
    text = device_path("l4").read_text(encoding="utf-8")
    assert load_device("l4").content_hash == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_dict_loading_validates_like_files(h100_data):
    spec = load_device_from_dict(copy.deepcopy(h100_data), origin="request body")
    assert spec.peak_flops_per_s("bf16") == pytest.approx(989.4e12)
    bad = copy.deepcopy(h100_data)
    bad["memory"][0]["capacity_gb"] = 0
    with pytest.raises(ProfileError) as info:
        load_device_from_dict(bad, origin="request body")
    assert str(info.value).startswith("request body: field 'memory[0].capacity_gb' must be a positive number")


@pytest.mark.parametrize("device_id", list_devices())
def test_round_trip_through_dict(device_id):
    spec = load_device(device_id)
    again = load_device_from_dict(yaml.safe_load(yaml.safe_dump(device_to_dict(spec))))
    assert len(again.content_hash) == 64
    for name in DeviceSpec.__dataclass_fields__:
        if name != "content_hash":
            assert getattr(again, name) == getattr(spec, name), name


def test_with_efficiency_changes_hash_and_records_source():
    spec = load_device("cpu-host")
    measured = Efficiency(
        compute_max=0.6, compute_half_flops=1e7, bandwidth_max=0.7, bandwidth_half_bytes=1e6, kernel_overhead_s=3e-6
    )
    calibrated = spec.with_efficiency(measured, source_key="CAL", source_text="tierwise calibrate on this machine")
    assert calibrated.efficiency == measured
    assert calibrated.content_hash != spec.content_hash
    assert calibrated.field_sources["efficiency"] == ("CAL",)
    assert calibrated.provenance["efficiency"] == "measured"
    assert spec.efficiency != measured  # the cached catalog spec is untouched


def test_a_precision_max_key_that_is_no_precision_is_refused_naming_it():
    """{bf61: 0.6} was kept and never read: the typo changed nothing and said nothing."""
    import yaml
    from pathlib import Path

    from hwmodels.errors import ProfileError
    from hwmodels.loader import load_device_from_dict

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles" / "hardware" / "h100-sxm.yaml").read_text())
    data["efficiency"]["precision_max"] = {"bf61": 0.6}
    with pytest.raises(ProfileError) as exc:
        load_device_from_dict(data, "x.yaml")
    assert "efficiency.precision_max.bf61" in str(exc.value) and "bf16" in str(exc.value)
