"""The throughput-latency frontier answers like the serving search: a series with no point says
why, no point anywhere is ``infeasible`` (exit 3 / 422) with every pair's reason and a CSV that
still has its header, and a time limit answers what was searched (``status: "time_limit"``)."""

from __future__ import annotations

import csv
import json

import pytest

import planner.frontier as frontier
from hwmodels import load_device
from planner.arch import load_arch
from planner.deadline import Deadline, DeadlineExceeded
from planner.frontier import CSV_COLUMNS, NOT_SEARCHED, plan_frontier
from planner.request.capacity import CapacityFrontierRequest, run_capacity_frontier, serve_pairs

NO_FIT = ["capacity", "frontier", "--model", "llama-3.1-405b", "--hardware", "l4", "--max-devices", "8",
          "--executor", "serial"]
_REAL = frontier.run_frontier_task


def test_nothing_fits_is_infeasible_on_the_cli_with_the_reason_and_a_csv_header(cli, tmp_path):
    code, out, err = cli(*NO_FIT, "--csv", tmp_path / "f.csv")
    assert code == 3, (out, err)
    assert "does not fit l4" in out and "--max-devices 8" in out.replace("\n", " ")
    with (tmp_path / "f.csv").open() as f:
        rows = list(csv.DictReader(f))
        from planner.uncertainty import FRONTIER_POINT_QUANTITIES

        bands = [f"{k}_{q}" for k in FRONTIER_POINT_QUANTITIES for q in ("p10", "p90", "validated")] + ["validated"]
        assert list(rows[0]) == [*CSV_COLUMNS, *bands, "supported", "failures"]
    assert [(r["hardware"], r["batch"]) for r in rows] == [("l4", "")] and "does not fit l4" in rows[0]["failures"]
    code, out, _ = cli(*NO_FIT, "--json")
    doc = json.loads(out)["error"]
    assert code == 3 and doc["code"] == "infeasible"
    assert doc["details"]["series"][0]["hardware"] == "l4" and "does not fit" in doc["details"]["series"][0]["reason"]


def test_a_series_without_points_says_why_beside_one_with_points():
    ans = run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-70b", hardware=["l4", "h100-sxm"],
                                                        max_devices=2, formats=["bf16"]))
    by_hw = {s["hardware"]: s for s in ans.to_dict()["series"]}
    assert by_hw["h100-sxm"]["points"] and "reason" not in by_hw["h100-sxm"]
    assert not by_hw["l4"]["points"] and "'max_devices' 2" in by_hw["l4"]["reason"]
    assert ans.to_dict()["status"] == "complete"


def test_nothing_fits_raises_infeasible_in_python():
    from hwmodels.errors import TierwiseError

    with pytest.raises(TierwiseError) as e:
        run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-405b", hardware=["l4"], max_devices=8))
    assert e.value.kind == "infeasible" and "does not fit l4" in e.value.render("rest")


def _pairs(hw=("l4", "h100-sxm")):
    return serve_pairs(("vllm",), [load_device(h) for h in hw], ("bf16", "fp8"), "bf16", given_formats=True,
                       given_kv=False, runtime=None)


def test_a_time_limit_answers_what_was_searched(monkeypatch):
    done = []

    def run(task, deadline=None):  # one search finishes, then the time is up
        if done:
            raise DeadlineExceeded("the capacity search ran out of time")
        done.append(task.device.id)
        return _REAL(task, deadline)

    monkeypatch.setattr(frontier, "run_frontier_task", run)
    ans = plan_frontier(load_arch("llama-3.1-8b"), _pairs(), 512, 128, deadline=Deadline(3600))
    d = ans.to_dict()
    assert d["status"] == "time_limit" and not ans.complete
    searched = {s["hardware"]: s for s in d["series"]}
    assert searched[done[0]]["points"] and searched[done[0]]["complete"] is False  # fp8 not searched
    other = ({"l4", "h100-sxm"} - set(done)).pop()
    assert not searched[other]["points"] and searched[other]["reason"] == frontier.NOT_SEARCHED.replace(
        "{@time_limit_s}", "'time_limit_s'")
    assert d["not_searched"] == [{"engine": "vllm", "hardware": other}]
    assert NOT_SEARCHED.startswith("not searched")


def test_a_time_limit_with_nothing_searched_and_a_cancel_stop_the_search():
    from planner.deadline import Cancelled

    with pytest.raises(DeadlineExceeded):
        plan_frontier(load_arch("llama-3.1-8b"), _pairs(), 512, 128, deadline=Deadline(0))
    gone = Deadline(3600)
    gone.cancel()
    with pytest.raises(Cancelled):
        plan_frontier(load_arch("llama-3.1-8b"), _pairs(), 512, 128, deadline=gone)


def test_cli_time_limit(cli):
    args = ["capacity", "frontier", "--model", "llama-3.2-1b", "--hardware", "l4", "--json"]
    code, out, _ = cli(*args, "--time-limit", "600")
    assert code == 0 and json.loads(out)["status"] == "complete"
    code, _, err = cli(*args, "--time-limit", "-1")
    assert code == 2 and "--time-limit" in err


def test_every_frontier_point_carries_error_bars_in_python_json_csv_and_table(cli, tmp_path):
    ans = run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-8b", hardware=["h100-sxm"], engine=["vllm"],
                                                        formats=["fp8"]))
    points = [p for s in ans.series for p in s.points]
    assert points
    for p in points:
        u = p.uncertainty
        assert u is not None and u.hardware_class == "gpu"
        for k in ("tpot_s", "tokens_per_s_per_user", "tokens_per_s_per_device"):
            i = u.get(k)
            assert i.p10 < getattr(p, k) < i.p90, (k, p.batch)
        # one band per point: both rates are the TPOT inverted, and so are their ends
        assert u.get("tokens_per_s_per_user").p10 == pytest.approx(1.0 / u.get("tpot_s").p90, rel=1e-6)
        share = p.batch / p.devices
        for q in ("p10", "p90"):
            assert getattr(u.get("tokens_per_s_per_device"), q) == pytest.approx(getattr(u.get("tokens_per_s_per_user"), q) * share, rel=1e-6)
        assert u.get("tokens_per_s_per_device").validated == u.get("tpot_s").validated
    args = ("capacity", "frontier", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "vllm",
            "--formats", "fp8", "--executor", "serial")
    code, out, _ = cli(*args, "--json")
    assert code == 0
    pt = json.loads(out)["series"][0]["points"][0]
    assert pt["uncertainty"]["intervals"]["tpot_s"]["p10"] < pt["tpot_s"]
    path = tmp_path / "f.csv"
    code, _, _ = cli(*args, "--csv", str(path))
    assert code == 0
    row = next(csv.DictReader(path.open()))
    assert float(row["tpot_s_p10"]) < float(row["tpot_s"]) < float(row["tpot_s_p90"]) and row["validated"] in ("True", "False")
    assert row["tpot_s_validated"] in ("True", "False")
    code, out, _ = cli(*args)
    assert code == 0 and "p10–p90 of the cost model's out-of-sample error" in out.replace("\n", " ")
