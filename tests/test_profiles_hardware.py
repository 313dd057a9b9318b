"""Every shipped hardware profile: loads, cites a source for every number, and
agrees with the published figures it was built from."""

from __future__ import annotations

import pytest
import yaml

from hwmodels import device_path, fpga_peak_ops_per_s, list_devices, load_device, ridge_point

REQUIRED_IDS = {
    "a100-40gb-sxm", "a100-80gb-sxm", "h100-sxm", "h100-pcie", "h200", "gh200", "b200", "l4",
    "l40s", "t4", "v100-16gb", "rtx-4090", "mi250x-gcd", "mi300x", "tpu-v4", "tpu-v5e", "sn40l",
    "alveo-u50", "alveo-u280", "vck190", "zcu102", "m1-max", "m1-ultra", "m2-max",
    "iphone-15-pro", "snapdragon-8-gen-3", "jetson-agx-orin", "cpu-host",
    "a10g", "a100-80gb-pcie", "rtx-3090-ti", "rx-7900-xtx",
}
ALL = list_devices()

# Blocks whose numbers must name a source; numbers anywhere else are a schema error
# except these bookkeeping fields.
SOURCED_BLOCKS = ("compute", "memory", "power", "price", "efficiency", "fpga", "rdu", "phone")
UNSOURCED_NUMBERS = {"schema_version", "links.devices_per_node"}


def _raw(device_id: str) -> dict:
    return yaml.safe_load(device_path(device_id).read_text(encoding="utf-8"))


