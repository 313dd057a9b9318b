"""Models that are not text decoders: the estimate says which of prompt / gen do not apply, and
counts a ViT's tokens as its patches, not the (ignored) prompt length."""

from __future__ import annotations

import math

import pytest

from planner import api


def _notes(est) -> str:
    return "\n".join(est.notes)


@pytest.mark.parametrize("model,family", [("resnet-50", "CNN"), ("mobilenet-v2", "CNN"), ("vit-h", "ViT")])
def test_image_models_say_the_prompt_and_gen_lengths_do_not_apply(model, family):
    est = api.estimate(model, "h100-sxm", batch=4, prompt=512, gen=128)
    notes = _notes(est)
    assert f"{model} is a {family}: each sample is one 224×224 image" in notes
    assert "prompt length (512) does not apply" in notes
    assert "gen (128) does not apply" in notes


def test_an_encoder_uses_the_prompt_but_says_gen_does_not_apply():
    est = api.estimate("bert-base", "t4", batch=4, prompt=128, gen=16)
    notes = _notes(est)
    assert "prompt length" not in notes
    assert "bert-base generates no tokens (encoder): gen (16) does not apply" in notes
    assert "does not apply" not in _notes(api.estimate("bert-base", "t4", batch=4, prompt=128, gen=0))


@pytest.mark.parametrize("model", ["llama-3.2-1b", "t5-3b"])
def test_generative_models_get_no_such_note(model):
    assert "does not apply" not in _notes(api.estimate(model, "h100-sxm", batch=2, prompt=64, gen=8))


def test_a_vit_counts_its_patch_tokens_not_the_prompt():
    a = api.estimate("vit-h", "h100-sxm", batch=4, prompt=512, gen=0)
    b = api.estimate("vit-h", "h100-sxm", batch=4, prompt=16, gen=0)
    assert a.ttft_s == b.ttft_s  # the prompt length does not change the pass
    assert math.isclose(a.prefill_tokens_per_s, 4 * 257 / a.ttft_s, rel_tol=1e-12)  # (224/14)² + 1 tokens per image
