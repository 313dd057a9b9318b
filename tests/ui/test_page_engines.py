"""The engine on the web page, driven in headless Chromium against the live ``tierwise serve``:
the picker fed by ``GET /v1/engines`` (the hardware class's default first), the format fields
filled from what the engine runs there (``GET /v1/engines/{id}?hardware=``), the engine in
every request, link and CLI / curl command, and the Plan view's default plan deployed with
vLLM — a ``vllm serve`` command whose flags are vLLM's documented engine arguments, and a
compressed-tensors quantization config that compressed-tensors' own model accepts.

Screenshots go to ``$TIERWISE_UI_SCREENSHOT_DIR`` when it is set (``docs/img``), else to a
temporary folder. Skips, saying why, without Playwright or a system Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from livepage import Recorder, Server, open_page, post_result, screenshot_dir, shared_browser  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=30_000)

SOLVE_TIMEOUT_MS = 180_000
VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}

# vLLM's engine arguments as `vllm serve` takes them, documented at
# https://docs.vllm.ai/en/stable/configuration/engine_args/ (vllm/engine/arg_utils.py):
# the flags a Tierwise plan sets, and the documented choices of those that take a choice.
VLLM_SERVE_FLAGS = {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--enable-expert-parallel",
                    "--quantization", "--dtype", "--kv-cache-dtype", "--max-model-len", "--max-num-seqs",
                    "--max-num-batched-tokens", "--enable-chunked-prefill", "--block-size", "--enforce-eager",
                    "--enable-prefix-caching", "--swap-space", "--served-model-name", "--trust-remote-code",
                    "--gpu-memory-utilization", "--cpu-offload-gb"}
VLLM_DTYPES = {"auto", "half", "float16", "bfloat16", "float", "float32"}
VLLM_KV_CACHE_DTYPES = {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}
# --quantization choices: QuantizationMethods in vllm/model_executor/layers/quantization/__init__.py
# (https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/layers/quantization/__init__.py)
VLLM_QUANTIZATION = {"aqlm", "awq", "deepspeedfp", "tpu_int8", "fp8", "ptpc_fp8", "fbgemm_fp8", "modelopt", "modelopt_fp4",
                     "marlin", "bitblas", "gguf", "gptq_marlin_24", "gptq_marlin", "gptq_bitblas", "awq_marlin", "gptq",
                     "compressed-tensors", "bitsandbytes", "hqq", "experts_int8", "ipex", "quark", "moe_wna16", "torchao",
                     "auto-round"}
INT_FLAGS = {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--max-model-len", "--max-num-seqs",
             "--max-num-batched-tokens", "--block-size"}


@pytest.fixture(scope="module")
def browser():
    b = shared_browser()
    if b is None:
        where = os.environ.get("TIERWISE_CHROMIUM") or "chromium on PATH or /usr/bin/chromium"
        pytest.skip(f"no system Chromium at {where} (apt-get install chromium); the browser tests never download one")
    return b


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    s = Server(tmp_path_factory.mktemp("ui-engines"), env={"TIERWISE_SYNC_WAIT_S": "1.5"}).start()
    try:
        with s.client() as c:
            for path in ("/v1/hardware", "/v1/models", "/v1/formats", "/v1/engines"):
                c.get(path).raise_for_status()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory, "ui-engine-shots")


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def vp(request):
    return request.param


@pytest.fixture
def page(browser, server, vp):
    rec = Recorder()
    ctx, pg = open_page(browser, server.base, rec, viewport=VIEWPORTS[vp])
    yield pg
    ctx.close()
    assert rec.foreign(server.base) == [], f"requests outside {server.base}: {rec.foreign(server.base)}"
    assert rec.errors == [], f"script errors in the page: {rec.errors}"


def ready(page, hash_: str = "") -> None:
    page.goto("/" + hash_)
    expect(page.locator("body")).to_have_attribute("data-restored", "true", timeout=120_000)
    expect(page.locator("body")).to_have_attribute("data-engine-ready", "true")


def settled(page) -> None:
    expect(page.locator("body")).to_have_attribute("data-engine-ready", "true")


def shot(page, shots: Path, name: str, vp: str) -> None:
    page.screenshot(path=str(shots / f"ui-{name}{'-phone' if vp == 'phone' else ''}.png"), full_page=True)


def visible_errors(page, scope: str) -> list[str]:
    return page.locator(f"{scope} .field-error, {scope} .form-error, #global-error").evaluate_all(
        "ps => ps.filter(p => !p.hidden && p.textContent.trim()).map(p => p.textContent)")


def formats_in_form(page) -> dict:
    return {k: page.input_value(f"#est-{k}") for k in ("weights", "activations", "kv")}


# ------------------------------------------------------------------------------ the picker


def test_the_picker_follows_the_hardware_and_the_formats_follow_the_engine(page, server, shots, vp):
    ready(page)
    with server.client() as c:
        h100 = c.get("/v1/engines", params={"hardware": "h100-sxm"}).json()
        phone = c.get("/v1/engines", params={"hardware": "iphone-15-pro"}).json()
        et = c.get("/v1/engines/executorch", params={"hardware": "iphone-15-pro"}).json()
        mlc = c.get("/v1/engines/mlc-llm", params={"hardware": "iphone-15-pro"}).json()
    # the default hardware's engines, its class default picked (what a request without one gets)
    expect(page.locator("#hardware")).to_have_value("h100-sxm")
    expect(page.locator("#engine")).to_have_value(h100["default"])
    serving = [i["id"] for i in h100["items"] if i["kind"] != "training"]
    # an inference estimate: no training engine (Megatron-Core, FSDP runs no inference) is offered
    assert page.locator("#engine option").evaluate_all("os => os.map(o => o.value)") == serving
    expect(page.locator("#engine option:checked")).to_contain_text("default for gpu")

    # An iPhone: ExecuTorch, and the formats it runs there (fp16, not the page's old bf16)
    page.select_option("#model", "llama-3.2-1b")
    page.select_option("#hardware", "iphone-15-pro")
    settled(page)
    expect(page.locator("#engine")).to_have_value(phone["default"])
    assert phone["default"] == "executorch"
    assert [o for o in page.locator("#engine option").evaluate_all("os => os.map(o => o.value)")] == [i["id"] for i in phone["items"]]
    assert formats_in_form(page) == et["defaults"]
    assert set(page.locator("#formats-weight option").evaluate_all("os => os.map(o => o.value)")) == set(et["support"]["weights"])
    expect(page.locator("#engine-info")).to_contain_text("fp16")
    with page.expect_request(lambda r: r.url.endswith("/v1/estimate") and r.method == "POST") as sent:
        page.click("#estimate-run")
    body = sent.value.post_data_json
    assert body["engine"] == "executorch" and body["weights"] == et["defaults"]["weights"]
    expect(page.locator("#estimate-result h2")).to_contain_text("llama-3.2-1b on iphone-15-pro")
    assert visible_errors(page, "#estimate-form") == []
    with server.client() as c:
        api = c.post("/v1/estimate", json={k: v for k, v in body.items() if k != "per_op"})
    assert api.status_code == 200, api.text
    assert api.json()["engine"] == "executorch"
    shot(page, shots, "engine", vp)

    # the user may still type another format: the API's message lands beside the field
    page.fill("#est-weights", "bf16")
    page.click("#estimate-run")
    err = page.locator('#estimate-form [data-field="weights"] .field-error')
    expect(err).to_be_visible()
    expect(err).to_contain_text("executorch")
    expect(err).to_contain_text("fp16")
    expect(page.locator("#est-weights")).to_have_attribute("aria-invalid", "true")

    # another engine: the formats reset to what it runs, and it is in the request, the
    # commands and the link
    page.select_option("#engine", "mlc-llm")
    settled(page)
    assert formats_in_form(page) == mlc["defaults"]
    expect(page.locator("#est-weights")).not_to_have_attribute("aria-invalid", "true")
    page.click("#estimate-run")
    expect(page.locator("#estimate-result .commands")).to_have_count(1)
    page.click("#estimate-result .commands summary")
    cli = page.locator("#estimate-result .cmd-cli").inner_text()
    curl = page.locator("#estimate-result .cmd-curl").inner_text()
    assert "--engine mlc-llm" in cli and '"engine":"mlc-llm"' in curl
    q = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])
    assert q["engine"] == ["mlc-llm"] and q["hardware"] == ["iphone-15-pro"]

    # the link restores the engine with the rest
    url = page.url
    page.goto("about:blank")
    ready(page, "#" + url.split("#", 1)[1])
    expect(page.locator("#engine")).to_have_value("mlc-llm")
    expect(page.locator("#hardware")).to_have_value("iphone-15-pro")
    assert formats_in_form(page) == mlc["defaults"]

    # an engine the user picked stays while it runs on the new hardware; where it does not,
    # the class default takes over and the page says why
    page.select_option("#hardware", "m2-max")
    settled(page)
    expect(page.locator("#engine")).to_have_value("mlc-llm")
    page.select_option("#hardware", "zcu102")
    settled(page)
    expect(page.locator("#engine")).to_have_value("vitis-ai")
    expect(page.locator("#engine-info")).to_contain_text("does not run on zcu102")
    with server.client() as c:
        dpu = c.get("/v1/engines/vitis-ai", params={"hardware": "zcu102"}).json()
    assert formats_in_form(page) == dpu["defaults"]


def _training_mode(page, vp) -> None:
    """Llama 3.2 1B in the estimate form's training mode (one viewport is enough for the mode switch)."""
    if vp == "phone":
        pytest.skip("one viewport is enough for the mode switch")
    ready(page)
    page.select_option("#model", "llama-3.2-1b")
    page.select_option("#est-mode", "training")
    settled(page)