def _numbers(value, path):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _numbers(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _numbers(child, f"{path}[{index}]")


def _blocks(data: dict):
    """(path, mapping) of every block that must carry a 'source'."""
    for key in SOURCED_BLOCKS:
        value = data.get(key)
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield f"{key}[{index}]", item
        elif isinstance(value, dict):
            yield key, value
    for key, value in (data.get("links") or {}).items():
        if isinstance(value, dict):
            yield f"links.{key}", value


def test_catalog_ships_every_required_device():
    assert REQUIRED_IDS <= set(ALL)
    assert ALL == sorted(ALL)


@pytest.mark.parametrize("device_id", ALL)
def test_profile_loads_and_id_matches_file_stem(device_id):
    spec = load_device(device_id)
    assert spec.id == device_id == _raw(device_id)["id"]
    assert spec.device_tier.capacity_bytes > 0
    assert spec.memory_capacity_bytes <= spec.device_tier.capacity_bytes


@pytest.mark.parametrize("device_id", ALL)
def test_every_number_has_a_source_that_exists(device_id):
    data = _raw(device_id)
    sources = data["sources"]
    assert all(isinstance(text, str) and len(text) > 20 for text in sources.values())
    covered = set()
    for path, block in _blocks(data):
        keys = block.get("source")
        keys = [keys] if isinstance(keys, str) else keys
        assert keys, f"{device_id}: {path} has no source"
        assert all(k in sources for k in keys), f"{device_id}: {path} cites unknown {keys}"
        covered.add(path)
    for path in _numbers(data, ""):
        if path in UNSOURCED_NUMBERS:
            continue
        assert any(path == c or path.startswith(c + ".") or path.startswith(c + "[") for c in covered), (
            f"{device_id}: number at {path} is outside any sourced block"
        )
    # and no citation sits unused in the sources map
    used = {k for keys in load_device(device_id).field_sources.values() for k in keys}
    assert used == set(sources), f"{device_id}: unused sources {set(sources) - used}"


@pytest.mark.parametrize("device_id", ALL)
def test_efficiency_curves_in_unit_interval_and_monotone(device_id):
    eff = load_device(device_id).efficiency
    sizes = [10.0**k for k in range(0, 16)]
    for curve in (eff.compute, eff.bandwidth):
        values = [curve(s) for s in sizes]
        assert all(0 < v <= 1 for v in values)
        assert values == sorted(values)


# Dense bf16 peak / device-memory bandwidth, both from the datasheets each profile
# cites (S1-S10): A100 312/1.555 and 312/2.039, H100 989.4/3.35, H100 PCIe 756.5/2.0,
# H200 989.4/4.8, B200 2250/8.0, L4 121/0.3, L40S 362/0.864, RTX 4090 165.2/1.008,
# MI300X 1307.4/5.3, TPU v5e 197/0.819, SN40L 638/1.6 (HBM tier), A10G 70/0.6, A100 PCIe
# 312/1.935, RTX 3090 Ti 80/1.008, RX 7900 XTX 122.8/0.96. Tolerance 1 %.
RIDGES = {
    "a100-40gb-sxm": 201, "a100-80gb-sxm": 153, "h100-sxm": 295, "h100-pcie": 378, "h200": 206,
    "b200": 281, "l4": 403, "l40s": 419, "rtx-4090": 164, "mi300x": 247, "tpu-v5e": 241, "sn40l": 399,
    "a10g": 117, "a100-80gb-pcie": 161, "rtx-3090-ti": 79.4, "rx-7900-xtx": 128,
}


@pytest.mark.parametrize(("device_id", "ridge"), sorted(RIDGES.items()))
def test_bf16_ridge_points(device_id, ridge):
    assert ridge_point(load_device(device_id), "bf16") == pytest.approx(ridge, rel=0.01)


def test_sn40l_three_tiers_fusion_and_model_switch_time():
    sn40l = load_device("sn40l")
    assert [t.role for t in sn40l.tiers] == ["on_chip", "device", "device_ext"]
    assert sn40l.dataflow_fusion and sn40l.devices_per_node == 16
    # DDR tier ridge ~6,400 FLOP/byte (638e12 / 100e9, S10-derived).
    ddr = sn40l.tiers_with_role("device_ext")[0]
    assert ridge_point(sn40l, "bf16", tier=ddr) == pytest.approx(6380, rel=0.01)
    # Hot Chips 2024: switching Llama-3.1-8B (16 GB bf16) into HBM takes ~0.01 s on 16 sockets.
    switch_s = ddr.read_time_s(16e9 / sn40l.devices_per_node)
    assert switch_s == pytest.approx(0.01, rel=0.05)


def test_host_offload_tiers_follow_the_host_link():
    # GH200 reaches Grace memory over NVLink-C2C (450 GB/s per direction) vs PCIe 5 x16 (64).
    gh200, h100 = load_device("gh200"), load_device("h100-sxm")
    assert gh200.host_tier.bandwidth_bytes_per_s == pytest.approx(450e9)
    assert h100.host_tier.bandwidth_bytes_per_s == pytest.approx(64e9)
    for device_id in ALL:
        spec = load_device(device_id)
        if spec.host_tier is not None:
            assert spec.host_tier.bandwidth_bytes_per_s <= spec.host_link.bandwidth_bytes_per_s


@pytest.mark.parametrize("device_id", [d for d in ALL if load_device(d).storage_tier is not None and load_device(d).storage_tier.read_curve])
def test_flash_read_bandwidth_rises_with_chunk_and_reaches_rated(device_id):
    # "LLM in a flash" Sec. 2.2 (S14): small random reads pay latency to first byte;
    # large reads approach the sequential rate.
    flash = load_device(device_id).storage_tier
    chunks = [2.0**k for k in range(10, 26)]  # 1 KiB .. 32 MiB
    values = [flash.read_bandwidth(c) for c in chunks]
    assert values == sorted(values)
    assert values[0] < 0.25 * flash.bandwidth_bytes_per_s
    assert values[-1] == pytest.approx(flash.bandwidth_bytes_per_s, rel=0.01)


def test_m1_max_flash_design_point_from_llm_in_a_flash():
    # S14 Sec. 4.1: 32 KiB row-column bundles give ~3.3 GB/s effective on the M1 Max SSD.
    flash = load_device("m1-max").storage_tier
    assert flash.read_bandwidth(32 * 1024) == pytest.approx(3.3e9, rel=0.02)
    assert flash.read_bandwidth(4 * 1024) < 0.5e9


def test_phones_cap_memory_at_what_an_app_may_use_and_have_three_units():
    for device_id in ("iphone-15-pro", "snapdragon-8-gen-3"):
        phone = load_device(device_id)
        assert phone.device_class == "phone"
        assert [u.name for u in phone.compute_units] == ["npu", "gpu", "cpu"]
        assert phone.memory_capacity_bytes < phone.device_tier.capacity_bytes
        assert phone.storage_tier is not None
    assert load_device("iphone-15-pro").memory_capacity_bytes == pytest.approx(6e9)


# Vendor peaks count every DSP at its maximum clock; the derived roofs (80 % of DSPs,
# 50 % of LUTs at a 300 MHz kernel clock) must stay below them: U280 24.5 INT8 TOPS
# (DS963), U50 16.2 (DS965).
@pytest.mark.parametrize(("device_id", "vendor_int8_tops"), [("alveo-u280", 24.5), ("alveo-u50", 16.2)])
def test_fpga_derived_int8_roof_below_vendor_peak(device_id, vendor_int8_tops):
    roof = load_device(device_id).peak_flops_per_s("int8")
    assert 0.3 * vendor_int8_tops * 1e12 < roof < vendor_int8_tops * 1e12


def test_zcu102_roof_matches_the_shipped_dpu_design():
    # Vitis AI model zoo: ZCU102 runs 3x DPUCZDX8G B4096 at 281 MHz = 3 x 4096 x 281e6
    # = 3.45 TOPS int8 peak. The resource-derived roof should land within 25 %.
    zcu102 = load_device("zcu102")
    assert zcu102.peak_flops_per_s("int8") == pytest.approx(3 * 4096 * 281e6, rel=0.25)
    assert zcu102.peak_flops_per_s("int8") == pytest.approx(fpga_peak_ops_per_s(zcu102.fpga, 8, 8, "int"))


def test_versal_lists_ai_engines_first_and_fabric_on_request():
    vck190 = load_device("vck190")
    assert vck190.unit_names == ("aie", "fabric")
    assert vck190.peak_flops_per_s("int8") == pytest.approx(133e12)  # AMD: 133 INT8 TOPS (AIE)
    assert vck190.peak_flops_per_s("int8", unit="fabric") < 20e12


def test_classes_cover_all_hardware_families():
    classes = {load_device(d).device_class for d in ALL}
    assert {"gpu", "tpu", "rdu", "fpga", "phone", "laptop", "edge", "cpu"} <= classes
