"""Error bars for every estimate, from the out-of-sample residuals of the published rows.

    python benchmarks/intervals.py            # the buckets and the out-of-sample coverage
    python benchmarks/intervals.py --write    # regenerate planner/data/intervals.json
    python benchmarks/intervals.py --check    # exit 1 when the shipped table is stale
    python benchmarks/intervals.py --json     # machine-readable

Every reported row of ``benchmarks/data/published.csv`` (the declared fit split, ``split`` =
``fit``, only fits constants and is left out) is predicted with the fitted constants chosen
without its source (leave-one-source-out, ``benchmarks/published.py --cv loso``); its
residual becomes a speed factor (measured / predicted speed; bytes for memory rows) filed
under its kind: category (prefill, decode, throughput, training, memory) × hardware class ×
engine class, and batch regime (see :mod:`planner.uncertainty`). The 10th and 90th
percentiles of each bucket are the shipped table.

**Coverage** (calibration, out of sample): for each row, the table is rebuilt from the rows
of the *other* sources only, the row's interval is looked up with the same back-off, and the
row counts as covered when its measured value lies inside. Target: 75–85% for a p10–p90
interval, over the time and throughput rows (memory rows are reported apart: estimates carry
no memory interval). Run ``--write`` after every change to the cost model or the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hwmodels import load_device  # noqa: E402

from planner import uncertainty as U  # noqa: E402
from published import DEFAULT_CSV, evaluate, load_rows, runtime_of  # noqa: E402
from published_report import source_key  # noqa: E402
from rowmap import HARDWARE, first_int, match  # noqa: E402


def row_category(row: dict, result_category: str) -> tuple[str, str]:
    """(category, kind) of a row's metric, in the terms of :mod:`planner.uncertainty`: what the
    row measures (a prefill, a decode step, a batch's throughput, a training step, memory) and
    whether it is a time, a rate or bytes."""
    metric, unit = row["metric"].lower(), row["unit"].lower().strip()
    timed = "latency" in metric or "time to first token" in metric or unit in ("ms", "s", "ms/token")
    kind = "time" if timed else "rate"
    if result_category in ("memory", "finetune-memory"):
        return "memory", "bytes"
    if result_category == "training":
        return "training", kind
    if "time to first token" in metric or "prefill" in metric or "prompt-processing" in metric:
        return "prefill", kind
    if "decode" in metric or "tpot" in metric or "per output token" in metric:
        return "decode", kind
    return "throughput", kind


def row_regime(row: dict, category: str) -> str:
    if category == "training" or (category == "memory" and row["category"] != "memory") or \
            any(w in row["engine"].lower() for w in ("lora", "fine-tun")):
        return U.batch_regime(None, "training")
    if "max load" in row["batch"].lower():
        return "33+"
    return U.batch_regime(first_int(row["batch"], 1))


def row_engine_class(row: dict) -> str:
    """The engine class of a row: its engine profile's kind, ``eager`` for PyTorch eager; rows
    without a profile count as ``training`` or ``serving`` engines by their category."""
    if runtime_of(row["engine"]) == "eager":
        return "eager"
    if row["engine_id"]:
        return U.engine_class(row["engine_id"], "graph")
    return "training" if row["category"] == "training" else "serving"


def samples(rows: list[dict], held: dict) -> list[U.Sample]:
    """One sample per row that the model predicts out of sample."""
    out = []
    for r in rows:
        res = held.get(r["id"])
        if res is None or res.error is None or res.predicted is None or res.predicted <= 0 or res.measured <= 0:
            continue
        hw = match(HARDWARE, r["hardware"])
        if hw is None:
            continue
        category, kind = row_category(r, res.category)
        ratio = res.measured / res.predicted
        factor = 1.0 / ratio if kind == "time" else ratio
        out.append(U.Sample(r["id"], source_key(r["source"]), category, load_device(hw).device_class,
                            row_engine_class(r), row_regime(r, category), factor))
    return out


def coverage(ss: list[U.Sample]) -> dict:
    """Out-of-sample coverage: each row against the table built without its source."""
    inside: dict[str, list[bool]] = {}
    misses = []
    by_source: dict[str, list[U.Sample]] = {}
    for s in ss:
        by_source.setdefault(s.source, []).append(s)
    for src, held in by_source.items():
        table = U.build_table(s for s in ss if s.source != src)
        for s in held:
            if s.category == "memory":  # estimates carry no memory interval: nothing to cover
                continue
            found = U.lookup(table, s.category, s.hardware_class, s.engine_class)
            ok = found is not None and found[1]["p10"] <= s.factor <= found[1]["p90"]
            inside.setdefault(s.category, []).append(ok)
            if not ok:
                misses.append(s.row_id)
    every = [v for vs in inside.values() for v in vs]
    return {"rows": len(every), "inside": sum(every), "fraction": round(sum(every) / len(every), 4) if every else None,
            "by_category": {c: {"rows": len(v), "fraction": round(sum(v) / len(v), 4)} for c, v in sorted(inside.items())},
            "outside": sorted(misses)}


def live_table(csv_path: Path = DEFAULT_CSV) -> dict:
    """The interval table the current cost model gives, with its out-of-sample coverage."""
    rows = load_rows(csv_path)
    return table_of(rows, evaluate(rows, cv=True))


def table_of(rows: list[dict], ev: dict) -> dict:
    """The interval table of ``rows`` from their evaluation ``ev`` (``published.evaluate(rows, cv=True)``)."""
    ss = samples(rows, ev["held"])
    table = U.build_table(ss)
    table["coverage"] = coverage(ss)
    table["rows"] = len(ss)
    return table


def dumps(table: dict) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def print_table(table: dict) -> None:
    print(f"{'bucket':36} {'rows':>4} {'srcs':>4} {'p10':>7} {'p50':>7} {'p90':>7}  used")
    for k, b in table["buckets"].items():
        used = "yes" if U._usable(b) else "back off"
        lo, hi = ("-" if b[q] is None else f"{b[q]:.3f}" for q in ("p10", "p90"))
        print(f"{k:36} {b['rows']:4d} {b['sources']:4d} {lo:>7} {b['p50']:7.3f} {hi:>7}  {used}")
    c = table["coverage"]
    print(f"\nout-of-sample coverage of p10-p90, time and throughput rows: {c['inside']}/{c['rows']} = "
          f"{100 * c['fraction']:.1f}% (target 75-85%)")
    for cat, v in c["by_category"].items():
        print(f"  {cat:12} {v['rows']:4d} rows  {100 * v['fraction']:.1f}%")
    print("  outside: " + ", ".join(c["outside"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--write", action="store_true", help="write planner/data/intervals.json")
    ap.add_argument("--check", action="store_true", help="exit 1 when the shipped table differs from the live one")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if not args.csv.exists():
        print(f"published table not found: {args.csv}", file=sys.stderr)
        return 2
    other = args.csv.resolve() != DEFAULT_CSV.resolve()
    if args.write and other:
        # the shipped table is the repository's rows' own; a table of other rows is printed, not shipped
        print(f"--write: the shipped table ({U.TABLE_PATH.name}) is built from {DEFAULT_CSV.name} only; "
              f"leave --csv out, or drop --write to print the table of {args.csv}", file=sys.stderr)
        return 2
    try:
        table = live_table(args.csv)
    except ValueError as exc:  # a row the table cannot hold (e.g. an unknown split, a bad value)
        print(exc, file=sys.stderr)
        return 2
    if args.write:
        U.TABLE_PATH.write_text(dumps(table))
        print(f"wrote {U.TABLE_PATH}", file=sys.stderr)
    if args.check:
        shipped = U.TABLE_PATH.read_text() if U.TABLE_PATH.exists() else ""
        if shipped != dumps(table):
            why = (f"it differs from the table of {args.csv}" if other
                   else f"the cost model or the rows changed; run {U.REGENERATE}")
            print(f"{U.TABLE_PATH} is stale: {why}", file=sys.stderr)
            return 1
    if args.json:
        print(dumps(table), end="")
    elif not args.check:
        print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