def test_a_training_estimate_takes_the_training_engine(page, server, vp):
    _training_mode(page, vp)
    expect(page.locator("#engine")).to_have_value("megatron-core")
    offered = page.locator("#engine option").evaluate_all("os => os.map(o => o.value)")
    assert "megatron-core" in offered and "vllm" not in offered, offered
    with page.expect_request(lambda r: r.url.endswith("/v1/estimate") and r.method == "POST") as sent:
        page.click("#estimate-run")
    assert sent.value.post_data_json["engine"] == "megatron-core"
    expect(page.locator("#estimate-result .card", has_text="Step time")).to_be_visible()
    # the memory bar's parts are the API's, Megatron-Core's runtime context among them
    expect(page.locator("#estimate-result .mem .legend")).to_contain_text("engine runtime")
    page.click("#estimate-result .commands summary")
    assert "--engine megatron-core" in page.locator("#estimate-result .cmd-cli").inner_text()
    page.select_option("#est-mode", "inference")
    settled(page)
    expect(page.locator("#engine")).to_have_value("vllm")


def test_the_weights_follow_qlora_and_the_estimate_prices_its_nf4_base(page, server, vp):
    """The weights field is shared by both modes and was sent as bf16 beside qlora:16, which the API now refuses
    (QLoRA's frozen base is 4-bit): the field follows the fine-tuning method, visibly."""
    _training_mode(page, vp)
    page.select_option("#engine", "fsdp")
    page.fill("#est-finetune", "qlora:16")
    page.press("#est-finetune", "Tab")
    expect(page.locator("#est-weights")).to_have_value("nf4")
    with page.expect_request(lambda r: r.url.endswith("/v1/estimate") and r.method == "POST") as sent:
        page.click("#estimate-run")
    body = sent.value.post_data_json
    assert body["weights"] == "nf4" and body["finetune"] == "qlora:16" and body["engine"] == "fsdp", body
    expect(page.locator("#estimate-result .card", has_text="Step time")).to_be_visible()
    page.fill("#est-finetune", "lora:16")
    page.press("#est-finetune", "Tab")
    expect(page.locator("#est-weights")).to_have_value("bf16")


