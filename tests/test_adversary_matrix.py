"""The tool as an adversary and a new user try it: every engine × every catalog hardware × a
spread of architectures (decoders, MoE, sliding window, encoders, encoder-decoder, CNNs, ViT)
through the command line, the Python API and a live ``tierwise serve`` over real HTTP.

Each answer is one of: a result (exit 0 / 2xx) whose figures are finite, non-negative and
physically possible — no phase faster than its bytes over the fastest tier that holds them or
its FLOPs at the device's highest peak, no device holding less than its resident weights, MFU
and HFU in (0, 1] — or a refusal (exit 2 / 3, a 4xx) that names its field. Never a traceback,
"internal error", another exit code or a 5xx. The unmarked part runs in well under a minute;
the 405B × 4,096-device plan and capacity searches and the all-hardware REST walk are ``slow``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
from liveserver import checked_server

import planner
from hwmodels import list_devices, load_device
from hwmodels.errors import TierwiseError
from planner.engines import list_engines, load_engine

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = list_devices()
ENGINES = list_engines()
#: Llama, MoE, sliding window (Gemma-2), Qwen2, Phi-3, Falcon (multi-query), encoders, T5, a ViT, CNNs.
ARCHS = ["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b", "qwen2.5-7b", "phi-3-mini", "falcon-7b",
         "all-minilm-l6-v2", "bert-base", "t5-3b", "vit-h", "resnet-50", "mobilenet-v2"]


def _numbers(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def _max_peak(dev) -> float:
    """The device's highest listed peak (2:4 sparse included); 0 for an FPGA fabric (no floor)."""
    return max((v * max(1.0, u.sparse_2to4_speedup) for u in dev.compute_units for v in u.peak_flops_per_s.values()),
               default=0.0)


def impossible_figures(result: dict, dev) -> list[str]:
    """What is impossible in one ``estimate --json`` answer (inference or training)."""
    bad = [f"{p}={v}" for p, v in _numbers(result) if not math.isfinite(v) or v < 0]
    bandwidth = {t.name: t.bandwidth_bytes_per_s for t in dev.tiers}
    peak = _max_peak(dev)
    for name in ("prefill", "decode"):
        phase = result.get(name)
        if not isinstance(phase, dict):
            continue
        t = phase["time_s"]
        floor_bytes = max([b / bandwidth[tier] for tier, b in phase["bytes_by_tier"].items()] or [0.0])
        floor_flops = phase["flops_per_device"] / peak if peak else 0.0
        if not t > 0 or t < 0.999 * floor_bytes or t < 0.999 * floor_flops:
            bad.append(f"{name}: {t:.3g} s below its floor (bytes {floor_bytes:.3g} s, FLOPs {floor_flops:.3g} s)")
    mem = result.get("memory") or {}
    if result.get("mode") == "inference" and mem:
        resident = mem["weights_bytes"] - mem.get("offloaded_weights_bytes", 0.0)
        if mem["per_device_bytes"] < resident * (1 - 1e-9) / max(1, result["tp"] * result["pp"]):
            bad.append(f"per-device memory {mem['per_device_bytes']:.3g} below its resident weights {resident:.3g}")
    if result.get("mode") == "training":
        bad += [f"{k}={result[k]}" for k in ("mfu", "hfu") if not 0 < result[k] <= 1]
        if not result["step_time_s"] > 0:
            bad.append("step_time_s")
    return bad


def check_cli(cli, *args) -> tuple[int, dict | None, str]:
    """One in-process command line: (exit code, JSON answer, text); asserts it did not crash."""
    r = cli(*args)
    text = r.out + r.err
    assert r.code in (0, 2, 3), f"{args}: exit {r.code}\n{text[-1500:]}"
    assert "Traceback" not in text and "internal error" not in text.lower(), f"{args}:\n{text[-1500:]}"
    data = json.loads(r.out) if r.code == 0 and "--json" in args else None
    return r.code, data, text


# ---------------------------------------------------------------- estimate: hardware × architectures


