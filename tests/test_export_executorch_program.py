"""ExecuTorch export of encoders, ViTs and CNNs (planner/export/executorch_program.py): a script
that lowers the Hugging Face model through torch.export to the XNNPACK delegate, quantized per
the plan. The script's torch.export step runs here (``--check``) on the shipped pretrained
all-MiniLM-L6-v2 and on a MobileNetV2 built from the catalog config; ExecuTorch itself is not a
dependency, so the lowering step is checked by its names against ExecuTorch's documented flow."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from planner.arch import model_config_path
from planner.export import ExportError, export_plan
from planner.export.rules import replan_args
from planner.export.core import plan_view
from planner.plan import with_engine
from tests.test_export import ctx_for, make_plan

PHONE = "snapdragon-8-gen-3"


def plan_for(model: str, pick, *, hw: str = PHONE, batch: int = 1, prompt: int = 128):
    return with_engine(make_plan(model, hw, pick, kv="fp16", batch=batch, prompt=prompt, gen=0), "executorch")


def uniform(w: str, a: str):
    return lambda g: (w, a, "dense")


def script_of(out) -> str:
    return out.file("export_executorch.py").content


def constants(text: str) -> dict:
    """The script's module-level constants (MODEL_CLASS, INPUTS, QUANT, OUTPUT), read without running it."""
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("MODEL_CLASS", "INPUTS", "QUANT", "OUTPUT"):
                out[name] = ast.literal_eval(node.value)
    return out


def run_script(folder: Path, *args: str, model: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODEL": model, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "export_executorch.py", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


# ---------------------------------------------------------------------------
# what the script says
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model,cls,kind", [("bert-base", "AutoModel", "tokens"),  # the bare encoder the plan prices
                                            ("all-minilm-l6-v2", "AutoModel", "tokens"),
                                            ("resnet-50", "ResNetForImageClassification", "image"),
                                            ("mobilenet-v2", "MobileNetV2ForImageClassification", "image"),
                                            ("vit-h", "ViTForImageClassification", "image")])
def test_every_family_the_engine_runs_gets_a_script(model, cls, kind):
    plan = plan_for(model, uniform("fp16", "fp16"), batch=2)
    for ctx in (ctx_for(plan), None):  # the CLI's context, and the architecture read from the catalog
        out = export_plan(plan, "executorch", ctx)
        text = script_of(out)
        compile(text, "export_executorch.py", "exec")
        c = constants(text)
        assert c["MODEL_CLASS"] == cls and c["INPUTS"]["kind"] == kind and c["INPUTS"]["batch"] == 2
        assert c["QUANT"] == {} and c["OUTPUT"] == f"{model}.pte"
        assert "DTYPE = torch.float16" in text
        assert out.next_command == "pip install executorch transformers && python export_executorch.py"
    if kind == "image":
        assert (c["INPUTS"]["height"], c["INPUTS"]["width"], c["INPUTS"]["channels"]) == (224, 224, 3)
    else:
        assert c["INPUTS"]["seq"] == 128  # the prompt: an encoder generates nothing


def test_script_uses_executorchs_documented_flow():
    # ExecuTorch XNNPACK docs (backends/xnnpack/xnnpack-quantization.md): the PT2E flow's names
    text = script_of(export_plan(plan_for("mobilenet-v2", uniform("int8", "int8")), "executorch"))
    for name in ("from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, "
                 "get_symmetric_quantization_config",
                 "from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner",
                 "from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower",
                 # quant fusion, as export_llama and Optimum's XNNPACK recipe do (quantized embedding ops)
                 "ExecutorchBackendConfig(extract_delegate_segments=True, do_quant_fusion_and_const_prop=True)",
                 "from torchao.utils import unwrap_tensor_subclass",
                 "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e",
                 "get_symmetric_quantization_config(is_per_channel=True, is_dynamic=",
                 "quantizer.set_module_name(", ".to_executorch(", "program.write_to_file(f)"):
        assert name in text, name


def test_an_encoder_prompt_beyond_its_positions_is_cut_with_a_note():
    plan = plan_for("bert-base", uniform("fp16", "fp16"), prompt=1024)
    out = export_plan(plan, "executorch", ctx_for(plan))
    assert constants(script_of(out))["INPUTS"]["seq"] == 512
    assert any("beyond the model's 512 positions" in n for n in out.notes)


