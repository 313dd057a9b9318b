"""`tierwise plan … --max-degradation X --validate-with NAME`: bisection on measured degradation."""

import json

from planner.cli import main
from planner.plan import load_plan


def test_closed_loop_lands_in_band_or_keeps_best(capsys, tmp_path):
    out = tmp_path / "plan.yaml"
    code = main(["plan", "--model", "all-minilm-l6-v2", "--hardware", "cpu-host", "--max-degradation", "0.01",
                 "--validate-with", "all-minilm-l6-v2", "--rounds", "8", "--out", str(out), "--json"])
    d = json.loads(capsys.readouterr().out)
    loop = d["closed_loop"]
    assert code == 0
    assert 1 <= len(loop["rounds"]) <= 8
    assert loop["metric"] == "cosine"
    # the kept plan measures under the target; inside the band when the loop says so
    assert loop["degradation"] <= 0.01
    if loop["inside_band"]:
        assert loop["degradation"] >= 0.008
    else:
        assert "kept the most compressed plan" in loop["reason"]
    # every round records budget, prediction and measurement
    assert all({"per_device_bytes", "predicted_sensitivity", "measured_degradation"} <= set(r) for r in loop["rounds"])
    assert load_plan(out).model == "all-minilm-l6-v2"


def test_closed_loop_flags_go_together(capsys):
    code = main(["plan", "--model", "all-minilm-l6-v2", "--hardware", "cpu-host", "--max-degradation", "0.01"])
    assert code == 2
    assert "--validate-with" in capsys.readouterr().err