# ------------------------------------------------------------------------------ plan → deploy


def serve_flags(command: str) -> dict:
    argv = shlex.split(command)
    assert argv[:2] == ["vllm", "serve"], command
    flags: dict = {}
    i = 3
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--"), (flag, command)
        takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        flags[flag] = argv[i + 1] if takes_value else True
        i += 2 if takes_value else 1
    return flags


def check_vllm_flags(flags: dict, plan: dict) -> None:
    """Every flag is one of vLLM's documented engine arguments, with a documented value."""
    assert set(flags) <= VLLM_SERVE_FLAGS, set(flags) - VLLM_SERVE_FLAGS
    for f in INT_FLAGS & set(flags):
        assert re.fullmatch(r"[1-9][0-9]*", flags[f]), (f, flags[f])
    assert flags["--dtype"] in VLLM_DTYPES
    assert flags.get("--kv-cache-dtype", "auto") in VLLM_KV_CACHE_DTYPES
    if "--quantization" in flags:
        assert flags["--quantization"] in VLLM_QUANTIZATION
    assert 0 < float(flags["--gpu-memory-utilization"]) <= 1
    lay = plan["layout"]
    assert int(flags["--tensor-parallel-size"]) == lay["tp"] and int(flags["--pipeline-parallel-size"]) == lay["pp"]
    w = plan["workload"]
    assert int(flags["--max-model-len"]) == w["prompt"] + w["gen"] and int(flags["--max-num-seqs"]) == w["batch"]


