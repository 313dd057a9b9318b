"""A plan's predicted times and rates carry the p10–p90 error bars an estimate of the same
configuration carries (planner.uncertainty): in the plan file, ``plan --json``, the table, REST and
Python; a plan file written before plans carried them still loads; a malformed band is refused
naming its field."""

from __future__ import annotations

import json

import pytest

import planner
from planner.plan import PlanError, load_plan, plan_checksum, plan_from_dict, plan_to_dict, save_plan
from tests.frontdoors import app_client


@pytest.fixture(scope="module")
def l4_plan():
    """One solve of llama-3.2-1b on an L4 for the module (each test edits its own copy)."""
    return planner.plan("llama-3.2-1b", "l4")


@pytest.fixture
def l4_dict(l4_plan):
    """The L4 plan's dict without its checksum, to edit (plan_from_dict checks a checksum only when present)."""
    d = plan_to_dict(l4_plan)
    d.pop("checksum")
    return d


def _same_bands(plan_u, est_u) -> None:
    a, b = plan_u.to_dict(), est_u.to_dict()
    assert a["intervals"].keys() == b["intervals"].keys() and a["intervals"]
    for k, i in a["intervals"].items():
        j = b["intervals"][k]
        assert (i["bucket"], i["validated"], i["rows"]) == (j["bucket"], j["validated"], j["rows"]), k
        assert i["p10"] == pytest.approx(j["p10"], rel=1e-9) and i["p90"] == pytest.approx(j["p90"], rel=1e-9), k
    assert (a["validated"], a["notes"], a["engine_class"], a["batch_regime"]) == \
        (b["validated"], b["notes"], b["engine_class"], b["batch_regime"])


@pytest.mark.parametrize("model, hardware, fields, est_fields", [
    ("llama-3.1-8b", "h100-sxm", {}, {"weights": "bf16"}),
    ("qwen2.5-7b", "l4", {"engine": "llamacpp", "formats": ["int4-g32"]}, {"weights": "int4-g32"}),
    ("resnet-50", "a100-80gb-sxm", {}, {"weights": "bf16"}),
])
def test_a_plan_carries_the_bands_of_an_estimate_of_its_configuration(model, hardware, fields, est_fields):
    plan = planner.plan(model, hardware, **fields)
    u = plan.predicted.uncertainty
    assert u is not None and u.get("latency_s") is not None
    w = plan.workload
    est = planner.estimate(model, hardware, engine=plan.engine, batch=w.batch, prompt=w.prompt, gen=w.gen,
                           kv=plan.kv if plan.predicted.kv_cache_bytes else None, **est_fields)
    assert est.latency_s == pytest.approx(plan.predicted.latency_s, rel=1e-9)
    _same_bands(u, est.uncertainty)
    for k, i in u.intervals.items():
        assert i.p10 <= getattr(plan.predicted, k, i.value) <= i.p90 or not i.validated, k


def test_the_bands_round_trip_through_plan_files(tmp_path, l4_plan):
    plan = l4_plan
    for name in ("p.yaml", "p.json"):
        save_plan(plan, tmp_path / name)
        back = load_plan(tmp_path / name)
        assert back.predicted.uncertainty == plan.predicted.uncertainty
        assert plan_checksum(back) == plan_checksum(plan)


def test_null_bands_load_as_none(l4_dict):
    d = l4_dict
    d["predicted"]["uncertainty"] = None
    assert plan_from_dict(d).predicted.uncertainty is None


def test_a_huge_number_anywhere_in_the_plan_is_refused_naming_it(l4_dict):
    d = l4_dict
    d["predicted"]["tpot_s"] = 10**400
    with pytest.raises(PlanError) as exc:
        plan_from_dict(d)
    assert exc.value.field == "predicted.tpot_s" and "a finite number" in str(exc.value)


