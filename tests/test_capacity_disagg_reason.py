"""Disaggregated serving on hardware where no prefill / decode pools can be formed says why (in the
table, the JSON row and the CSV) instead of a bare '-'."""

from __future__ import annotations

import csv
import json
import re

ARGS = ["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "iphone-15-pro,m2-max,cpu-host",
        "--disaggregated", "--qps", "1", "--ttft-slo", "5", "--tpot-slo", "0.3", "--executor", "serial"]


def test_no_link_between_devices_is_the_reason(cli, tmp_path):
    code, out, _ = cli(*ARGS, "--json", "--csv", tmp_path / "s.csv")
    assert code == 0
    rows = {h["hardware"]: h["disaggregated"] for h in json.loads(out)["hardware"]}
    for hw in ("iphone-15-pro", "m2-max"):
        assert rows[hw]["best"] is None and rows[hw]["closest"] is None
        assert "one device per node" in rows[hw]["reason"] and "no scale-out network" in rows[hw]["reason"]
    assert "reason" not in rows["cpu-host"]  # 100 GbE between hosts: pools are searched
    with (tmp_path / "s.csv").open() as f:
        by_hw = {r["hardware"]: r for r in csv.DictReader(f)}
    assert "no link" in by_hw["m2-max"]["disagg_reason"] and not by_hw["cpu-host"]["disagg_reason"]
    code, out, _ = cli(*ARGS)
    flat = re.sub(r"[│\s]+", " ", out)  # the wrapped cells of the table, read as text
    assert code == 0 and flat.count("no disaggregated pools: ") == 2 and "has one device per node" in flat


def test_intra_node_link_asked_where_one_device_per_node(cli):
    code, out, _ = cli(*ARGS, "--kv-link", "intra_node", "--json")
    assert code == 0
    rows = {h["hardware"]: h["disaggregated"] for h in json.loads(out)["hardware"]}
    assert "kv_link is intra_node" in rows["cpu-host"]["reason"]