@pytest.mark.parametrize("model", ARCHS)
def test_estimate_every_hardware_gives_a_possible_answer_or_a_clear_refusal(cli, model):
    answered = 0
    for hw in HARDWARE:
        code, data, text = check_cli(cli, "estimate", "--model", model, "--hardware", hw, "--batch", "4",
                                     "--prompt", "256", "--gen", "32", "--json")
        if code == 0:
            answered += 1
            assert not (bad := impossible_figures(data, load_device(hw))), (model, hw, bad)
        else:
            assert "error" in text, (model, hw, text)
    assert answered >= len(HARDWARE) // 3, f"{model}: only {answered} of {len(HARDWARE)} devices answered"


def test_estimate_every_engine_on_every_hardware(cli):
    """Every engine × every device: the engine runs there (a possible answer) or it is refused naming --engine."""
    ran = 0
    for engine in ENGINES:
        for hw in HARDWARE:
            code, data, text = check_cli(cli, "estimate", "--model", "llama-3.2-1b", "--hardware", hw, "--engine", engine,
                                         "--batch", "2", "--prompt", "128", "--gen", "16", "--json")
            if code == 0:
                ran += 1
                assert data["engine"] == engine
                assert not (bad := impossible_figures(data, load_device(hw))), (engine, hw, bad)
            else:
                assert "--engine" in text or "fit" in text, (engine, hw, text)
    assert ran >= len(HARDWARE) * 3


@pytest.mark.parametrize("model", ["mixtral-8x7b", "resnet-50",
                                   *(pytest.param(m, marks=pytest.mark.slow) for m in ("llama-3.1-8b", "gemma-2-9b",
                                                                                       "bert-base"))])
def test_training_estimate_is_possible_on_every_device_that_trains(cli, model):
    for hw in HARDWARE:
        for extra in (["--tp", "2", "--dp", "2", "--zero", "3"], ["--finetune", "lora:8"]):
            code, data, text = check_cli(cli, "estimate", "--mode", "training", "--model", model, "--hardware", hw,
                                         "--global-batch", "32", "--micro-batch", "1", "--json", *extra,
                                         *(() if model == "resnet-50" else ("--seq", "512")))  # a CNN has no --seq
            if code == 0:
                assert not (bad := impossible_figures(data, load_device(hw))), (model, hw, extra, bad)


def test_figures_do_not_depend_on_how_the_model_and_hardware_are_named():
    for model in ("qwen2.5-7b", "gemma-2-9b", "falcon-7b", "bert-base"):
        for hw in ("h100-sxm", "m2-max", "sn40l"):
            if model == "bert-base" and hw == "sn40l":  # SambaFlow runs decoders only: refused naming engine
                with pytest.raises(TierwiseError, match="encoder"):
                    planner.estimate(model, hw, batch=2, prompt=300, gen=10)
                continue
            ref = planner.estimate(model, hw, batch=2, prompt=300, gen=10)
            by_path = planner.estimate(str(ROOT / "profiles/models" / f"{model}.json"),
                                       str(ROOT / "profiles/hardware" / f"{hw}.yaml"), batch=2, prompt=300, gen=10)
            assert (by_path.ttft_s, by_path.tpot_s) == pytest.approx((ref.ttft_s, ref.tpot_s), rel=1e-12)
            bigger = planner.estimate(model, hw, batch=8, prompt=300, gen=10)
            assert bigger.ttft_s >= ref.ttft_s * (1 - 1e-9) and (bigger.tpot_s or 0) >= (ref.tpot_s or 0) * (1 - 1e-9)


# ---------------------------------------------------------------- scale