def deploy(page, plan_id: str) -> tuple[dict, list]:
    """Click the plan's engine button; the shown command's flags and the downloaded files."""
    button = page.locator("#export-engine")
    expect(button).to_have_attribute("data-format", "vllm")
    expect(button).to_contain_text("vLLM")
    with page.expect_download() as dl:
        button.click()
    expect(page.locator("#export-command")).to_contain_text("vllm serve")
    assert page.locator("#export-error").is_hidden()
    with zipfile.ZipFile(dl.value.path()) as zf:
        files = [(n, zf.read(n).decode("utf-8")) for n in zf.namelist()]
    return serve_flags(page.locator("#export-command").inner_text()), files


def test_the_default_plan_deploys_with_vllm_using_its_documented_flags(page, server, shots, vp):
    """Acceptance (issue 11): the Plan view's default form, solved and exported with the
    engine's own button, gives a `vllm serve` command of vLLM's real engine arguments; with a
    memory budget, a compressed-tensors checkpoint config compressed-tensors accepts."""
    ct = pytest.importorskip("compressed_tensors.quantization", reason="compressed-tensors is not installed")
    ready(page)
    page.click("#tab-plan")
    expect(page.locator("#engine")).to_have_value("vllm")
    with page.expect_request(lambda r: r.url.endswith("/v1/plans") and r.method == "POST") as sent:
        page.click("#plan-run")
    assert sent.value.post_data_json["engine"] == "vllm" and "formats" not in sent.value.post_data_json
    summary = page.locator("#plan-summary")
    expect(summary).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    plan_id = summary.get_attribute("data-plan-id")
    with server.client() as c:
        plan = c.get(f"/v1/plans/{plan_id}").json()["plan"]
        api = c.get(f"/v1/plans/{plan_id}/export", params={"format": "vllm"}).json()
    flags, files = deploy(page, plan_id)
    assert page.locator("#export-command").inner_text() == api["next_command"]
    check_vllm_flags(flags, plan)
    args = json.loads(dict(files)["vllm_args.json"])
    assert {"--" + k.replace("_", "-") for k in args if k != "model"} == set(flags)
    expect(page.locator("#plan-deploy")).to_contain_text("planned for vLLM on h100-sxm")
    page.click("#plan-summary .commands summary")
    assert "--engine vllm" in page.locator("#plan-summary .cmd-cli").inner_text()
    assert "engine=vllm" in page.url
    shot(page, shots, "deploy", vp)

    # A budget that forces compression: the command loads a compressed-tensors checkpoint,
    # and the compressed-tensors export's quantization config is one that library accepts.
    page.fill("#plan-mem", "10GB")
    page.click("#plan-run")
    expect(summary).not_to_have_attribute("data-plan-id", plan_id, timeout=SOLVE_TIMEOUT_MS)
    plan_id = summary.get_attribute("data-plan-id")
    with server.client() as c:
        plan = c.get(f"/v1/plans/{plan_id}").json()["plan"]
    assert {c["weights"] for c in plan["choices"].values()} != {"bf16"}, "a 10 GB budget should compress an 8B model"
    flags, _ = deploy(page, plan_id)
    check_vllm_flags(flags, plan)
    assert flags["--quantization"] == "compressed-tensors"
    with page.expect_download() as dl:
        page.click('#plan-summary .exports button[data-format="compressed-tensors"]')
    with zipfile.ZipFile(dl.value.path()) as zf:
        cfg = json.loads(zf.read("quantization_config.json"))
    parsed = ct.QuantizationConfig.model_validate(cfg)
    assert parsed.quant_method == "compressed-tensors" and parsed.config_groups
    for scheme in parsed.config_groups.values():
        assert scheme.targets and scheme.weights is not None and scheme.weights.num_bits in (4, 8)


