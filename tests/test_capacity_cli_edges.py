"""Rough edges of `tierwise capacity`: --plot into a directory, capacity serve --time-limit
(CLI and REST share the request layer's deadline), capacity train skipping devices that
cannot train."""

from __future__ import annotations

import json
import time

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
FRONTIER = ["capacity", "frontier", "--model", "llama-3.2-1b", "--hardware", "l4", "--prompt", "512", "--gen", "128",
            "--max-devices", "2", "--executor", "serial"]
SERVE = ["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4,h100-sxm", "--qps", "20", "--prompt", "512",
         "--gen", "64", "--ttft-slo", "1", "--tpot-slo", "0.05", "--executor", "serial"]
TRAIN = ["capacity", "train", "--model", "llama-3.1-8b", "--tokens", "1e11", "--days", "30", "--executor", "serial"]


# -- a. --plot DIR ---------------------------------------------------------------------------------


def test_plot_into_an_existing_directory_writes_inside_it(cli, tmp_path):
    out_dir = tmp_path / "plots"
    out_dir.mkdir()
    code, _, err = cli(*FRONTIER, "--plot", str(out_dir))
    assert code == 0
    assert not (tmp_path / "plots.png").exists(), "nothing next to the directory"
    (written,) = list(out_dir.iterdir())
    assert written.name == "capacity-frontier.png" and written.read_bytes()[:8] == PNG
    assert str(written) in err.replace("\n", "")


