"""POST /v1/capacity/frontier over real HTTP: the ``tierwise serve`` process on a loopback port."""

from __future__ import annotations

import httpx
from conftest import Server


def test_frontier_over_http(tmp_path):
    srv = Server(tmp_path).start()
    try:
        with httpx.Client(base_url=srv.base, timeout=120) as c:
            body = {"model": "llama-3.2-1b", "hardware": ["h100-sxm", "mi300x"], "engine": ["vllm", "trtllm"],
                    "prompt": 1024, "gen": 128, "max_devices": 4}
            r = c.post("/v1/capacity/frontier", json=body)
            assert r.status_code == 200, r.text
            d = r.json()
            assert (d["model"], d["prompt"], d["gen"]) == ("llama-3.2-1b", 1024, 128)
            assert {(s["engine"], s["hardware"]) for s in d["series"]} == {("vllm", "h100-sxm"), ("trtllm", "h100-sxm"),
                                                                           ("vllm", "mi300x")}
            assert [(u["engine"], u["hardware"]) for u in d["unsupported"]] == [("trtllm", "mi300x")]
            for s in d["series"]:
                pts = s["points"]
                assert pts and len(pts) <= s["evaluated"]
                for p in pts:  # no point of the series dominates another
                    assert not any(q["tokens_per_s_per_user"] >= p["tokens_per_s_per_user"]
                                   and q["tokens_per_s_per_device"] >= p["tokens_per_s_per_device"] and q is not p
                                   for q in pts)
            schema = c.get("/openapi.json").json()
            assert "/v1/capacity/frontier" in schema["paths"]
            r = c.post("/v1/capacity/frontier", json={**body, "engine": "trtllm", "hardware": ["mi300x"]})
            assert r.status_code == 422 and r.json()["error"]["field"] == "engine"
            r = c.post("/v1/capacity/frontier", json={**body, "engine": []})
            assert r.status_code == 422
    finally:
        srv.stop()