@pytest.mark.parametrize(("hardware", "engine", "exporter"), [("m2-max", "llamacpp", "llamacpp"), ("h100-sxm", "trtllm", "trtllm")])
def test_a_plan_for_another_engine_exports_with_that_engines_exporter(page, server, vp, hardware, engine, exporter):
    if vp == "phone":
        pytest.skip("one viewport is enough for the other engines")
    ready(page, "#plan")
    page.select_option("#hardware", hardware)
    settled(page)
    page.select_option("#engine", engine)
    settled(page)
    page.click("#plan-run")
    expect(page.locator("#plan-summary")).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#plan-summary p.muted").first).to_contain_text(f"with {engine}")
    button = page.locator("#export-engine")
    expect(button).to_have_attribute("data-format", exporter)
    with page.expect_download():
        button.click()
    expect(page.locator("#export-out")).to_contain_text(exporter)
    assert page.locator("#export-error").is_hidden()


# ------------------------------------------------------------------------------ capacity


def test_capacity_takes_engines_from_the_engine_list(page, server, shots, vp):
    """One engine (a server whose capacity takes one) or several side by side, one row per
    engine × hardware (a server whose `engine` takes a list, as its OpenAPI says)."""
    if vp == "phone":
        pytest.skip("one viewport is enough for the capacity engine")
    ready(page, "#capacity")
    expect(page.locator("#capacity-fields [data-field]").first).to_be_visible()
    with server.client() as c:
        serving = [i["id"] for i in c.get("/v1/engines").json()["items"] if i["kind"] != "training"]
    page.select_option("#cap-model", "llama-3.2-1b")
    for value in page.locator("#capacity-hardware input:checked").evaluate_all("bs => bs.map(b => b.value)"):
        page.uncheck(f'#capacity-hardware input[value="{value}"]')
    page.check('#capacity-hardware input[value="l4"]')
    several = page.locator("#cap-engines").count() == 1
    if several:
        boxes = page.locator("#cap-engines input")
        assert boxes.evaluate_all("bs => bs.map(b => b.value)") == serving
        assert page.locator("#cap-engines input:checked").count() == 0  # none: each hardware's default
        page.check('#cap-engines input[value="vllm"]')
        page.check('#cap-engines input[value="trtllm"]')
        want = ["trtllm", "vllm"]
    else:
        select = page.locator("#cap-engine")
        expect(select).to_have_value("")
        assert select.locator("option").evaluate_all("os => os.map(o => o.value)") == [""] + serving
        page.select_option("#cap-engine", "trtllm")
        want = ["trtllm"]
    with page.expect_request(lambda r: r.url.endswith("/v1/capacity") and r.method == "POST") as sent:
        page.click("#capacity-run")
    body = sent.value.post_data_json
    assert sorted([body["engine"]] if isinstance(body["engine"], str) else body["engine"]) == want
    assert body["hardware"] == ["l4"]
    expect(page.locator("#capacity-result .panel")).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    with server.client() as c:
        api = post_result(c, "/v1/capacity", body)
    assert "error" not in api, api
    rows = page.locator("#capacity-table tbody tr, #capacity-miss tbody tr")
    expect(rows).to_have_count(len(api["hardware"]) + len(api.get("unsupported", [])))
    if several:
        engines = sorted(page.locator("#capacity-table tbody tr td:nth-child(11), #capacity-miss tbody tr td:nth-child(11)").all_text_contents())
        assert engines == sorted(h["engine"] for h in api["hardware"]) == want
        expect(page.locator("#capacity-plot")).to_have_attribute("data-series", re.compile(r"\d+"), timeout=SOLVE_TIMEOUT_MS)
        shot(page, shots, "capacity-engines", vp)
    page.click("#capacity-result .commands summary")
    assert f"--engine {','.join(body['engine']) if several else 'trtllm'}" in page.locator("#capacity-result .cmd-cli").inner_text()
    q = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])
    assert sorted(q["engine"][0].split(",")) == want
    if several:  # the link ticks the same engines again
        url = page.url
        page.goto("about:blank")
        ready(page, "#" + url.split("#", 1)[1])
        expect(page.locator("#capacity-result .panel")).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
        assert sorted(page.locator("#cap-engines input:checked").evaluate_all("bs => bs.map(b => b.value)")) == want


# ------------------------------------------------------------------------------ frontier