def test_405b_on_4096_devices_estimates_answer_at_once(cli):
    t0 = time.monotonic()
    code, data, _ = check_cli(cli, "estimate", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--tp", "8",
                              "--pp", "16", "--dp", "32", "--json")
    assert code == 0 and data["devices"] == 4096
    assert not impossible_figures(data, load_device("h100-sxm"))
    code, _, text = check_cli(cli, "estimate", "--mode", "training", "--model", "llama-3.1-405b", "--hardware", "h100-sxm",
                              "--tp", "8", "--pp", "16", "--dp", "32", "--global-batch", "4096", "--micro-batch", "1",
                              "--seq", "8192")
    assert code in (0, 3), text
    code, _, text = check_cli(cli, "estimate", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--tp", "8",
                              "--pp", "16", "--dp", "64")
    assert code == 0, text
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_405b_on_4096_devices_plan_and_capacity_keep_their_deadline(cli):
    t0 = time.monotonic()
    code, _, text = check_cli(cli, "plan", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--devices", "4096",
                              "--time-limit", "20")
    assert code in (0, 3), text
    assert time.monotonic() - t0 < 20 + 30, "the plan ran far past --time-limit"
    t0 = time.monotonic()
    code, data, text = check_cli(cli, "capacity", "serve", "--model", "llama-3.1-405b", "--hardware", "h100-sxm,b200,mi300x",
                                 "--engine", "vllm,trtllm,sglang", "--qps", "1000", "--ttft-slo", "2", "--tpot-slo", "0.05",
                                 "--max-devices", "4096", "--max-pp", "16", "--disaggregated", "--executor", "serial", "--json")
    assert code in (0, 3), text
    assert time.monotonic() - t0 < 120
    if code == 0:
        assert all(h["best"] is None or h["best"]["devices"] <= 4096 for h in data["hardware"])
        assert not [p for p, v in _numbers(data) if not math.isfinite(v) or v < 0]
    code, _, text = check_cli(cli, "capacity", "train", "--model", "llama-3.1-405b", "--hardware", "h100-sxm,b200",
                              "--tokens", "15e12", "--days", "30", "--max-devices", "4096", "--executor", "serial")
    assert code in (0, 3), text


# ---------------------------------------------------------------- engines where they cannot apply, typos


@pytest.mark.parametrize("engine", ["vllm", "llamacpp", "trtllm", "executorch"])
def test_a_serving_engine_cannot_run_a_training_step(cli, engine):
    code, _, text = check_cli(cli, "estimate", "--mode", "training", "--model", "llama-3.2-1b", "--hardware", "h100-sxm",
                              "--engine", engine)
    assert code == 2 and "--engine" in text
    if load_engine(engine).support(load_device("h100-sxm")) is not None:
        assert "not a training one" in text and "megatron-core" in text and "fsdp" in text
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_train("llama-3.2-1b", "h100-sxm", tokens=1e9, days=1, engine="vllm")
    assert exc.value.field == "engine"


def test_training_engines_still_train_but_serve_nothing():
    assert planner.estimate_training("llama-3.2-1b", "h100-sxm", engine="fsdp", seq=512).engine == "fsdp"
    for engine in ("megatron-core", "fsdp"):  # kind: training (docs/engines.md): not serving engines
        with pytest.raises(TierwiseError) as exc:
            planner.estimate("llama-3.2-1b", "h100-sxm", engine=engine)
        assert exc.value.field == "engine" and "not a serving one" in str(exc.value)


@pytest.mark.parametrize("typed, meant", [("VLLM", "vllm"), ("TRT-LLM", "trtllm"), ("llama.cpp", "llamacpp"),
                                          ("sg-lang", "sglang"), ("vlm", "vllm")])
def test_engine_typos_get_did_you_mean(cli, typed, meant):
    code, _, text = check_cli(cli, "estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine", typed)
    assert code == 2 and f"did you mean {meant}" in text, text
    code, _, text = check_cli(cli, "capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine",
                              f"{typed},trtllm", "--qps", "1", "--ttft-slo", "1", "--tpot-slo", "0.1")
    assert code == 2 and f"did you mean {meant}" in text, text