def test_plot_file_paths_keep_working(cli, tmp_path):
    code, _, _ = cli(*FRONTIER, "--plot", str(tmp_path / "f.png"))
    assert code == 0 and (tmp_path / "f.png").read_bytes()[:8] == PNG
    code, _, _ = cli(*FRONTIER, "--plot", str(tmp_path / "f.svg"))
    assert code == 0 and b"<svg" in (tmp_path / "f.svg").read_bytes()[:400]
    code, _, _ = cli(*FRONTIER, "--plot", str(tmp_path / "noext"))  # no suffix: a PNG named noext.png
    assert code == 0 and (tmp_path / "noext.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("name, needle", [("plot.txt", "'.txt'"), ("a-file/plot.png", "is a file, not a folder")])
def test_plot_to_an_unwritable_target_exits_2_before_searching(cli, tmp_path, monkeypatch, name, needle):
    import planner.frontier as frontier

    def boom(*a, **k):  # the check comes first: no search is run for a plot that cannot be written
        raise AssertionError("searched before checking --plot")

    monkeypatch.setattr(frontier, "run_frontier_task", boom)
    (tmp_path / "a-file").write_text("not a folder\n")
    code, _, err = cli(*FRONTIER, "--plot", str(tmp_path / name))
    assert code == 2 and "--plot" in err and needle in err and "Traceback" not in err


def test_serve_and_train_plot_into_a_directory_too(cli, tmp_path):
    code, _, _ = cli(*SERVE, "--plot", str(tmp_path))
    assert code == 0 and (tmp_path / "capacity-serve.png").read_bytes()[:8] == PNG
    code, _, _ = cli(*TRAIN, "--hardware", "h100-sxm", "--plot", str(tmp_path))
    assert code == 0 and (tmp_path / "capacity-train.png").read_bytes()[:8] == PNG


# -- b. capacity serve --time-limit -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e9"])
def test_serve_time_limit_out_of_range_exits_2_naming_it(cli, value):
    code, _, err = cli(*SERVE, "--time-limit", value)
    assert code == 2 and "--time-limit" in err and "--time-limit-s" not in err and "Traceback" not in err


def test_serve_time_limit_not_a_number_exits_2(cli):
    code, _, err = cli(*SERVE, "--time-limit", "soon")
    assert code == 2 and "--time-limit" in err


def test_serve_time_limit_too_short_for_anything_exits_3_naming_it(cli):
    code, _, err = cli(*SERVE, "--time-limit", "1e-9")
    assert code == 3 and "ran out of time" in err and "--time-limit" in err


def test_serve_generous_time_limit_gives_the_unbounded_answer(cli):
    _, free, _ = cli(*SERVE, "--json")
    code, bounded, _ = cli(*SERVE, "--json", "--time-limit", "3600")
    assert code == 0 and json.loads(bounded) == json.loads(free) and json.loads(free)["status"] == "complete"


def test_serve_time_limit_stops_the_search_and_says_so(cli, monkeypatch):
    """Each configuration takes at least 0.4 s here: a 1 s limit covers one or two of the six
    (2 hardware x 3 formats), the rest are not searched and the answer says so."""
    import planner.capacity as capacity

    real = capacity.run_serve_task
    calls = []

    def slow(task, deadline=None):
        calls.append(task)
        time.sleep(0.4)
        return real(task, deadline)

    monkeypatch.setattr(capacity, "run_serve_task", slow)
    code, out, _ = cli(*SERVE, "--json", "--time-limit", "1")
    assert code in (0, 3)
    if code == 0:
        assert json.loads(out)["status"] == "time_limit"
    assert 1 <= len(calls) < 6
    code, out, _ = cli(*SERVE, "--time-limit", "1")
    assert "--time-limit reached" in out or code == 3


def test_rest_capacity_serve_takes_the_same_time_limit():
    """REST reads ``time_limit_s`` through the same request layer (one Deadline)."""
    from planner.deadline import DeadlineExceeded
    from planner.request.capacity import CapacityServeRequest, request_deadline, run_capacity_serve

    req = CapacityServeRequest(model="llama-3.2-1b", hardware=["l4"], qps=20, ttft_slo_s=1, tpot_slo_s=0.05,
                               time_limit_s=1e-9)
    assert request_deadline(req) is not None
    with pytest.raises(DeadlineExceeded) as exc:
        run_capacity_serve(req)
    assert exc.value.field == "time_limit_s" and "'time_limit_s'" in exc.value.render("rest")
    assert request_deadline(CapacityServeRequest(model="x", qps=1)) is None


# -- c. capacity train with devices that cannot train ------------------------------------------------


def test_train_skips_a_phone_and_an_fpga_with_a_reason_each(cli):
    code, out, _ = cli(*TRAIN, "--hardware", "h100-sxm,iphone-15-pro,zcu102", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["hardware"] == "h100-sxm" and d["feasible"]  # one answer: the device that can train
    skipped = {s["hardware"]: s["reason"] for s in d["skipped"]}
    assert set(skipped) == {"iphone-15-pro", "zcu102"}
    assert "phone" in skipped["iphone-15-pro"] and "fpga" in skipped["zcu102"]
    code, out, _ = cli(*TRAIN, "--hardware", "iphone-15-pro,h100-sxm")
    assert code == 0 and "skipped iphone-15-pro" in out and "h100-sxm" in out


def test_train_with_no_device_that_can_train_exits_2_naming_hardware(cli):
    code, _, err = cli(*TRAIN, "--hardware", "iphone-15-pro,zcu102")
    assert code == 2 and "--hardware" in err and "iphone-15-pro" in err and "zcu102" in err
    assert "Traceback" not in err


def test_train_single_phone_still_exits_2_naming_hardware(cli):
    code, _, err = cli(*TRAIN, "--hardware", "iphone-15-pro")
    assert code == 2 and "--hardware" in err


def test_train_with_an_engine_that_runs_nowhere_given_names_engine(cli):
    # the user named the engine: fsdp runs on neither device, the engine is what to change
    code, _, err = cli(*TRAIN, "--hardware", "iphone-15-pro,zcu102", "--engine", "fsdp")
    assert code == 2 and "--engine" in err


def test_train_typo_in_hardware_is_still_an_error_not_a_skip(cli):
    code, _, err = cli(*TRAIN, "--hardware", "h100-sxm,iphone-15-pr0")
    assert code == 2 and "iphone-15-pr0" in err


def test_an_slo_no_fleet_meets_reports_the_closest_miss_at_the_fewest_devices_that_reach_it(cli):
    # Under eager PyTorch a decode step costs at least the host's dispatch of every kernel: more
    # replicas lower the load but not that floor, so the closest miss is not a 1,024-device fleet.
    code, _, err = cli("capacity", "serve", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--qps", "10", "--ttft-slo", "2s",
                       "--tpot-slo", "4ms", "--runtime", "eager")
    assert code == 3 and "no hardware meets the SLOs" in err, err
    import re

    devices = int(re.search(r"\((\d+) devices?\)", err).group(1))
    assert devices < 1024 / 4, err
    # the same miss within a smaller --max-devices: never reported above what the fleet allows
    code, _, small = cli("capacity", "serve", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--qps", "10", "--ttft-slo", "2s",
                         "--tpot-slo", "4ms", "--runtime", "eager", "--max-devices", "4")
    assert code == 3 and int(re.search(r"\((\d+) devices?\)", small).group(1)) <= 4, small
    code, _, err = cli("capacity", "serve", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--qps", "10", "--ttft-slo", "2s",
                       "--tpot-slo", "25ms", "--runtime", "eager")
    assert code == 0, err  # above the floor a fleet is found


def test_a_pair_the_engine_does_not_run_names_the_engine_and_the_flag_in_the_callers_syntax(cli):
    args = ["capacity", "serve", "-m", "llama-3.2-1b", "-H", "cpu-host,h100-sxm", "--qps", "1", "--ttft-slo", "2s",
            "--tpot-slo", "50ms", "--runtime", "eager"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "llamacpp" in out and "--runtime" in out, out
    assert "'runtime'" not in out  # the REST spelling stays out of the command line's table
    code, out, _ = cli(*args, "--json")
    d = json.loads(out)
    (u,) = d["unsupported"]
    # the command line's JSON speaks its syntax too (REST's answer says 'runtime')
    assert u["engine"] == "llamacpp" and u["hardware"] == "cpu-host" and "--runtime must be graph" in u["reason"], u


def test_capacity_answers_say_which_launch_mode_they_priced(cli):
    args = ["-m", "llama-3.2-1b", "-H", "h100-sxm"]
    for runtime in ("eager", "graph"):
        code, out, err = cli("capacity", "serve", *args, "--qps", "1", "--ttft-slo", "2s", "--tpot-slo", "50ms",
                             "--runtime", runtime, "--json")
        assert code == 0, err
        assert json.loads(out)["hardware"][0]["best"]["runtime"] == runtime
        code, out, err = cli("capacity", "frontier", *args, "--runtime", runtime, "--json")
        assert code == 0, err
        assert {p["runtime"] for s in json.loads(out)["series"] for p in s["points"]} == {runtime}
    code, out, _ = cli("capacity", "serve", *args, "--qps", "1", "--ttft-slo", "2s", "--tpot-slo", "50ms",
                       "--runtime", "eager")
    assert "vllm (eager)" in out


def test_a_budget_below_one_step_still_trains_one_step(cli):
    """1e3 tokens with 4M-token steps of 247 s: 'time to train 0.0588 s', 'USD total 0' and 'needs 0 tokens/s'
    before; training runs whole optimizer steps."""
    code, out, err = cli("capacity", "train", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tokens", "1e3",
                         "--days", "30", "--executor", "serial", "--json")
    assert code == 0, err
    opt = json.loads(out)["best"]
    assert opt["days"] * 86400 == pytest.approx(opt["step_time_s"], rel=1e-9)
    assert opt["usd_total"] > 0
    code, out, _ = cli("capacity", "train", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tokens", "1e3",
                       "--days", "30", "--executor", "serial")
    assert "needs 0.000386 tokens/s" in out and "0.0588 s" not in out


def test_a_pair_where_no_layout_fits_says_why(cli, tmp_path):
    """A T4 node holds one GPU and --max-pp is 4, so no replica holds the 405B model: the row said
    "does not fit … no" with an empty `failures` column, while rows missing an SLO said by how much."""
    out_csv = tmp_path / "cap.csv"
    code, out, err = cli("capacity", "serve", "--model", "llama-3.1-405b", "--qps", "1", "--prompt", "512", "--gen", "64",
                         "--ttft-slo", "5", "--tpot-slo", "0.2", "--engine", "vllm", "--hardware", "h100-sxm,t4",
                         "--executor", "serial", "--csv", out_csv, "--json")
    rows = {r["hardware"]: r for r in json.loads(out)["hardware"]}
    assert rows["t4"]["best"] is None and rows["t4"]["closest"] is None
    why = rows["t4"]["reason"]
    assert "tp 1 × pp 4 = 4 × 16.0 GB" in why and "one node of 1" in why and "--max-pp 4" in why and "GB in int4" in why
    assert "reason" not in rows["h100-sxm"]
    import csv

    by_hw = {r["hardware"]: r for r in csv.DictReader(out_csv.open())}
    assert by_hw["t4"]["failures"] == why


def test_when_no_pair_holds_the_model_the_error_names_each_pairs_reason_in_the_callers_syntax(cli):
    code, out, _ = cli("capacity", "serve", "--model", "llama-3.1-405b", "--hardware", "l4", "--qps", "1", "--prompt",
                       "512", "--gen", "64", "--ttft-slo", "5", "--tpot-slo", "0.2", "--max-devices", "1", "--json")
    assert code == 3
    (pair,) = json.loads(out)["error"]["details"]["hardware"]
    assert pair["hardware"] == "l4" and "tp 1 × pp 1 = 1 × 24.0 GB" in pair["reason"] and "--max-devices 1" in pair["reason"]


def test_the_layout_chosen_meets_the_deadline_in_whole_steps(cli):
    """6.3e6 tokens in 7 minutes: 16 GPUs reach the average rate (16,995 tokens/s against 15,000) but take 8.2 min
    in whole 4M-token steps, and were called feasible; the answer now meets the deadline as it reports it."""
    code, out, err = cli("capacity", "train", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tokens", "6.3e6",
                         "--days", "0.004861", "--executor", "serial", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["best"]["days"] <= 0.004861 and d["best"]["devices"] > 16


def test_an_infeasible_answer_lists_every_pair_with_its_own_reason(cli):
    """Several engines and nothing fits: each (engine, hardware) pair has its reason (TensorRT-LLM's int4 405B is
    212 GB, vLLM's 216 GB: the tables they keep differ), and a pair the engine does not run is listed too."""
    code, out, _ = cli("capacity", "serve", "--model", "llama-3.1-405b", "--hardware", "l4,mi300x", "--engine",
                       "vllm,trtllm", "--qps", "1", "--ttft-slo", "2", "--tpot-slo", "0.1", "--max-devices", "1",
                       "--json")
    assert code == 3
    pairs = {(p["engine"], p["hardware"]): p for p in json.loads(out)["error"]["details"]["hardware"]}
    assert set(pairs) == {("vllm", "l4"), ("trtllm", "l4"), ("vllm", "mi300x"), ("trtllm", "mi300x")}
    assert "216 GB in int4-g128" in pairs[("vllm", "l4")]["reason"]
    assert "212 GB in int4-g128" in pairs[("trtllm", "l4")]["reason"]
    assert pairs[("trtllm", "mi300x")]["supported"] is False and "does not run on mi300x" in pairs[("trtllm", "mi300x")]["reason"]
    assert "{@" not in out
