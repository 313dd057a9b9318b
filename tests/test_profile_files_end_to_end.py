"""Hand-written files as a user gives them: engine profiles by path (their errors, their id, what a plan
records of them and what export then follows), sensitivity tables with patterns, typos and junk, numbers
too large for any field, and what ``--pareto`` writes. Each case was once an internal error, a silent
substitution or a file written before an error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VLLM = (ROOT / "profiles/engines/vllm.yaml").read_text()
BIG = "1" + "0" * 400


def _engine_file(tmp_path: Path, name: str, *, id: str | None = None, context_gib: str | None = None) -> Path:
    text = VLLM
    if id is not None:
        text = re.sub(r"(?m)^id: vllm$", f"id: {id}", text, count=1)
    if context_gib is not None:
        text, n = re.subn(r"(?m)^  context_gib: .*$", f"  context_gib: {context_gib}", text, count=1)
        assert n == 1
    p = tmp_path / name
    p.write_text(text)
    return p


PLAN = ("plan", "--model", "llama-3.1-8b", "--hardware", "l4", "--batch", "8", "--max-memory-per-device", "20GB",
        "--kv", "fp8", "--formats", "bf16,int8,int4-g128")


def test_sensitivity_patterns_over_layers_plan(cli, tmp_path):
    """The documented form (docs/planner.md): a pattern over every layer beside single groups. Two classes of one
    (block, name, stage) used to share a name, and the solver refused the problem."""
    doc = (ROOT / "docs/planner.md").read_text()
    block = doc[doc.index("```yaml\nversion: 1\nmetric: kl\ngroups:"):]
    example = block[len("```yaml\n"):block.index("```", 8)]
    f = tmp_path / "sens.yaml"
    f.write_text(example)
    code, out, err = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--sensitivity", f, "--json")
    assert code == 0, err
    assert json.loads(out)["sensitivity_source"] == "file:sens.yaml"
    (tmp_path / "one.yaml").write_text("version: 1\nmetric: kl\ngroups:\n  model.layers.*.mlp.down_proj: {int8: 0.004}\n")
    code, _, err = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--sensitivity", tmp_path / "one.yaml",
                       "--pareto", "2", "--out", tmp_path / "p.yaml")
    assert code == 0, err


def test_sensitivity_entry_matching_no_group_is_refused(cli, tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("version: 1\nmetric: kl\ngroups:\n  model.layerz.3.mlp.down_proj: {int8: 0.004}\n"
                 "  model.layers.0.mlp.down_proj: {int8: 0.001}\n")
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", f)
    assert code == 2 and "1 of 2 group entries match no decision group" in err and "'model.layerz.3.mlp.down_proj'" in err, err
    f.write_text("version: 1\nmetric: kl\ngroups:\n  model.layers.99.mlp.down_proj: {int8: 0.004}\n")
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", f)
    assert code == 2 and "model.layers.99.mlp.down_proj" in err, err


@pytest.mark.parametrize("what", ["junk", "directory", "missing", "empty", "typo", "huge"])
def test_engine_profile_file_errors_name_the_flag(cli, tmp_path, what):
    p = tmp_path / "eng.yaml"
    if what == "junk":
        p.write_bytes(bytes(range(128, 256)) * 3)
    elif what == "directory":
        p.mkdir()
    elif what == "empty":
        p.write_text("")
    elif what == "typo":
        p.write_text(VLLM.replace("  context_gib:", "  context_gb:", 1))
    elif what == "huge":
        _engine_file(tmp_path, "eng.yaml", context_gib=BIG)
    code, out, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine", p)
    assert code == 2 and "internal error" not in err and "Traceback" not in err, err
    assert err.startswith(f"error: --engine {p}"), err
    says = {"junk": "UTF-8 text", "directory": "a directory", "missing": "no such file", "empty": "a mapping",
            "typo": "context_gb", "huge": "at most 1e+18"}[what]
    assert says in err, err


def test_huge_numbers_in_hardware_and_sensitivity_files(cli, tmp_path):
    hw = yaml.safe_load((ROOT / "profiles/hardware/l4.yaml").read_text())
    hw["memory"][0]["capacity_gb"] = int(BIG)
    (tmp_path / "l4.yaml").write_text(yaml.safe_dump(hw, sort_keys=False))
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", tmp_path / "l4.yaml")
    assert code == 2 and "--hardware" in err and "capacity_gb" in err and "at most 1e+18" in err, err
    (tmp_path / "s.yaml").write_text(f"version: 1\nmetric: kl\ngroups:\n  model.layers.0.mlp.down_proj: {{int8: {BIG}}}\n")
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", tmp_path / "s.yaml")
    assert code == 2 and "must be a finite number" in err, err
    (tmp_path / "u.yaml").write_bytes(b"version: 1\n\xff\xfe groups: {}\n")
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", tmp_path / "u.yaml")
    assert code == 2 and "expected UTF-8 text" in err, err


@pytest.mark.parametrize("weights", ["accuracy=1,latency=1e308", "accuracy=1e308,latency=1e308,memory=1e308"])
def test_objective_weights_are_relative_and_stay_finite(cli, weights):
    code, out, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--objective", "weighted",
                         "--objective-weights", weights, "--json")
    assert code == 0, err
    assert json.loads(out)["objective"] == "weighted"


def test_scaled_weights_give_the_same_plan(cli):
    a = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--objective", "weighted",
            "--objective-weights", "accuracy=1,latency=0.5", "--json")
    b = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--objective", "weighted",
            "--objective-weights", "accuracy=4e300,latency=2e300", "--json")
    assert a.code == b.code == 0
    assert json.loads(a.out)["choices"] == json.loads(b.out)["choices"]


def test_a_plan_follows_the_engine_profile_file_it_was_made_with(cli, tmp_path):
    """A profile file that keeps the id vllm but states 10 GiB of runtime context: the plan records the file and its
    hash, export without --engine follows it (not the catalog's vllm of the same id), plan diff shows it, and a
    changed or missing file is refused rather than replaced by the catalog's."""
    eng = _engine_file(tmp_path, "vllm10.yaml", context_gib="10")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert cli(*PLAN, "--engine", eng, "--out", a).code == 0
    assert cli(*PLAN, "--out", b).code == 0
    da, db = yaml.safe_load(a.read_text()), yaml.safe_load(b.read_text())
    assert da["engine"] == db["engine"] == "vllm"
    assert da["engine_profile"] == str(eng) and "engine_profile" not in db
    assert da["engine_hash"] != db["engine_hash"] and db["engine_hash"].startswith("sha256:")

    def utilization(plan_file, *extra):
        code, out, err = cli("export", plan_file, "--format", "vllm", "--json", *extra)
        assert code == 0, err
        body = json.loads(out)
        cfg = next(f for f in body["files"] if f["path"].endswith(".json"))
        return json.loads(cfg["content"])["gpu_memory_utilization"], body

    ua, body = utilization(a)
    assert ua == utilization(a, "--engine", eng)[0]
    assert any("10.74 GB engine context" in n and str(eng) in n for n in body["notes"]), body["notes"]
    assert ua > utilization(b)[0] + 0.05
    code, out, _ = cli("plan", "diff", b, a, "--json")
    fields = json.loads(out)["fields"]
    assert fields["engine_profile"] == [None, str(eng)] and "engine_hash" in fields

    eng.write_text(eng.read_text() + "# edited\n")
    code, _, err = cli("export", a, "--format", "vllm")
    assert code == 2 and "has changed since the plan was made" in err and f"--engine {eng}" in err, err
    eng.unlink()
    code, _, err = cli("export", a, "--format", "vllm")
    assert code == 2 and "is not a file here" in err, err
    assert cli("export", a, "--format", "yaml").code == 0  # the plan file itself needs no engine


def test_a_plan_made_with_a_relative_profile_path_exports_from_another_folder(cli, tmp_path, monkeypatch):
    """Was: the path was recorded as given (``vllm10.yaml``) and read from the current folder, so export
    from any other folder asked for --engine. It is recorded absolute."""
    work = tmp_path / "work"
    work.mkdir()
    _engine_file(work, "vllm10.yaml", context_gib="10")
    monkeypatch.chdir(work)
    assert cli(*PLAN, "--engine", "vllm10.yaml", "--out", "p.yaml").code == 0
    recorded = yaml.safe_load((work / "p.yaml").read_text())["engine_profile"]
    assert recorded == str(work / "vllm10.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("export", work / "p.yaml", "--format", "vllm", "--json")
    assert code == 0, err
    assert any("10.74 GB engine context" in n for n in json.loads(out)["notes"])


def test_a_profile_file_with_its_own_id_pins_and_exports(cli, tmp_path):
    """An engine profile file whose id the catalog lacks: its exporter (vllm) keeps embeddings and the LM head in
    16 bit, so the plan's memory is what export writes; `engines show FILE --hardware` works; export finds it."""
    eng = _engine_file(tmp_path, "bigctx.yaml", id="bigctx", context_gib="10")
    out_file = tmp_path / "big.yaml"
    code, _, err = cli(*PLAN, "--engine", eng, "--out", out_file)
    assert code == 0, err
    choices = yaml.safe_load(out_file.read_text())["choices"]
    assert choices["model.embed_tokens"]["weights"] == "bf16" and choices["model.lm_head"]["weights"] == "bf16"
    code, out, err = cli("export", out_file)
    assert code == 0 and "gpu_memory_utilization" in out, err
    code, out, err = cli("engines", "show", eng, "--hardware", "h100-sxm")
    assert code == 0 and "KV cache" in out and "error" not in err, err


def test_two_profiles_of_one_id_are_refused_in_a_list(cli, tmp_path):
    eng = _engine_file(tmp_path, "vllm10.yaml", context_gib="10")
    code, _, err = cli("capacity", "serve", "--model", "llama-3.1-8b", "--qps", "2", "--ttft-slo", "2", "--tpot-slo", "0.1",
                       "--hardware", "l4", "--engine", f"vllm,{eng}")
    assert code == 2 and "both profiles of id 'vllm'" in err, err
    l4 = tmp_path / "myl4.yaml"
    l4.write_text((ROOT / "profiles/hardware/l4.yaml").read_text())
    code, _, err = cli("capacity", "serve", "--model", "llama-3.1-8b", "--qps", "2", "--ttft-slo", "2", "--tpot-slo", "0.1",
                       "--hardware", f"l4,{l4}")
    assert code == 2 and "--hardware lists 'l4' and" in err and "both profiles of id 'l4'" in err, err


def test_pareto_checks_plot_and_csv_before_writing_plans(cli, tmp_path):
    (tmp_path / "d.yaml").mkdir()
    for extra, field in ((("--csv", tmp_path / "d.yaml"), "--csv"), (("--plot", tmp_path / "x.txt"), "--plot")):
        code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pareto", "3", *extra,
                           "--out", tmp_path / "pp.yaml")
        assert code == 2 and err.startswith(f"error: {field}"), err
        assert not list(tmp_path.glob("pp-*.yaml"))


def test_a_re_signed_plan_is_still_checked_against_its_model(cli, tmp_path):
    """A plan edited and re-signed with a valid checksum: a group the model lacks is refused by export, and a
    workload beyond what `tierwise plan` accepts is refused on load, each naming the field."""
    from planner.plan import plan_from_dict, plan_to_dict

    f = tmp_path / "p.yaml"
    assert cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", f).code == 0
    d = yaml.safe_load(f.read_text())
    d["choices"]["model.layers.99.mlp.down_proj"] = dict(d["choices"]["model.layers.0.mlp.down_proj"])
    d.pop("checksum")
    bad = tmp_path / "groups.yaml"
    bad.write_text(yaml.safe_dump(plan_to_dict(plan_from_dict(d, require_checksum=False)), sort_keys=False))
    code, _, err = cli("export", bad, "--format", "vllm")
    assert code == 2 and "'model.layers.99.mlp.down_proj' are not decision groups of llama-3.2-1b" in err, err
    d = yaml.safe_load(f.read_text())
    d["workload"]["batch"] = 10**30
    d.pop("checksum")
    with pytest.raises(Exception, match=r"workload.batch.*an int from 1 to 16777216"):
        plan_from_dict(d, require_checksum=False)


def test_a_plan_fields_export_failure_names_the_plan_not_a_flag(cli, tmp_path):
    """Export of a plan that does not fit with the engine asked for: the error is about the plan (PLAN), not a
    `--per-device-bytes` flag export does not have."""
    eng = _engine_file(tmp_path, "v8.yaml", context_gib="8")
    f = tmp_path / "p.yaml"
    assert cli("plan", "--model", "llama-3.1-8b", "--hardware", "l4", "--out", f).code == 0
    code, _, err = cli("export", f, "--engine", eng)
    assert code == 2 and err.startswith("error: PLAN: the plan does not load under vLLM"), err


def test_recorded_profile_of_another_engine_or_without_hash_is_refused(cli, tmp_path):
    from planner.plan import PlanError, plan_from_dict, plan_to_dict

    f = tmp_path / "p.yaml"
    assert cli("plan", "--model", "llama-3.1-8b", "--hardware", "l4", "--out", f).code == 0
    llama = tmp_path / "llamacpp.yaml"
    llama.write_text((ROOT / "profiles/engines/llamacpp.yaml").read_text())
    import hashlib

    d = yaml.safe_load(f.read_text())
    d.pop("checksum")
    d["engine_profile"], d["engine_hash"] = str(llama), "sha256:" + hashlib.sha256(llama.read_bytes()).hexdigest()
    bad = tmp_path / "other.yaml"
    bad.write_text(yaml.safe_dump(plan_to_dict(plan_from_dict(d, require_checksum=False)), sort_keys=False))
    code, _, err = cli("export", bad)
    assert code == 2 and "the plan's engine is 'vllm' but its engine_profile" in err and "'llamacpp'" in err, err
    d.pop("engine_hash")
    with pytest.raises(PlanError, match="engine_hash"):
        plan_from_dict(d, require_checksum=False)


def test_a_fifo_is_refused_not_read(cli, tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for args in (("plan", "show", fifo), ("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", fifo),
                 ("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine", fifo)):
        code, _, err = cli(*args)
        assert code == 2 and "not a regular file" in err, (args, err)