@pytest.mark.parametrize("args, flag", [
    (["estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--bacth", "4"], "--batch"),
    (["estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--egnine", "vllm"], "--engine"),
    (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limt", "3"], "--time-limit"),
    (["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--ttft-slo", "1",
      "--tpot-slo", "0.1", "--disagregated"], "--disaggregated"),
    (["capacity", "train", "--model", "llama-3.2-1b", "--hardware", "l4", "--tokens", "1e9", "--dayz", "1"], "--days"),
    (["estimate", "--model", "lama-3.1-8b", "--hardware", "l4"], "llama-3.1-8b"),
    (["estimate", "--model", "llama-3.1-8b", "--hardware", "H100-SXM"], "h100-sxm"),
    (["estimate", "--model", "llama-3.1-8b", "--hardware", "l4", "--weights", "int4g128"], "int4-g128"),
    (["estimate", "--model", "llama-3.1-8b", "--hardware", "l4", "--kv", "bf61"], "bf16"),
    (["estimate", "--mode", "training", "--model", "llama-3.1-8b", "--hardware", "l4", "--recompute", "selectve"],
     "selective"),
    (["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--ttft-slo", "1",
      "--tpot-slo", "0.1", "--serving", "disagregated"], "disaggregated"),
])
def test_flag_and_id_typos_get_did_you_mean(cli, args, flag):
    code, _, text = check_cli(cli, *args)
    assert code == 2 and "did you mean" in text and flag in text, text


def test_export_format_typo_gets_did_you_mean(cli, tmp_path):
    plan_file = tmp_path / "p.yaml"
    code, _, text = check_cli(cli, "plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limit", "10",
                              "--out", str(plan_file))
    assert code == 0, text
    code, _, text = check_cli(cli, "export", str(plan_file), "--format", "vlm", "--out", str(tmp_path / "d"))
    assert code == 2 and "did you mean vllm?" in text, text


@pytest.mark.parametrize("args, start", [
    (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--max-memory-per-device", "1e400GB"],
     "--max-memory-per-device must be a positive, finite size"),
    (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--ttft-slo", "1e400s"], "--ttft-slo must be a positive"),
    (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--ttft-slo", "abc"], "--ttft-slo must be a duration"),
    (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limit", "-1"], "--time-limit must be"),
    (["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--ttft-slo", "1e999ms",
      "--tpot-slo", "0.1"], "--ttft-slo must be a positive"),
])
def test_aliased_and_infinite_values_are_named_by_their_flag(cli, args, start):
    code, _, text = check_cli(cli, *args)
    assert code == 2, text
    message = text.split("error: ", 1)[1]
    assert message.startswith(start), message  # not "--ttft-slo-s: ..." nor "--max-memory-per-device-bytes"


# ---------------------------------------------------------------- README as a new user runs it


def test_readme_set_up_estimate_and_python_snippet_run_as_written(cli, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = re.search(r"^## Set up\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    commands = re.findall(r"(tierwise [^\n&]+)", setup)
    assert commands, "the Set up section shows a tierwise command"
    for command in commands:
        words = command.split()[1:]
        code, _, out = check_cli(cli, *words)
        assert code == 0, (command, out)
    (snippet,) = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the README's own example
    assert capsys.readouterr().out.strip()


# ---------------------------------------------------------------- REST over real HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from checked_server(tmp_path_factory, "adv-serve", {"TIERWISE_SYNC_WAIT_S": "30"})


def _no_5xx(r):
    assert r.status_code < 500, (r.request.url, r.status_code, r.text[:1000])
    return r


def test_rest_estimate_matrix_over_http(server):
    with server.client() as c:
        for model in ("llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b", "bert-base", "resnet-50"):
            for hw in HARDWARE:
                r = _no_5xx(c.post("/v1/estimate", json={"model": model, "hardware": hw, "batch": 4, "prompt": 256}))
                if r.status_code == 200:
                    assert not (bad := impossible_figures(r.json(), load_device(hw))), (model, hw, bad)
                else:
                    assert r.status_code == 422 and r.json()["error"]["code"] in ("infeasible", "engine_unsupported",
                                                                                   "invalid_field", "invalid_request"), r.text
        r = _no_5xx(c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "mode": "training",
                                                 "engine": "vllm"}))
        assert r.status_code == 422 and r.json()["error"]["field"] == "engine"


@pytest.mark.parametrize("path, body, field, suggestion", [
    ("/v1/estimate", {"model": "llama-3.1-8b", "hardware": "l4", "bacth": 2}, "bacth", "batch"),
    ("/v1/estimate", {"model": "llama-3.1-8b", "hardware": "l4", "mode": "trainig"}, "mode", "training"),
    ("/v1/estimate", {"model": "llama-3.1-8b", "hardware": "l4", "engine": "VLLM"}, "engine", "vllm"),
    ("/v1/estimate", {"model": "llama-3.1-8b", "hardware": "h100-sxn"}, "hardware", "h100-sxm"),
    ("/v1/plans", {"model": "llama-3.1-8b", "hardware": "l4", "max_memory": "20GB"}, "max_memory",
     "max_memory_per_device"),
    ("/v1/plans", {"model": "llama-3.1-8b", "hardware": "l4", "objective": "acuracy"}, "objective", "accuracy"),
    ("/v1/capacity", {"model": "llama-3.1-8b", "hardware": ["l4"], "qps": 1, "ttft_slo": 1, "tpot_slo_s": 0.1},
     "ttft_slo", "ttft_slo_s"),
    ("/v1/hardware", {"profil": {}}, "profil", "profile"),
    ("/v1/estimate", {"model": "Llama-3.1-8B", "hardware": "l4"}, "model", "llama-3.1-8b"),
])
def test_rest_typos_get_did_you_mean(server, path, body, field, suggestion):
    with server.client() as c:
        r = _no_5xx(c.post(path, json=body))
    err = r.json()["error"]
    assert r.status_code in (404, 422) and err["field"] == field, r.text
    assert "did you mean" in err["message"] and suggestion in err["message"], err


def test_rest_an_id_in_the_wrong_case_suggests_that_id_alone(server):
    with server.client() as c:
        for path, meant in (("/v1/models/Llama-3.1-8B", "llama-3.1-8b"), ("/v1/hardware/H100_SXM", "h100-sxm")):
            r = _no_5xx(c.get(path))
            assert r.status_code == 404 and r.json()["error"]["details"]["suggestions"] == [meant], r.text


def test_rest_huge_nested_and_non_finite_bodies(server):
    with server.client() as c:
        deep = '{"model": "llama-3.1-8b", "hardware": "l4", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
        r = _no_5xx(c.post("/v1/estimate", content=deep, headers={"content-type": "application/json"}))
        assert r.status_code in (400, 413, 422)
        huge = json.dumps({"model": "llama-3.1-8b", "hardware": "l4", "formats": ["fp8"] * 300_000})
        assert _no_5xx(c.post("/v1/plans", content=huge, headers={"content-type": "application/json"})).status_code == 413
        for bad in ('{"model": "llama-3.1-8b", "hardware": "l4", "batch": NaN}',
                    '{"model": "llama-3.1-8b", "hardware": "l4", "prompt": Infinity}',
                    '{"model": "llama-3.1-8b", "hardware": "l4", "batch": 1e999}'):
            r = _no_5xx(c.post("/v1/estimate", content=bad, headers={"content-type": "application/json"}))
            assert r.status_code in (400, 422), bad
        r = _no_5xx(c.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4",
                                              "max_memory_per_device": "1e400GB"}))
        assert r.status_code == 422 and r.json()["error"]["field"] == "max_memory_per_device", r.text


def test_rest_concurrent_same_id_and_a_client_that_disconnects(server):
    pid = "adv-" + uuid.uuid4().hex[:10]
    body = {"id": pid, "model": "llama-3.2-1b", "hardware": "l4", "time_limit_s": 10}

    def post(_):
        with server.client() as c:
            return _no_5xx(c.post("/v1/plans", json=body)).status_code

    with cf.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(post, range(8)))
    assert codes.count(409) == 7 and codes[0] in (201, 202), codes
    # a capacity request and a plan request whose clients hang up mid-way; then half a body
    for path, payload in (("/v1/capacity", {"model": "llama-3.1-405b", "hardware": ["h100-sxm", "b200"], "qps": 100,
                                            "ttft_slo_s": 2, "tpot_slo_s": 0.05, "max_devices": 4096}),
                          ("/v1/plans", {"id": pid + "-gone", "model": "llama-3.2-1b", "hardware": "l4"})):
        data = json.dumps(payload)
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n{data}".encode())
            time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b'POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"m')
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        assert _no_5xx(c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4"})).status_code == 200
        deadline = time.monotonic() + 60
        while (r := c.get(f"/v1/plans/{pid}-gone")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert r.status_code == 200, "a plan whose client hung up is still stored under its id"


@pytest.mark.slow
def test_rest_plans_capacity_and_exports_over_every_hardware(server):
    with server.client() as c:
        for hw in HARDWARE:
            for model in ("llama-3.2-1b", "mixtral-8x7b", "all-minilm-l6-v2", "resnet-50"):
                r = _no_5xx(c.post("/v1/plans", json={"model": model, "hardware": hw, "time_limit_s": 10}))
                if r.status_code == 201:
                    plan = r.json()
                    for fmt in ("yaml", "json"):
                        _no_5xx(c.get(f"/v1/plans/{plan['id']}/export", params={"format": fmt}))
            r = _no_5xx(c.post("/v1/capacity", json={"model": "llama-3.2-1b", "hardware": [hw], "qps": 5,
                                                    "ttft_slo_s": 2, "tpot_slo_s": 0.2, "time_limit_s": 20}))
            assert r.status_code in (200, 202, 422), r.text


@pytest.mark.parametrize("line, value", [("bandwidth_gb_per_s: 300,", "1e300"), ("capacity_gb: 24,", "1e300"),
                                         ("bf16: 121,", "1e300"), ("tdp_w: 72,", "1e300")])
def test_a_hardware_profile_number_that_would_overflow_is_refused_naming_its_key(cli, tmp_path, line, value):
    text = (ROOT / "profiles/hardware/l4.yaml").read_text(encoding="utf-8")
    key = line.split(":")[0]
    assert line in text
    path = tmp_path / "big.yaml"
    path.write_text(text.replace(line, f"{key}: {value},", 1).replace("id: l4", "id: big"), encoding="utf-8")
    code, _, out = check_cli(cli, "estimate", "--model", "llama-3.1-8b", "--hardware", str(path))
    assert code == 2 and f".{key}' must be a number at most" in out, out  # the file's key, not a derived one


def test_readme_device_count_and_the_engine_table_match_the_catalog():
    """A new user counts what the README promises: adding a profile must update both."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"— {len(HARDWARE)} devices" in readme
    assert f"{len(ENGINES)} serving and training runtimes" in readme
    table = {}
    for line in (ROOT / "docs/engines.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            table[cells[0].strip("`")] = {d.strip() for d in cells[4].split(",")}
    assert sorted(table) == ENGINES
    for engine, runs_on in table.items():
        real = {d for d in HARDWARE if load_engine(engine).support(load_device(d)) is not None}
        assert runs_on == real, (engine, sorted(real ^ runs_on))


@pytest.mark.parametrize("command", [["export", "{f}", "--format", "vllm"], ["plan", "show", "{f}"]])
def test_a_missing_or_broken_plan_file_is_named_as_the_argument_it_is(cli, tmp_path, command):
    broken = tmp_path / "broken.yaml"
    broken.write_text("garbage: [\n", encoding="utf-8")
    for f in (tmp_path / "missing.yaml", broken):
        code, _, text = check_cli(cli, *[w.format(f=f) for w in command])
        assert code == 2 and "error: PLAN: " in text and "--path" not in text, text


def test_an_interval_never_reaches_below_the_physical_floor():
    for model, hw in (("llama-3.1-8b", "iphone-15-pro"), ("llama-3.1-8b", "l4"), ("llama-3.1-8b", "h100-pcie")):
        result = planner.estimate(model, hw, batch=1, prompt=512, gen=64).to_dict()
        dev = load_device(hw)
        bandwidth = {t.name: t.bandwidth_bytes_per_s for t in dev.tiers}
        intervals = (result.get("uncertainty") or {}).get("intervals", {})
        for key, phase in (("ttft_s", "prefill"), ("tpot_s", "decode")):
            if key in intervals:
                p = result[phase]
                floor = max(b / bandwidth[t] for t, b in p["bytes_by_tier"].items())
                assert intervals[key]["p10"] >= 0.999 * floor, (model, hw, key, intervals[key]["p10"], floor)