def test_throughput_view_draws_the_frontier_of_each_engine(page, server, shots, vp):
    with server.client() as c:
        if "/v1/capacity/frontier" not in c.get("/openapi.json").json()["paths"]:
            pytest.skip("this build of the service has no POST /v1/capacity/frontier")
    ready(page, "#throughput?model=llama-3.2-1b&hardware=l4&engine=vllm&batches=1,8,64")
    expect(page.locator("#throughput-chart")).to_have_attribute("data-points", re.compile(r"\d+"), timeout=60_000)
    form = page.locator("#frontier-form")
    expect(form).to_be_visible()
    # the picked engine is ticked; every serving engine that runs on an L4 is offered
    with server.client() as c:
        on = c.get("/v1/engines", params={"hardware": "l4"}).json()
    offered = page.locator("#frontier-engines input").evaluate_all("bs => bs.map(b => b.value)")
    assert offered == [i["id"] for i in on["items"] if i["kind"] != "training"]
    assert page.locator("#frontier-engines input:checked").evaluate_all("bs => bs.map(b => b.value)") == ["vllm"]
    page.check('#frontier-engines input[value="trtllm"]')
    page.fill("#frontier-max-devices", "4")
    with page.expect_request(lambda r: r.url.endswith("/v1/capacity/frontier") and r.method == "POST") as sent:
        page.click("#frontier-run")
    body = sent.value.post_data_json
    assert body["engine"] == ["trtllm", "vllm"] or body["engine"] == ["vllm", "trtllm"]
    assert body["hardware"] == ["l4"] and body["max_devices"] == 4 and body["prompt"] == 512 and body["gen"] == 128
    chart = page.locator("#frontier-chart")
    expect(chart).to_have_attribute("data-series", re.compile(r"\d+"), timeout=SOLVE_TIMEOUT_MS)
    with server.client() as c:
        api = c.post("/v1/capacity/frontier", json=body)
    assert api.status_code == 200, api.text
    series = [s for s in api.json()["series"] if s["points"]]
    assert {s["engine"] for s in series} == {"vllm", "trtllm"}
    expect(chart).to_have_attribute("data-series", str(len(series)))
    points = [p for s in series for p in s["points"]]
    expect(chart.locator("circle.fp")).to_have_count(len(points))
    expect(chart.locator("path.line")).to_have_count(len(series))
    # the table is the API's points: per user and per device, as the page renders numbers
    cells = page.locator("#frontier-table tbody tr").evaluate_all(
        "rs => rs.map(r => Array.from(r.cells).map(c => c.dataset.v !== undefined ? c.dataset.v : c.textContent))")
    assert len(cells) == len(points)
    got = sorted((r[0], int(r[2]), int(r[3]), float(r[6]), float(r[7])) for r in cells)
    want = sorted((p["engine"], p["batch"], p["devices"], p["tokens_per_s_per_user"], p["tokens_per_s_per_device"]) for p in points)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want):
        assert g[3] == pytest.approx(w[3], rel=1e-9) and g[4] == pytest.approx(w[4], rel=1e-9)
    # each point's figures carry their p10–p90 band, as the API gives it, and the page says what the bands are
    texts = page.locator("#frontier-table tbody tr").evaluate_all("rs => rs.map(r => Array.from(r.cells).map(c => c.textContent))")
    assert all(re.search(r"\(.+ – .+\)", t[6]) and re.search(r"\(.+ – .+\)", t[8]) for t in texts), texts[:2]
    assert all(p["uncertainty"]["intervals"]["tpot_s"]["p10"] < p["tpot_s"] for p in points)
    expect(page.locator("#frontier-bands")).to_contain_text("p10–p90")
    # on each line, more tokens/s per user never comes with more tokens/s per device (a frontier)
    for s in series:
        pts = sorted(s["points"], key=lambda p: p["tokens_per_s_per_user"])
        dev = [p["tokens_per_s_per_device"] for p in pts]
        assert dev == sorted(dev, reverse=True), s["engine"]
    page.click("#frontier-result .commands summary")
    cli = page.locator("#frontier-result .cmd-cli").inner_text()
    assert cli.startswith("tierwise capacity frontier ") and "--engine " in cli and "trtllm" in cli
    assert "frontier=" in page.url and "engine=vllm" in page.url
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, shots, "frontier", vp)
    # the link draws it again
    url = page.url
    page.goto("about:blank")
    ready(page, "#" + url.split("#", 1)[1])
    expect(page.locator("#frontier-chart")).to_have_attribute("data-series", str(len(series)), timeout=SOLVE_TIMEOUT_MS)