def test_static_int8_needs_calibration_and_dynamic_is_noted():
    out = export_plan(plan_for("mobilenet-v2", uniform("int8", "int8")), "executorch")
    q = constants(script_of(out))["QUANT"]
    # each convolution is quantized with its layer (conv, batch norm, activation): the conv-bn-relu pattern
    assert q["mobilenet_v2.conv_stem.first_conv"] == "int8" and not any(k.endswith(".convolution") for k in q)
    assert q["classifier"] == "int8"
    assert out.next_command.endswith("python export_executorch.py --calibration SAMPLES")
    assert any("a folder of images" in n for n in out.notes)
    out = export_plan(plan_for("all-minilm-l6-v2", uniform("int8", "fp16")), "executorch")
    q = constants(script_of(out))["QUANT"]
    assert set(q.values()) == {"int8-dynamic", "emb-int8"}
    assert q["embeddings.word_embeddings"] == "emb-int8" and q["encoder.layer.0.attention.self.query"] == "int8-dynamic"
    assert "--calibration" not in out.next_command
    assert any("no weight-only int8" in n for n in out.notes)
    assert any("float operators in fp32" in n for n in out.notes)


def test_4bit_linear_layers_are_8da4w():
    out = export_plan(plan_for("all-minilm-l6-v2", uniform("int4-g32", "int8")), "executorch")
    q = constants(script_of(out))["QUANT"]
    assert q["encoder.layer.5.output.dense"] == "8da4w-g32" and q["embeddings.word_embeddings"] == "emb-int4-g32"


def test_4bit_convolutions_are_refused_with_a_replan_that_exports():
    with pytest.raises(ExportError) as e:
        export_plan(plan_for("mobilenet-v2", uniform("int4-g32", "int8")), "executorch")
    msg = e.value.render("cli")
    assert e.value.field.startswith("choices.model.mobilenet_v2.conv_stem.first_conv.convolution")
    assert "Linear layers only" in msg and "--formats int8" in msg and "--kv" not in msg
    # a ViT: its patch projection is a convolution; the re-plan (int8, the engine's one quantized format) exports
    vit = plan_for("vit-h", uniform("int4-g128", "int8"))
    with pytest.raises(ExportError) as e:
        export_plan(vit, "executorch", ctx_for(vit))
    msg = e.value.render("cli")
    assert "vit.embeddings.patch_embeddings.projection is a convolution" in msg and "--formats int8" in msg
    assert "--kv" not in msg
    from planner.request.plan import PlanRequest, run_plan

    args = replan_args(plan_view(vit), "executorch", ("int8",))
    assert "kv" not in args  # a ViT keeps no KV cache: the re-plan must not name one
    plan = run_plan(PlanRequest(**args, time_limit_s=60))
    q = constants(script_of(export_plan(plan, "executorch")))["QUANT"]
    assert q["vit.embeddings.patch_embeddings.projection"] in ("int8", "int8-dynamic")
    assert q["vit.layers.0.mlp.fc1"] in ("int8", "int8-dynamic")


def test_other_formats_are_refused_naming_the_group():
    plan = plan_for("bert-base", uniform("fp8-e4m3", "fp16"), hw="m2-max")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    assert e.value.field.startswith("choices.") and "fp8-e4m3" in str(e.value)


@pytest.mark.parametrize("model", ["bert-base", "resnet-50", "vit-h", "mobilenet-v2"])
def test_every_quantized_module_exists_in_the_checkpoint_class(model):
    # the script's module names, against the class it loads built on the meta device
    import transformers

    pick = uniform("int8", "int8")
    out = export_plan(plan_for(model, pick), "executorch")
    c = constants(script_of(out))
    cfg = json.loads(model_config_path(model).read_text())
    config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    cls = getattr(transformers, c["MODEL_CLASS"])
    with torch.device("meta"):
        m = cls.from_config(config) if c["MODEL_CLASS"].startswith("Auto") else cls(config)
    names = dict(m.named_modules())
    assert c["QUANT"] and not [n for n in c["QUANT"] if n not in names]