def test_a_plan_written_before_bands_loads_and_prints_without_them(cli, tmp_path, l4_dict):
    d = l4_dict
    del d["predicted"]["uncertainty"]
    old = plan_from_dict(d)
    assert old.predicted.uncertainty is None
    path = tmp_path / "old.json"
    save_plan(old, path)
    assert "uncertainty" not in json.loads(path.read_text())["predicted"]
    r = cli("plan", "show", path)
    assert r.code == 0, r.err
    assert "TPOT" in r.out and "p10–p90" not in r.out and "error bars" not in r.out


def test_the_table_shows_each_band_and_where_it_comes_from(cli):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4")
    assert r.code == 0, r.err
    for row in ("TTFT", "TPOT", "decode tokens/s", "latency per request"):
        line = next(x for x in r.out.splitlines() if row in x)
        assert "(p10–p90 " in line, line
    assert "error bars: p10–p90 of the cost model's out-of-sample error" in r.out


DELETE, FLIP = object(), object()


@pytest.mark.parametrize("path, value, expect", [
    ("intervals.tpot_s.p10", "fast", "predicted.uncertainty.intervals.tpot_s.p10"),
    ("intervals.tpot_s.p10", 1e9, "predicted.uncertainty.intervals.tpot_s.p90"),
    ("intervals.tpot_s.rows", -1, "predicted.uncertainty.intervals.tpot_s.rows"),
    ("intervals.tpot_s.category", "vibes", "predicted.uncertainty.intervals.tpot_s.category"),
    ("intervals.tpot_s", {"p10": 1}, "predicted.uncertainty.intervals.tpot_s.value"),
    ("quantiles", [5, 95], "predicted.uncertainty.quantiles"),
    ("validated", "yes", "predicted.uncertainty.validated"),
    ("extra", 1, "predicted.uncertainty.extra"),
    ("notes", "none", "predicted.uncertainty.notes"),
    ("intervals.tpot_s.p90", 10**400, "predicted.uncertainty.intervals.tpot_s.p90"),
    ("intervals.tpot_s.p90", DELETE, "predicted.uncertainty.intervals.tpot_s.p90"),
    ("intervals.tpot_s.foo", 1, "predicted.uncertainty.intervals.tpot_s.foo"),
    ("intervals.tpot_s.value", 5.0, "predicted.uncertainty.intervals.tpot_s.value"),
    ("intervals.tpot_s.category", "training", "predicted.uncertainty.intervals.tpot_s.category"),
    ("intervals.bogus_s", {"value": 1}, "predicted.uncertainty.intervals.bogus_s"),
    ("hardware_class", "toaster", "predicted.uncertainty.hardware_class"),
    ("batch_regime", "lots", "predicted.uncertainty.batch_regime"),
    ("engine_class", "magic", "predicted.uncertainty.engine_class"),
    ("validated", FLIP, "predicted.uncertainty.validated"),
    ("quantiles", [10**400, 90.0], "predicted.uncertainty.quantiles"),
])
def test_a_malformed_band_is_refused_naming_its_field(path, value, expect, l4_dict):
    bad = l4_dict
    at = bad["predicted"]["uncertainty"]
    *parents, last = path.split(".")
    for p in parents:
        at = at[p]
    if value is DELETE:
        del at[last]
    elif value is FLIP:  # whatever the shipped table makes it, the other value contradicts the intervals
        at[last] = not at[last]
    else:
        at[last] = value
    with pytest.raises(PlanError) as exc:
        plan_from_dict(bad)
    assert exc.value.field == expect, (exc.value.field, str(exc.value))
    assert expect in str(exc.value)


def test_rest_returns_and_stores_the_bands(tmp_path):
    with app_client(tmp_path) as c:
        r = c.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4"})
        assert r.status_code == 201, r.text
        made = r.json()["plan"]["predicted"]["uncertainty"]
        stored = c.get(f"/v1/plans/{r.json()['id']}").json()["plan"]["predicted"]["uncertainty"]
        est = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "weights": "bf16"}).json()
    assert made == stored and made["intervals"]["tpot_s"]["p10"] < made["intervals"]["tpot_s"]["value"]
    assert made["intervals"].keys() == est["uncertainty"]["intervals"].keys()


