"""A sequence length or an attention kernel given for a model it means nothing to (a CNN has neither;
a ViT's sequence is fixed by its image and patch size) is refused naming the field in the caller's
syntax, instead of being silently ignored. Left out, the defaults still suit the model."""

from __future__ import annotations

import json

import pytest

from tests.frontdoors import app_client

TRAIN = ("estimate", "--mode", "training", "--hardware", "h100-sxm")


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


def test_seq_for_a_cnn_training_estimate_is_refused(cli):
    # Was: rc 0, the same figures as without --seq.
    r = cli(*TRAIN, "--model", "resnet-50", "--seq", "4096")
    assert r.code == 2 and not r.out
    assert "--seq 4096 does not apply to resnet-50, a CNN: it has no sequence length" in r.err, r.err


def test_attention_for_a_cnn_training_estimate_is_refused(cli):
    r = cli(*TRAIN, "--model", "resnet-50", "--attention", "unfused")
    assert r.code == 2 and "--attention unfused does not apply to resnet-50, a CNN: it has no attention layers" in r.err


def test_seq_for_a_vit_says_what_fixes_its_sequence(cli):
    r = cli(*TRAIN, "--model", "vit-h", "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to vit-h, a ViT" in r.err
    assert "257 positions" in r.err and "patch size 14" in r.err
    # a ViT has attention layers: the kernel is taken
    assert cli(*TRAIN, "--model", "vit-h", "--attention", "unfused").code == 0


def test_seq_for_a_cnn_capacity_train_is_refused(cli):
    args = ("capacity", "train", "--model", "resnet-50", "--hardware", "h100-sxm", "--tokens", "1e9", "--days", "1")
    r = cli(*args, "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to resnet-50, a CNN" in r.err, r.err
    assert cli(*args).code == 0


def test_defaults_still_run_and_language_models_take_seq(cli):
    assert cli(*TRAIN, "--model", "resnet-50").code == 0
    r = cli(*TRAIN, "--model", "llama-3.2-1b", "--seq", "1024", "--attention", "unfused")
    assert r.code == 0, r.err


def test_rest_refuses_with_its_own_field_name(client):
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training",
                                          "seq": 4096})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "seq" and err["code"] == "not_applicable"
    assert "'seq' 4096 does not apply to resnet-50, a CNN" in err["message"] and "--seq" not in err["message"]
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training",
                                          "attention": "unfused"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "attention"
    ok = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training"})
    assert ok.status_code == 200, ok.text


def test_an_inference_estimate_of_a_cnn_does_not_send_seq_to_training(cli, client):
    # Was: "--seq applies to training estimates only ...; set --mode training", which then ignored it.
    r = cli("estimate", "--model", "resnet-50", "--hardware", "h100-sxm", "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to resnet-50, a CNN" in r.err and "--mode" not in r.err, r.err
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "seq": 4096})
    assert r.status_code == 422 and r.json()["error"]["field"] == "seq"
    # a language model keeps the advice: its --seq means something in training
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--seq", "4096")
    assert r.code == 2 and "set --mode training" in r.err


def test_python_refuses_alike():
    import planner
    from planner.errors import TierwiseError

    with pytest.raises(TierwiseError, match="'seq' 4096 does not apply to resnet-50, a CNN"):
        planner.estimate_training("resnet-50", "h100-sxm", seq=4096)


@pytest.mark.parametrize("model, positions", [("vit-h", 257), ("resnet-50", 1)])
def test_an_image_model_reports_the_positions_it_trains_on(capsys, model, positions):
    # Was: "seq 2048" (estimate) and "seq 4096" (capacity train) for a ViT-H/14 at 224 px, whose
    # sample is 16·16 patches + the class token, and for a CNN, whose sample is one image.
    from tests.frontdoors import run

    code, out, err = run(capsys, "estimate", "-m", model, "-H", "h100-sxm", "--mode", "training", "--json")
    assert code == 0, err
    est = json.loads(out)
    assert est["seq"] == positions and est["tokens_per_s"] == pytest.approx(est["samples_per_s"] * positions)
    code, out, err = run(capsys, "capacity", "train", "-m", model, "-H", "h100-sxm", "--tokens", "1e12",
                         "--days", "30", "--json")
    assert code in (0, 3), err
    assert json.loads(out)["seq"] == positions
