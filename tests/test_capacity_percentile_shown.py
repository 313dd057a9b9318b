"""``capacity serve --percentile P`` shows the latency at P, the quantile the SLOs are checked at,
beside p50 (not p95 whatever P is), and every JSON row says which percentile ``ttft_s`` and
``tpot_s`` are at."""

from __future__ import annotations

import json

from planner.cli.common import human_time

ARGS = ["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--qps", "5", "--ttft-slo", "0.015",
        "--tpot-slo", "0.05", "--percentile", "99", "--executor", "serial"]


def test_the_table_shows_the_slo_percentile(cli):
    code, out, _ = cli(*ARGS, "--json")
    assert code == 0
    best = json.loads(out)["hardware"][0]["best"]
    assert best["percentile"] == 0.99 and best["ttft_s"] > best["ttft_p95_s"]
    code, out, _ = cli(*ARGS)
    assert code == 0
    flat = out.replace("\n", " ")
    assert "TTFT p50 / p99" in flat and "TPOT p50 / p99" in flat and "p95" not in flat
    assert f"{human_time(best['ttft_p50_s'])} / {human_time(best['ttft_s'])}" in out


def test_the_disaggregated_table_and_rows_too(cli):
    args = [a if a != "0.015" else "0.5" for a in ARGS] + ["--disaggregated"]
    code, out, _ = cli(*args, "--json")
    assert code == 0
    row = json.loads(out)["hardware"][0]
    d = row["disaggregated"]["best"] or row["disaggregated"]["closest"]
    assert d["percentile"] == 0.99
    code, out, _ = cli(*args)
    assert code == 0 and out.count("TTFT p50 / p99") == 2 and "p95" not in out


def test_disaggregated_rows_carry_error_bars_in_json_csv_and_table(cli, tmp_path):
    args = [a if a != "0.015" else "0.5" for a in ARGS] + ["--disaggregated"]
    code, out, _ = cli(*args, "--json")
    assert code == 0
    d = json.loads(out)["hardware"][0]["disaggregated"]
    d = d["best"] or d["closest"]
    u = d["uncertainty"]
    assert u is not None and u["hardware_class"] == "gpu" and u["engine_class"] == "serving"
    for k in ("ttft_s", "tpot_s"):
        i = u["intervals"][k]
        assert i["p10"] < d[k] < i["p90"]
    path = tmp_path / "rows.csv"
    code, _, _ = cli(*args, "--csv", str(path))
    assert code == 0
    import pandas as pd

    row = pd.read_csv(path).iloc[0]
    assert row["disagg_ttft_s_p10"] < row["disagg_ttft_s"] < row["disagg_ttft_s_p90"]
    assert "disagg_validated" in row and "disagg_tpot_s_validated" in row
    for k in ("prefill_s", "ttft_p50_s", "tpot_p50_s"):  # every band beside its value
        assert row[f"disagg_{k}_p10"] <= row[f"disagg_{k}"] <= row[f"disagg_{k}_p90"]
    code, out, _ = cli(*args)
    import re

    table = out.split("Disaggregated prefill / decode")[1]
    assert table.count("–") >= 2 and len(re.findall(r"(?:ms|µs|s)\*?\)", table)) >= 2  # TTFT and TPOT bands (a–b)