def test_pareto_points_carry_their_bands_in_the_table_csv_and_json(cli, tmp_path):
    import csv

    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pareto", "2", "--csv", tmp_path / "f.csv",
            "--out", tmp_path / "p.yaml")
    assert r.code == 0, r.err
    assert "(a–b): p10–p90 of the cost model's out-of-sample error" in r.out
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    plans = [load_plan(tmp_path / f"p-{i}.yaml") for i in (1, 2)]
    assert len(rows) == len(plans) == 2
    for row, plan in zip(rows, plans):
        for k in ("ttft_s", "tpot_s", "latency_s"):
            i = plan.predicted.uncertainty.get(k)
            assert float(row[f"{k}_p10"]) == pytest.approx(i.p10, rel=1e-12)
            assert float(row[f"{k}_p90"]) == pytest.approx(i.p90, rel=1e-12)
            assert row[f"{k}_validated"] == str(i.validated)
    j = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pareto", "2", "--json")
    assert j.code == 0, j.err
    pt = json.loads(j.out)["points"][0]
    assert pt["tpot_s_p10"] < pt["tpot_s"] < pt["tpot_s_p90"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_an_integer_past_4300_digits_in_a_plan_file_is_refused_naming_the_file(cli, tmp_path, suffix, l4_plan):
    plan = l4_plan
    path = tmp_path / f"p{suffix}"
    save_plan(plan, path)
    text = path.read_text()
    key = '"tp": 1' if suffix == ".json" else "tp: 1"
    assert key in text
    path.write_text(text.replace(key, key[:-1] + "9" * 5001, 1))
    r = cli("plan", "show", path)
    assert r.code == 2 and f"p{suffix}: holds an integer of more than 4300 digits" in r.err, r.err
    assert "internal error" not in r.err


def test_a_layout_past_what_plan_accepts_is_refused(l4_dict):
    d = l4_dict
    d["layout"]["tp"] = 10**5000
    with pytest.raises(PlanError) as exc:
        plan_from_dict(d)
    assert exc.value.field == "layout.tp" and "from 1 to 65536" in str(exc.value)


def test_a_plan_records_a_tpot_limit_that_was_the_phones_default():
    default = planner.plan("llama-3.2-1b", "snapdragon-8-gen-3")
    assert default.constraints.tpot_slo_s == pytest.approx(0.2) and default.constraints.tpot_slo_default
    assert plan_to_dict(default)["constraints"]["tpot_slo_default"] is True
    given = planner.plan("llama-3.2-1b", "snapdragon-8-gen-3", tpot_slo_s=0.2)
    assert not given.constraints.tpot_slo_default and "tpot_slo_default" not in plan_to_dict(given)["constraints"]
    back = plan_from_dict(plan_to_dict(default))
    assert back.constraints == default.constraints and plan_checksum(back) == plan_checksum(default)
    d = plan_to_dict(default)
    d.pop("checksum")
    d["constraints"]["tpot_slo_default"] = "yes"
    with pytest.raises(PlanError) as exc:
        plan_from_dict(d)
    assert exc.value.field == "constraints.tpot_slo_default"
    d["constraints"].update(tpot_slo_default=True, tpot_slo_s=None)
    with pytest.raises(PlanError) as exc:
        plan_from_dict(d)
    assert exc.value.field == "constraints.tpot_slo_default"


def test_the_table_says_a_tpot_limit_is_the_phones_default(cli):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "snapdragon-8-gen-3")
    assert r.code == 0, r.err
    assert "TPOT (limit 200.00 ms, the phone default: --tpot-slo none lifts it)" in r.out
