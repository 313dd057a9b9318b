"""Wall-clock time of the two `tierwise capacity` acceptance commands.

    python benchmarks/bench_capacity.py [--repeat 3] [--json]

Each command runs as a user runs it — a fresh ``python -m planner`` process, default
executor (local process pool), human table to a pipe — ``--repeat`` times; the script
prints the minimum and median wall time and the exit code. The target is ≤ 10 s each on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "serve": [
        "capacity", "serve", "--model", "llama-3.1-70b", "--hardware", "h100-sxm,h200,mi300x,a100-80gb-sxm,l40s",
        "--qps", "10", "--prompt", "2000", "--gen", "200", "--ttft-slo", "2", "--tpot-slo", "0.05",
    ],
    "train": ["capacity", "train", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tokens", "2e12", "--days", "30"],
}
LIMIT_S = 10.0


def time_command(args: list[str], repeat: int) -> dict:
    times, codes = [], []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "planner", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        codes.append(proc.returncode)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
    return {"min_s": min(times), "median_s": statistics.median(times), "runs": len(times), "exit_codes": sorted(set(codes)), "within_limit": max(times) <= LIMIT_S}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = {name: time_command(cmd, args.repeat) for name, cmd in COMMANDS.items()}
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'command':8} {'min':>8} {'median':>8}  exit  ≤{LIMIT_S:g} s")
        for name in COMMANDS:
            r = results[name]
            print(f"{name:8} {r['min_s']:7.2f}s {r['median_s']:7.2f}s  {','.join(map(str, r['exit_codes'])):4}  {'yes' if r['within_limit'] else 'NO'}")
        print(f"({os.cpu_count()} CPUs)")
    return 0 if all(results[n]["within_limit"] and results[n]["exit_codes"] == [0] for n in COMMANDS) else 1


if __name__ == "__main__":
    sys.exit(main())
