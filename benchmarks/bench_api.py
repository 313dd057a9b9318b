"""Load benchmark of the REST service (the real `tierwise serve` process over loopback).

1. ``POST /v1/estimate`` from 20 concurrent clients (closed loop: each client sends its
   next request when the previous answer arrives), p50 / p99 latency and throughput.
   Requests rotate over several models, batches and formats, so the answers are real
   cost-model evaluations the first time and cache hits after (estimates are pure).
2. 50 concurrent ``POST /v1/plans`` for a 70B model (Llama 3.1 70B on 4× H100 SXM):
   every plan must be stored and retrievable, none lost, no 5xx.

Usage: ``python benchmarks/bench_api.py [--requests 4000] [--json]``.
The load generator runs in this process (asyncio + httpx) on the same machine, so on a
2-core machine client and server share the CPUs; the numbers are end-to-end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    full_env = {**os.environ, "TIERWISE_DATA_DIR": data_dir, **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", "from planner.cli import run; run()", "serve", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=full_env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


ESTIMATES = [
    {"model": m, "hardware": h, "batch": b, "weights": w}
    for m, h in (("llama-3.1-8b", "l4"), ("llama-3.1-8b", "h100-sxm"), ("llama-3.2-1b", "t4"), ("mistral-7b", "a100-80gb-sxm"))
    for b in (1, 8, 32)
    for w in ("bf16", "int4-g128", "fp8")
]


class _RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator shares
    the machine with the server, so it must cost far less per request than the server
    does (an httpx request costs about a millisecond of CPU; this costs ~50 µs)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def __aenter__(self) -> "_RawClient":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


def _request(host: str, port: int, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (f"POST /v1/estimate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def bench_estimate(base: str, clients: int, total: int) -> dict:
    host, port = base.rsplit("//", 1)[1].split(":")
    port_i = int(port)
    requests = [_request(host, port_i, b) for b in ESTIMATES]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def client() -> None:
        async with _RawClient(host, port_i) as c:
            for i in counter:
                t0 = time.perf_counter()
                status, _ = await c.post(requests[i % len(requests)])
                lat.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1

    async with _RawClient(host, port_i) as c:  # warm-up: one pass, so the numbers are steady-state
        for r in requests:
            await c.post(r)
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {
        "clients": clients, "requests": len(lat), "statuses": statuses,
        "p50_ms": statistics.median(lat) * 1e3, "p99_ms": _pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3,
        "throughput_per_s": len(lat) / wall,
    }


async def bench_plans(base: str, n: int) -> dict:
    body = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "devices": 4, "tp": 4, "kv": "bf16"}
    statuses: dict[int, int] = {}
    plan_ids: list[str] = []
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=600) as c:
        async def one(i: int) -> None:
            r = await c.post("/v1/plans", json={**body, "id": f"bench-70b-{i}"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 201:
                plan_ids.append(r.json()["id"])
                return
            if r.status_code != 202:
                return
            url = r.headers["location"]
            while True:
                job = (await c.get(url)).json()
                if job["status"] == "succeeded":
                    plan_ids.append(job["plan_id"])
                    return
                if job["status"] == "failed":
                    statuses["job_failed"] = statuses.get("job_failed", 0) + 1
                    return
                await asyncio.sleep(0.5)

        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        retrievable = 0
        for pid in plan_ids:
            r = await c.get(f"/v1/plans/{pid}")
            retrievable += r.status_code == 200 and r.json()["plan"]["model"] == "llama-3.1-70b"
        listed = (await c.get("/v1/plans", params={"model": "llama-3.1-70b", "limit": 500})).json()["total"]
    return {"requests": n, "statuses": statuses, "stored": len(plan_ids), "retrievable": retrievable, "listed": listed,
            "wall_s": wall, "five_xx": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--plans", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, base = start_server(d)
        try:
            est = asyncio.run(bench_estimate(base, a.clients, a.requests))
            plans = asyncio.run(bench_plans(base, a.plans))
        finally:
            stop_server(proc)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "estimate": est, "plans_70b": plans}
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"machine: {result['machine']}")
        print(f"POST /v1/estimate, {est['clients']} concurrent clients, {est['requests']} requests: "
              f"p50 {est['p50_ms']:.2f} ms, p99 {est['p99_ms']:.2f} ms, max {est['max_ms']:.1f} ms, "
              f"{est['throughput_per_s']:.0f} req/s, statuses {est['statuses']}")
        print(f"{plans['requests']} concurrent POST /v1/plans (Llama 3.1 70B, 4× H100 SXM): statuses {plans['statuses']}, "
              f"stored {plans['stored']}, retrievable {plans['retrievable']}, listed {plans['listed']}, "
              f"5xx {plans['five_xx']}, {plans['wall_s']:.1f} s")
    ok = est["statuses"].get(200) == est["requests"] and plans["retrievable"] == plans["requests"] and plans["five_xx"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