# ---------------------------------------------------------------------------
# running the script (its torch.export step; ExecuTorch is not installed here)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> str:
    from planner.execution.models import minilm_dir

    return str(minilm_dir())


def _export_to(tmp_path: Path, plan) -> Path:
    from planner.export import write_export

    write_export(export_plan(plan, "executorch"), tmp_path)
    return tmp_path


def test_the_script_exports_the_pretrained_minilm(tmp_path, minilm):
    # --check runs torch.export of the float model (quantization needs torchao and ExecuTorch, not installed here)
    folder = _export_to(tmp_path, plan_for("all-minilm-l6-v2", uniform("fp32", "fp32"), batch=2, prompt=16))
    r = run_script(folder, "--check", model=minilm)
    assert r.returncode == 0, r.stderr
    program = torch.export.load(folder / "all-minilm-l6-v2.pt2")
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    import transformers

    ref = transformers.BertModel.from_pretrained(minilm).eval()(input_ids=ids, attention_mask=mask)[0]
    got, pooled = program.module()(ids, mask)  # the last hidden state and the pooler's output
    assert got.shape == (2, 16, 384) and pooled.shape == (2, 384) and torch.allclose(got.float(), ref, atol=1e-4)


def test_the_script_exports_a_cnn_and_refuses_without_calibration(tmp_path):
    import transformers

    cfg = json.loads(model_config_path("mobilenet-v2").read_text())
    config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    torch.manual_seed(0)
    transformers.MobileNetV2ForImageClassification(config).save_pretrained(tmp_path / "ckpt")
    folder = _export_to(tmp_path / "out", plan_for("mobilenet-v2", uniform("int8", "int8")))
    r = run_script(folder, "--check", model=str(tmp_path / "ckpt"))
    assert r.returncode == 0, r.stderr
    assert (folder / "mobilenet-v2.pt2").is_file()
    r = run_script(folder, model=str(tmp_path / "ckpt"))
    assert r.returncode == 2 and "--calibration is required" in r.stderr and "Traceback" not in r.stderr
    r = run_script(folder, "--calibration", "nowhere", model=str(tmp_path / "ckpt"))
    assert r.returncode == 2 and "--calibration nowhere: no such file or folder" in r.stderr


def test_the_script_names_a_checkpoint_of_another_layout(tmp_path, minilm):
    # a plan for bert-base (BertForMaskedLM names) run on the bare MiniLM encoder
    folder = _export_to(tmp_path, plan_for("bert-base", uniform("int8", "fp16")))
    r = run_script(folder, "--check", model=minilm)
    assert r.returncode == 1 and "has no module" in r.stderr and "Traceback" not in r.stderr


def test_cnn_replan_leaves_out_kv():
    assert "kv" not in replan_args(plan_view(plan_for("resnet-50", uniform("fp16", "fp16"))), "executorch")
    llama = with_engine(make_plan("llama-3.2-1b", PHONE, uniform("fp16", "fp16"), kv="fp16", batch=1), "executorch")
    assert replan_args(plan_view(llama), "executorch")["kv"] == "fp16"


@pytest.mark.skipif(sys.modules.get("executorch") is not None, reason="ExecuTorch is installed")
def test_without_executorch_the_script_says_what_to_install(tmp_path, minilm):
    import importlib.util

    if importlib.util.find_spec("executorch") is not None:
        pytest.skip("ExecuTorch is installed")
    folder = _export_to(tmp_path, plan_for("all-minilm-l6-v2", uniform("fp16", "fp16"), prompt=8))
    r = run_script(folder, model=minilm)
    assert r.returncode == 1 and "pip install executorch" in r.stderr and "Traceback" not in r.stderr


