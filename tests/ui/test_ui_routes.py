"""The routes behind the web page, without a browser: static files, their headers and
key exemption, and the two JSON resources the page reads (/v1/formats, roofs)."""

from __future__ import annotations

import typing

import pytest
from fastapi.testclient import TestClient

from api.main import PUBLIC_PATHS, create_app
from api.routes.ui import CSP
from api.routes.ui import PUBLIC_PATHS as UI_PUBLIC_PATHS
from api.settings import Settings

KEY = "routes-test-key"


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}"))) as c:
        yield c


@pytest.fixture
def key_client(tmp_path):
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", api_key=KEY))) as c:
        yield c


def test_static_files_are_served_with_a_same_origin_policy(client):
    for path, kind in (("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(kind)
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        # revalidation: same bytes → 304 without a body
        again = client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    html = client.get("/").text
    assert '<script src="/ui/app.js" defer></script>' in html and '<link rel="stylesheet" href="/ui/app.css">' in html
    # the page names no other host: every src/href is this origin, a fragment or data:
    assert "http://" not in html and "https://" not in html


def test_page_files_need_no_key_but_data_routes_do(key_client):
    assert UI_PUBLIC_PATHS <= PUBLIC_PATHS
    for path in sorted(UI_PUBLIC_PATHS):
        assert key_client.get(path).status_code == 200, path
    for path in ("/v1/formats", "/v1/hardware/l4/roofs"):
        r = key_client.get(path)
        assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
        assert key_client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # the page's routes stay out of the API description; the JSON ones are in it
    paths = key_client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()["paths"]
    assert "/" not in paths and "/ui/app.js" not in paths
    assert "/v1/formats" in paths and "/v1/hardware/{hardware_id}/roofs" in paths


def test_formats_price_bits_as_the_registry_and_list_every_export_target(client):
    from api.routes.plans import ExportFormat

    body = client.get("/v1/formats").json()
    bits = {f["name"]: f["bits_per_value"] for f in body["formats"]}
    # int4 g128 + fp16 scale = 4 + 16/128 = 4.125 bits; MXFP4 = 4 + 8/32 (OCP MX v1.0); NVFP4 = 4 + 8/16
    # (+ one fp32 tensor scale over a 4096 × 4096 matrix).
    assert bits["int4-g128"] == pytest.approx(4.125, abs=1e-12)
    assert bits["mxfp4"] == pytest.approx(4.25, abs=1e-12)
    assert bits["nvfp4"] == pytest.approx(4.5 + 32 / 4096**2, abs=1e-12)
    assert bits["bf16"] == 16
    assert body["aliases"]["int4"] == "int4-g128"
    assert body["export_formats"] == list(typing.get_args(ExportFormat))
    assert {"dense", "2:4"} <= set(body["sparsity"])


def test_roofs_give_ridge_points_from_profile_peaks(client):
    r = client.get("/v1/hardware/h100-sxm/roofs").json()
    bw = r["device_bandwidth_bytes_per_s"]
    assert r["device_tier"] == "hbm3" and bw == pytest.approx(3.35e12)
    bf16 = next(c for c in r["compute"] if "bf16" in c["precisions"])
    # scaling-book roofline.md: H100 dense bf16 critical intensity ≈ 298 FLOP/byte
    # (989 TFLOP/s over 3.35 TB/s = 295), ±2%.
    assert bf16["ridge_flop_per_byte"] == pytest.approx(298, rel=0.02)
    assert bf16["ridge_flop_per_byte"] == pytest.approx(bf16["peak_flops_per_s"] / bw, rel=1e-12)
    assert bf16["sparse_2to4_peak_flops_per_s"] == pytest.approx(2 * bf16["peak_flops_per_s"])
    # precisions sharing one peak share one entry; peaks of a unit are distinct
    per_unit: dict[str, list[float]] = {}
    for c in r["compute"]:
        per_unit.setdefault(c["unit"], []).append(c["peak_flops_per_s"])
    assert all(len(v) == len(set(v)) for v in per_unit.values())
    assert {t["role"] for t in r["tiers"]} >= {"device", "host"}


def test_roofs_of_an_fpga_come_from_its_fabric_and_unknown_ids_are_404(client):
    r = client.get("/v1/hardware/zcu102/roofs").json()
    assert {c["unit"] for c in r["compute"]} == {"fabric"}, "a ZCU102 has no listed units: its roofs are the fabric's"
    peak = {p: c["peak_flops_per_s"] for c in r["compute"] for p in c["precisions"]}
    # integer MACs cost fewer DSP/LUT resources than minifloat ones at the same width (hwmodels.fpga.mac_cost)
    assert peak["int8"] > peak["fp8"] and peak["int4"] > peak["int8"]
    units = {c["unit"] for c in client.get("/v1/hardware/vck190/roofs").json()["compute"]}
    assert units == {"aie", "fabric"}, "Versal: the AI Engines and the programmable fabric"
    r = client.get("/v1/hardware/no-such-device/roofs")
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "hardware"


def test_roofs_only_for_precisions_the_device_has(client):
    # Hopper has no int4 (or fp4) tensor cores: int4 runs on the int8 roof and has none of its own.
    r = client.get("/v1/hardware/h100-sxm/roofs").json()
    listed = {p for c in r["compute"] for p in c["precisions"]}
    assert "int4" not in listed and "fp4" not in listed
    int8 = next(c for c in r["compute"] if "int8" in c["precisions"])
    assert "int4" in int8["emulated_precisions"]
    # Blackwell does have fp4: its roof is its own
    b = client.get("/v1/hardware/b200/roofs")
    if b.status_code == 200:
        assert any("fp4" in c["precisions"] for c in b.json()["compute"])


def _engine_picker(js: str) -> str:
    """The page's engine-picker code (``setEngineOptions`` and the helpers it calls) from app.js."""
    import re

    helpers = "\n".join(re.findall(r"^  const (?:pickerKind|ofKind) = .*;$", js, flags=re.M))
    start = js.index("  async function setEngineOptions(")
    return helpers + "\n" + js[start:js.index("\n  }\n", start) + 4]


def test_the_engine_picker_offers_training_engines_to_a_training_estimate_only(client):
    """The web page's engine picker, run in Node on the answer of the route that feeds it
    (``GET /v1/engines?hardware=``): an inference estimate, a plan or a sweep is offered the serving
    engines only — Megatron-Core and FSDP run no inference — and a training estimate the training ones."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js to run the page's picker code in")
    on = client.get("/v1/engines", params={"hardware": "h100-sxm"}).json()
    script = f"""
const d = {json.dumps(on)};
let training = false;
const wantTraining = () => training;
const state = {{ hardware: [{{ id: "h100-sxm", class: "gpu" }}] }};
const sel = {{ dataset: {{}}, value: "", offered: [] }};
const $ = () => sel;
const el = (tag, attrs, kids) => ({{ tag, attrs, kids }});
const fill = (node, ...groups) => {{ node.offered = groups.filter(Boolean).flatMap((g) => g.kids.map((o) => o.attrs.value)); }};
const enginesOn = async () => d;
{_engine_picker(client.get("/ui/app.js").text)}
(async () => {{
  const out = {{}};
  let r = await setEngineOptions("h100-sxm", null);
  out.inference = {{ offered: sel.offered, value: sel.value }};
  training = true;
  r = await setEngineOptions("h100-sxm", null);
  out.training = {{ offered: sel.offered, value: sel.value }};
  training = false;
  r = await setEngineOptions("h100-sxm", "megatron-core");
  out.back = {{ offered: sel.offered, value: sel.value, replaced: r.replaced }};
  console.log(JSON.stringify(out));
}})();
"""
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    serving = [e["id"] for e in on["items"] if e["kind"] != "training"]
    training = [e["id"] for e in on["items"] if e["kind"] == "training"]
    assert {"megatron-core", "fsdp"} <= set(training) and "vllm" in serving
    assert out["inference"] == {"offered": serving, "value": on["default"]}, out
    assert out["training"] == {"offered": training, "value": on["default_training"]}, out
    # a training engine picked for a training estimate gives way to the serving default afterwards:
    # it runs on the hardware, so the page does not say it was replaced for not running there
    assert out["back"] == {"offered": serving, "value": on["default"], "replaced": None}, out
