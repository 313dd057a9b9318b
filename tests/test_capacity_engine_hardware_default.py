"""``--engine`` without ``--hardware``: the candidates are the catalog devices one of the engines
runs on (docs/engines.md), on the command line as in REST and Python."""

from __future__ import annotations

import json

from planner.request.capacity import CapacityServeRequest, resolve_capacity_serve


def _expected(engine: str) -> set[str]:
    _, pairs, _, _ = resolve_capacity_serve(CapacityServeRequest(model="llama-3.1-8b", engine=engine, qps=1,
                                                                 ttft_slo_s=2, tpot_slo_s=0.1))
    return {p.device.id for p in pairs if not p.reason}


def test_serve_with_an_engine_and_no_hardware(cli):
    code, out, err = cli("capacity", "serve", "--model", "llama-3.2-1b", "--engine", "llamacpp", "--qps", "1",
                         "--ttft-slo", "2", "--tpot-slo", "0.1", "--executor", "serial", "--json")
    assert code == 0, err
    got = {h["hardware"] for h in json.loads(out)["hardware"]}
    assert got == _expected("llamacpp") and "cpu-host" in got  # the devices llama.cpp runs on
    assert "unsupported" not in json.loads(out)  # the others are not candidates


def test_frontier_with_an_engine_and_no_hardware(cli):
    code, out, err = cli("capacity", "frontier", "--model", "llama-3.2-1b", "--engine", "trtllm", "--executor",
                         "serial", "--json")
    assert code == 0, err
    got = {s["hardware"] for s in json.loads(out)["series"]}
    assert got and all(s["engine"] == "trtllm" for s in json.loads(out)["series"])
    assert "mi300x" not in got and "cpu-host" not in got  # TensorRT-LLM runs on NVIDIA GPUs only