def test_the_script_refuses_a_checkpoint_without_the_planned_head(tmp_path):
    # vit-h's catalog checkpoint (in21k) is a bare ViTModel: its 1000-class head would be random
    import transformers

    cfg = json.loads(model_config_path("mobilenet-v2").read_text())
    config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    transformers.MobileNetV2Model(config).save_pretrained(tmp_path / "bare")
    folder = _export_to(tmp_path / "out", plan_for("mobilenet-v2", uniform("fp16", "fp16")))
    r = run_script(folder, "--check", model=str(tmp_path / "bare"))
    assert r.returncode == 1 and "has no weights for classifier" in r.stderr and "Traceback" not in r.stderr
    r = run_script(folder, "--check", "--allow-missing", "--output", "sub/dir/m.pte", model=str(tmp_path / "bare"))
    assert r.returncode == 0, r.stderr
    assert (folder / "sub" / "dir" / "m.pt2").is_file()
    r = run_script(folder, "--check", model=str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "no such folder" in r.stderr and "Traceback" not in r.stderr


def test_bert_exports_the_bare_encoder_the_plan_prices():
    # bert-base's checkpoint is a BertForMaskedLM; the plan prices the encoder and its pooler, not the MLM head
    out = export_plan(plan_for("bert-base", uniform("int8", "fp16")), "executorch")
    q = constants(script_of(out))["QUANT"]
    assert "pooler.dense" in q and "encoder.layer.11.output.dense" in q
    assert not any(n.startswith(("bert.", "cls.")) for n in q)


def _script_module(folder: Path, model: str, monkeypatch):
    import importlib.util

    monkeypatch.setenv("MODEL", model)
    spec = importlib.util.spec_from_file_location("export_executorch_under_test", folder / "export_executorch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_batches_use_the_models_own_image_processor(tmp_path, monkeypatch):
    # ResNet's processor (ConvNext's) takes shortest_edge and crops: a height/width size made it raise
    transformers = pytest.importorskip("transformers")
    Image = pytest.importorskip("PIL.Image")
    transformers.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(tmp_path / "ckpt")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(5):
        Image.new("RGB", (320, 240), (40 * i, 100, 50)).save(imgs / f"{i}.png")
    folder = _export_to(tmp_path / "out", plan_for("resnet-50", uniform("int8", "int8"), batch=2))
    mod = _script_module(folder, str(tmp_path / "ckpt"), monkeypatch)
    batches = list(mod.calibration_batches(imgs, 10))
    assert len(batches) == 2 and all(b[0].shape == (2, 3, 224, 224) for b in batches)


def test_calibration_batches_of_text_take_the_programs_shape(tmp_path, monkeypatch, minilm):
    folder = _export_to(tmp_path / "out", plan_for("all-minilm-l6-v2", uniform("int8", "int8"), batch=2, prompt=16))
    (tmp_path / "samples.txt").write_text("a short line\n\nanother one, a little longer than the first\nthird\n")
    mod = _script_module(folder, minilm, monkeypatch)
    batches = list(mod.calibration_batches(tmp_path / "samples.txt", 100))
    assert len(batches) == 1 and batches[0][0].shape == (2, 16) and batches[0][1].shape == (2, 16)


def test_int8_convolutions_with_16bit_activations_are_calibrated():
    # XNNPACK's dynamic quantization does not cover depthwise convolutions: they take static int8 inputs
    out = export_plan(plan_for("mobilenet-v2", uniform("int8", "fp16")), "executorch")
    q = constants(script_of(out))["QUANT"]
    assert q["mobilenet_v2.layer.0.conv_3x3"] == "int8" and q["classifier"] == "int8-dynamic"
    assert out.next_command.endswith("--calibration SAMPLES") and "pillow" in out.next_command
    assert any("static int8 activations" in n for n in out.notes)


def test_a_pin_the_engine_cannot_write_for_a_convolution_is_refused_and_the_limit_is_noted(cli):
    r = cli("plan", "--model", "mobilenet-v2", "--hardware", "snapdragon-8-gen-3", "--engine", "executorch",
            "--pin", "model.mobilenet_v2.conv_stem.first_conv.convolution=int4-g32")
    assert r.code == 2 and "writes convolutions" in r.err and "fp16, fp32, int8 only" in r.err, r.err
    r = cli("plan", "--model", "resnet-50", "--hardware", "l4", "--formats", "int8", "--json")
    assert r.code == 0, r.err
    notes = json.loads(r.out)["predicted"]["notes"]
    assert any("writes convolutions in bf16, fp16, fp32 only" in n and "not offered int8" in n for n in notes), notes
