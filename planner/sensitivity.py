"""Accuracy sensitivity: how much each (decision group, option) is expected to hurt.

The planner minimises the sum of per-group scores, the additive proxy every peer tool uses
(HAWQ-V3's Tr(H)·‖ΔW‖², Yao et al. ICML 2021; ModelOpt AutoQuantize's Σ g²(ΔY)²; per-op MSE). A score
is dimensionless: a relative output-noise power, weighted by how much the group matters.
Four sources, one interface (:class:`Sensitivity`):

``prior`` (:class:`PriorSensitivity`) — no weights needed::

    score(g, o) = role(g) · depth(g) · size(g) · (noise_w(o) + noise_a(o))

* ``noise_w``: relative MSE ``‖W − Q(W)‖² / ‖W‖²`` of the option's weight format (after
  its sparsity pattern, magnitude pruning) on a seeded N(0, 1) reference matrix of
  16 × 4096, quantised by the real kernels in :mod:`planner.backends` — pretrained weights
  are close to zero-centred normal (Dettmers et al., "QLoRA", NeurIPS 2023, §3, the
  premise of NF4). The reference is rounded to bf16 first: checkpoints are stored in
  16 bits, so a 16-bit option costs nothing. These reference noises are the same in every
  run, so they ship as a measured table (:mod:`planner.format_noise`): the prior needs
  neither torch nor any quantisation at plan time.
* ``noise_a``: for low-precision activations, the MSE of quantising a reference
  activation matrix (64 tokens × 4096, N(0, 1)) in which 6 channels carry outliers 100×
  larger — LLM.int8() (Dettmers et al., NeurIPS 2022, §4) finds outliers concentrated in
  about 6 hidden dimensions of a 6.7B model; SmoothQuant (Xiao et al., ICML 2023, §3)
  reports outliers about 100× larger than typical values. The error is measured on the
  ordinary channels, relative to their power: a per-token int8 scale set by an outlier
  drowns them, which is why naive W8A8 collapses at scale while fp8 does not. An engine's own
  recipe for int8 activations (``recipe``, :class:`planner.format_noise.ActivationRecipe` from its
  profile) changes that: SmoothQuant first (``activation_smoothing``: vLLM, SGLang) on the groups
  that alone read a norm's output (:mod:`planner.smoothing_map`), measured after the migration with the rise in
  int8 weight noise it costs; or one scale per block of features (``activation_blocks``: llama.cpp's
  CPU matmul, Q8_0 / Q8_K per weight type), so an outlier drowns its own block only
  (:func:`planner.format_noise.measure_activation_noise`).
* ``role``: embedding, lm_head / classifier 2.0, MLP output (down_proj) 1.5, MoE router 4.0,
  everything else 1.0. llama.cpp's k-quant mixes spend more bits on ``output.weight``
  and on ``ffn_down`` / ``attn_v`` (Q4_K_M: Q6_K for half of them; ggml PR #1684);
  "The Super Weight in LLMs" (Yu et al., 2024) locates the weights whose removal destroys
  the model in ``mlp.down_proj``; ModelOpt's default quantisation configs leave
  ``*router*`` / ``*mlp.gate.*`` unquantised.
* ``size``: ``(active_params(g) / median over the interior groups) ** 0.5``. An
  output-noise view makes a group's score independent of its size (each layer's relative
  output noise is its format's relative noise), while HAWQ's ``Tr(H)/n · ‖ΔW‖²`` (Dong et al.,
  HAWQ-V2, NeurIPS 2020) and ModelOpt AutoQuantize's ``Σ (g·ΔY)²`` over the layer's outputs
  grow with the number of weights perturbed. Size-free scores make the solver crush the
  largest groups first — memory saved per unit of score grows with size — which are the
  embedding table and the LM head (1.05 B weights each in Llama 3.1 70B, against 67–470 M for
  an interior group); the square root sits between the two views. MoE experts count the
  weights a token passes through (``experts_active / experts``), so a token's 2-of-8 experts
  weigh as a dense MLP of that size.
* ``role`` for embeddings is 2.0: practice keeps them at 16 or at least 6 bits — vLLM,
  GPTQ / AWQ and bitsandbytes quantize ``Linear`` layers only; llama.cpp's k-quant mixes give
  ``output.weight`` (and ``token_embd`` when the output is tied to it) Q6_K
  (src/llama-quant.cpp ``llama_tensor_get_type``); ModelOpt's default configs disable
  ``*lm_head*`` quantization.
* ``depth``: ``1 + exp(−p/τ) + exp(−(1 − p)/τ)`` for relative depth ``p`` ∈ [0, 1] with
  τ = 0.1: the first and last layers count about twice. llama.cpp's ``use_more_bits``
  gives more bits to the first and last eighth of the layers; Gromov et al. ("The
  Unreasonable Ineffectiveness of the Deeper Layers", 2024) drop middle-to-late layers
  with little loss.
* KV cache: ``Σ_layers depth · noise_kv(format)`` with ``noise_kv`` measured the same way
  on a 256 × 128 (tokens·heads × head_dim) N(0, 1) matrix.
* Low rank (``int8@r512``): ``noise_w`` of a rank-r truncation of a k × n linear is
  ``e_r + 2·(1 − e_r)·noise_w(factor format)``, averaged over the group's members by
  parameters. ``e_r`` is the energy a rank-r truncated SVD discards from a k × n matrix
  with i.i.d. entries — its squared singular values follow the Marchenko–Pastur law
  (Marchenko & Pastur, "Distribution of eigenvalues for some sets of random matrices",
  Math. USSR-Sbornik 1967) with ratio y = min(k, n)/max(k, n), and ``e_r`` is the energy
  of the law outside its top r/min(k, n) quantile (:func:`low_rank_truncation_prior`).
  A Gaussian matrix has the flattest spectrum a trained layer plausibly has — trained
  weights show heavy-tailed spectra whose top directions carry more energy (Martin &
  Mahoney, "Implicit Self-Regularization in Deep Neural Networks", JMLR 2021) — so the
  prior is pessimistic: use ``weights:`` or measured scores to let low rank compete.
  The factors ``B = U_r·√S_r`` and ``A = √S_r·V_rᵀ`` (as :func:`planner.backends.low_rank`
  splits them) each add their format's relative noise to the kept part: ``δB·A`` lies in
  the row space of the kept singular vectors and ``B·δA`` in the column space, both
  orthogonal to the discarded residual, so the errors add (second-order ``δB·δA`` left out).

``weights`` (:class:`WeightsSensitivity`) — the model's real tensors replace the reference
matrix in ``noise_w`` (rows evenly subsampled to ``max_rows`` per tensor so it runs on a
CPU); role, depth and ``noise_a`` stay as in the prior. A low-rank option measures the
tensor's own truncation error ``Σ_{i>r} s_i² / Σ_i s_i²`` from its singular values (an SVD
of the whole tensor, once per tensor — seconds per 2048 × 8192 matrix on a CPU) plus the
quantisation error of its real factors ``‖B·A − Q(B)·Q(A)‖²`` on the subsampled rows,
relative to those rows' energy; 16-bit factors cost nothing (the checkpoint's own
precision, as for a 16-bit option).

``data`` / ``file:<name>`` (:class:`TableSensitivity`) — scores measured elsewhere (output
error weighted by gradients, KL of logits...) given per group (glob patterns allowed) and
option key; entries a table lacks come from the prior, and the plan says how many.

Sensitivity files (``--sensitivity sens.yaml``)::

    version: 1
    metric: kl            # free text, for people
    groups:
      model.layers.*.mlp.down_proj: {int4-g128: 0.021, int8: 0.0009, fp8-e4m3: 0.002}
      model.lm_head: {int8: 0.004}
      model.layers.*.self_attn.o_proj: {int8@r512: 0.03}   # low rank: '@rRANK' in the key
      model.layers.*.mlp.up_proj:                          # or a list of entries with fields
        - {weights: int8, low_rank: 1024, score: 0.02}
        - {weights: int4-g128, score: 0.011}
    kv: {fp8-e4m3: 0.01, int8: 0.004}     # optional, whole-model KV-cache scores
    activation_recipe: {smoothing_alpha: 0.8, blocks: {}}   # optional: how int8-activation scores were
                                          # measured (`tierwise sensitivity --activations --engine`)

List entries take ``weights`` and ``score`` and optionally ``sparsity``, ``activations`` and
``low_rank``; both spellings may be mixed across patterns.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from hwmodels.errors import per_front_end  # the path as typed, never read as a field token
from hwmodels._checks import is_number
from planner.errors import SensitivityError
from planner.format_noise import (
    ActivationRecipe,
    _apply,
    _torch,
    activation_noise,
    dynamic_applies,
    kv_noise,
    smoothable,
    weight_noise,
)
from planner.formats import FormatError, get_format
from planner.options import HIGH_PRECISION_COMPUTE, GroupInfo, Option, OptionError, option_key, parse_option_key

__all__ = [
    "DEPTH_TAU",
    "SIZE_EXPONENT",
    "ROLE_FACTORS",
    "PriorSensitivity",
    "Sensitivity",
    "SensitivityError",
    "SensitivityScores",
    "TableSensitivity",
    "WeightsSensitivity",
    "activation_noise",
    "depth_factor",
    "group_activation_noise",
    "group_option_noise",
    "group_weight_noise",
    "importance",
    "active_params",
    "size_factor",
    "size_reference",
    "kv_noise",
    "load_sensitivity_file",
    "low_rank_truncation_prior",
    "sensitivity_from_spec",
    "table_from_scores",
    "weight_noise",
    "weights_from_module",
    "weights_from_safetensors",
]

ROLE_FACTORS: Mapping[str, float] = {
    "embedding": 2.0,
    "attn_qkv": 1.0,
    "attn_out": 1.0,
    "mlp_in": 1.0,
    "mlp_out": 1.5,
    "experts": 1.0,
    "router": 4.0,
    "lm_head": 2.0,
    "head": 2.0,
    "conv": 1.0,
}
DEPTH_TAU = 0.1
SIZE_EXPONENT = 0.5


def depth_factor(position: float) -> float:
    """``1 + exp(−p/τ) + exp(−(1 − p)/τ)`` for relative depth ``p`` in [0, 1]."""
    p = min(max(float(position), 0.0), 1.0)
    return 1.0 + math.exp(-p / DEPTH_TAU) + math.exp(-(1.0 - p) / DEPTH_TAU)


def active_params(group: GroupInfo) -> float:
    """Weights of ``group`` one token passes through: all of them, except an MoE expert
    block's, of which the token sees ``experts_active / experts`` (Mixtral: 2 of 8)."""
    total = 0.0
    for m in group.members:
        share = m.experts_active / m.experts if m.experts and m.experts_active else 1.0
        total += m.weight_params * share
    return total


def size_reference(groups: Sequence[GroupInfo]) -> float:
    """The group size at which the size factor is 1: the median :func:`active_params` of the
    repeated (interior) groups (of all groups when none repeats), so that scores keep the
    scale of a typical layer's group."""
    sizes = [active_params(g) for g in groups if g.repeated] or [active_params(g) for g in groups]
    sizes = [x for x in sizes if x > 0]
    return float(np.median(sizes)) if sizes else 0.0


def size_factor(group: GroupInfo, reference: float | None) -> float:
    """``(active_params / reference) ** SIZE_EXPONENT`` (1 without a reference)."""
    p = active_params(group)
    if not reference or reference <= 0 or p <= 0:
        return 1.0
    return (p / reference) ** SIZE_EXPONENT


def importance(group: GroupInfo, reference: float | None = None) -> float:
    """Role × depth × size weight of a decision group (size: :func:`size_factor` against
    ``reference``, :func:`size_reference` of the model's groups; none: size factor 1)."""
    return ROLE_FACTORS.get(group.role, 1.0) * depth_factor(group.position) * size_factor(group, reference)


# ---------------------------------------------------------------------------
# Reference noise of formats: planner.format_noise (shipped table, live fallback)
# ---------------------------------------------------------------------------


def option_noise(option: Option) -> float:
    """Weight plus activation noise of a full-rank option (low rank: :func:`group_option_noise`)."""
    return weight_noise(option.weights, option.sparsity) + activation_noise(option.activations)


def group_activation_noise(group: GroupInfo, option: Option, recipe: ActivationRecipe | None = None) -> float:
    """Activation noise of ``option``'s activations on ``group`` under the engine's ``recipe``: after
    SmoothQuant's migration where the group alone reads a norm's output (``GroupInfo.reads_norm``,
    :mod:`planner.smoothing_map`), in the activation blocks the recipe gives the option's weight
    format; as they come without one."""
    if recipe is None or recipe.empty:
        return activation_noise(option.activations)
    if recipe.dynamic is not None and dynamic_applies(option.weights, option.activations, recipe.weight_only):
        # The engine quantizes these float activations per token at run time (8da4w / 8da8w).
        return activation_noise(recipe.dynamic)
    smoothing = recipe.smoothing if group.reads_norm else None
    return activation_noise(option.activations, smoothing, recipe.block_for(option.weights))


_MP_STEPS = 200_000


@functools.lru_cache(maxsize=4096)
def low_rank_truncation_prior(rank: int, rows: int, cols: int) -> float:
    """Fraction of the energy ``‖W‖²`` a rank-``rank`` truncated SVD discards from a
    ``rows × cols`` matrix with i.i.d. entries, from the Marchenko–Pastur law (module
    docstring): 0 when ``rank >= min(rows, cols)``.

    With y = min/max, the law's density is ``f(x) = √((b − x)(x − a)) / (2π·y·x)`` on
    ``[a, b] = [(1 − √y)², (1 + √y)²]``; the top ``rank/min`` of its mass is kept and the
    energy ``∫ x f(x) dx`` outside it is returned. Integrated by the midpoint rule in
    ``x = (a + b)/2 − (b − a)/2 · cos φ``, which removes the square-root end points (and
    the 1/√x singularity of a square matrix)."""
    for name, v in (("rank", rank), ("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"The '{name}' parameter of low_rank_truncation_prior must be an int in [1, inf). "
                             f"Got {v!r} instead.")
    p, q = min(rows, cols), max(rows, cols)
    if rank >= p:
        return 0.0
    y = p / q
    centre, half = 1.0 + y, 2.0 * math.sqrt(y)
    phi = (np.arange(_MP_STEPS, dtype=np.float64) + 0.5) * (math.pi / _MP_STEPS)
    x = centre - half * np.cos(phi)  # increasing in φ: φ = π is the top of the spectrum
    mass = half * half * np.sin(phi) ** 2 / (2.0 * math.pi * y * x)  # f(x)·dx/dφ
    energy = x * mass
    # Cumulative from the top of the spectrum down.
    m_top = np.cumsum(mass[::-1])
    e_top = np.cumsum(energy[::-1])
    frac = rank / p
    target = frac * m_top[-1]
    j = int(np.searchsorted(m_top, target))
    prev_m = m_top[j - 1] if j > 0 else 0.0
    prev_e = e_top[j - 1] if j > 0 else 0.0
    cell_m = m_top[j] - prev_m
    kept = prev_e + (e_top[j] - prev_e) * ((target - prev_m) / cell_m if cell_m > 0 else 0.0)
    return float(min(max(1.0 - kept / e_top[-1], 0.0), 1.0))


def _factor_noise_prior(factor_format: str, truncation: float) -> float:
    """Noise the two quantised factors add to the kept part (module docstring)."""
    return 2.0 * (1.0 - truncation) * weight_noise(factor_format, "dense")


def group_weight_noise(group: GroupInfo, option: Option) -> float:
    """Prior weight noise of ``option`` on ``group``: :func:`weight_noise`, or for a
    low-rank option the parameter-weighted truncation and factor noise of its members."""
    if option.low_rank is None:
        return weight_noise(option.weights, option.sparsity)
    num = den = 0.0
    for m in group.members:
        k, n = m.in_features or 1, m.out_features or 1
        e_r = low_rank_truncation_prior(option.low_rank, n, k)
        num += m.weight_params * (e_r + _factor_noise_prior(option.weights, e_r))
        den += m.weight_params
    return num / den if den > 0 else weight_noise(option.weights, option.sparsity)


def group_option_noise(group: GroupInfo, option: Option, recipe: ActivationRecipe | None = None) -> float:
    """Prior weight plus activation noise of ``option`` on ``group`` (``recipe``: the engine's for
    integer activations, :func:`group_activation_noise`)."""
    return group_weight_noise(group, option) + group_activation_noise(group, option, recipe)


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityScores:
    """Scores per group (one array per group, aligned with its options) and notes."""

    values: tuple[np.ndarray, ...]
    notes: tuple[str, ...] = ()


class Sensitivity(Protocol):
    """A source of accuracy scores. ``source`` is what a plan records: ``prior``,
    ``weights``, ``data`` or ``file:<name>``."""

    source: str

    def scores(self, groups: Sequence[GroupInfo], options: Sequence[Sequence[Option]]) -> SensitivityScores: ...

    def kv_score(self, kv: str, groups: Sequence[GroupInfo]) -> float: ...


def _attention_depths(groups: Sequence[GroupInfo]) -> list[float]:
    return [depth_factor(g.position) for g in groups if g.role == "attn_qkv"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorSensitivity:
    """Role × depth × reference noise (module docstring)."""

    source: str = "prior"
    # The engine's recipe for integer activations (None: per token as they come).
    recipe: ActivationRecipe | None = None

    def with_recipe(self, recipe: ActivationRecipe | None) -> PriorSensitivity:
        """The same scores for an engine that quantizes integer activations by ``recipe``."""
        return replace(self, recipe=recipe)

    def scores(self, groups: Sequence[GroupInfo], options: Sequence[Sequence[Option]]) -> SensitivityScores:
        _check_aligned(groups, options)
        cache: dict[tuple, float] = {}
        out = []
        ref = size_reference(groups)
        for g, opts in zip(groups, options):
            imp = importance(g, ref)
            row = []
            smoothed = g.reads_norm
            for o in opts:
                # Full-rank noise depends on the option (and whether the group is smoothed) only; low
                # rank also on the members' shapes.
                key = (o, smoothed) if o.low_rank is None else (o, g.block, g.name)
                if key not in cache:
                    cache[key] = group_option_noise(g, o, self.recipe)
                row.append(imp * cache[key])
            out.append(np.asarray(row, dtype=np.float64))
        return SensitivityScores(values=tuple(out))

    def kv_score(self, kv: str, groups: Sequence[GroupInfo]) -> float:
        return sum(_attention_depths(groups)) * kv_noise(kv)


def _check_aligned(groups: Sequence[GroupInfo], options: Sequence[Sequence[Option]]) -> None:
    if len(groups) != len(options):
        raise ValueError(f"need one option list per group; got {len(groups)} groups and {len(options)} lists")


# ---------------------------------------------------------------------------
# From real weights
# ---------------------------------------------------------------------------


def weights_from_module(module) -> dict[str, object]:
    """A torch module's parameters by name (detached, on CPU)."""
    return {k: v.detach().to("cpu") for k, v in module.state_dict().items()}


def weights_from_safetensors(path: str | Path) -> dict[str, object]:
    """Tensors of a ``.safetensors`` file, or of every such file in a directory."""
    from safetensors.torch import load_file

    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise SensitivityError(f"--sensitivity weights:{path}: no .safetensors file there", field="sensitivity")
    out: dict[str, object] = {}
    for f in files:
        out.update(load_file(str(f), device="cpu"))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsSensitivity:
    """Measured weight noise of the model's own tensors (``name → tensor``, HF names such
    as ``model.layers.0.self_attn.q_proj.weight``)."""

    tensors: Mapping[str, object]
    max_rows: int = 256
    source: str = "weights"
    recipe: ActivationRecipe | None = None  # as PriorSensitivity.recipe
    # Singular value decompositions by tensor name, computed once and reused for every rank,
    # factor format and re-solve (the SVD dominates the cost of a low-rank score).
    _svd_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _member_tensors(self, g: GroupInfo) -> list[tuple[str, object]]:
        """(name, 2-D float32 tensor) of each member, whole."""
        torch = _torch()
        out: list[tuple[str, object]] = []
        for fqn in g.member_fqns:
            t = self.tensors.get(fqn + ".weight")
            if t is None:
                # MoE checkpoints store experts one by one: model.layers.0.mlp.experts.3.gate_proj.weight
                head, _, leaf = fqn.rpartition(".")
                pat = f"{head}.*.{leaf}.weight"
                out.extend((k, v) for k, v in self.tensors.items() if fnmatch.fnmatchcase(k, pat))
                continue
            out.append((fqn + ".weight", t))
        if not out and g.role == "lm_head":
            # A tied head is its embedding.
            emb = [k for k in self.tensors if k.endswith("embed_tokens.weight") or k.endswith("wte.weight")]
            out = [(emb[0], self.tensors[emb[0]])] if emb else []
        clean = []
        for name, t in out:
            if not isinstance(t, torch.Tensor) or t.ndim < 2:
                continue
            clean.append((name, t.detach().reshape(t.shape[0], -1).to(torch.float32)))
        return clean

    def _rows(self, n: int):
        """Evenly spaced row indices (all rows when there are at most ``max_rows``)."""
        torch = _torch()
        if n <= self.max_rows:
            return None
        return torch.linspace(0, n - 1, self.max_rows).round().long()

    def _svd(self, name: str, m):
        """``(U, S, Vh)`` of ``m`` in float64 (cached by tensor name). A wide matrix is
        decomposed through its transpose: LAPACK's divide and conquer is many times slower
        on wide than on tall inputs on a CPU."""
        hit = self._svd_cache.get(name)
        if hit is not None and hit[0].shape[0] == m.shape[0] and hit[2].shape[1] == m.shape[1]:
            return hit
        torch = _torch()
        x = m.to(torch.float64)
        if x.shape[0] >= x.shape[1]:
            u, s, vh = torch.linalg.svd(x, full_matrices=False)
        else:
            v, s, uh = torch.linalg.svd(x.T.contiguous(), full_matrices=False)
            u, vh = uh.T, v.T
        self._svd_cache[name] = (u, s, vh)
        return u, s, vh

    def _low_rank_error(self, name: str, m, rank: int, factor_format: str) -> tuple[float, float]:
        """(error energy, ‖W‖²) of a rank-``rank`` factorisation of ``m`` with factors in
        ``factor_format``: the truncation tail of the singular values plus the factors'
        quantisation error measured on the subsampled rows, scaled to the whole tensor."""
        u, s, vh = self._svd(name, m)
        s2 = s * s
        total = float(s2.sum())
        r = min(rank, int(s.numel()))
        tail = float(s2[r:].sum())
        fmt = get_format(factor_format)
        if (fmt.kind == "float" and fmt.element_bits >= 16) or total <= 0:
            return tail, total
        torch = _torch()
        root = s[:r].sqrt()
        b = (u[:, :r] * root).to(torch.float32)  # as planner.backends.low_rank splits them
        a = (root.unsqueeze(1) * vh[:r]).to(torch.float32)
        qb, qa = _apply(b, fmt.name, "dense"), _apply(a, fmt.name, "dense")
        idx = self._rows(m.shape[0])
        if idx is not None:
            b, qb, w_rows = b[idx], qb[idx], m[idx]
        else:
            w_rows = m
        err = float(((b.double() @ a.double() - qb.double() @ qa.double()) ** 2).sum())
        rows_energy = float((w_rows.double() ** 2).sum())
        return tail + (err / rows_energy * total if rows_energy > 0 else 0.0), total

    def scores(self, groups: Sequence[GroupInfo], options: Sequence[Sequence[Option]]) -> SensitivityScores:
        _check_aligned(groups, options)
        out = []
        fallback = 0
        ref = size_reference(groups)
        for g, opts in zip(groups, options):
            named = self._member_tensors(g)
            subs = []
            for _, m in named:
                idx = self._rows(m.shape[0])
                subs.append(m if idx is None else m[idx])
            imp = importance(g, ref)
            row = []
            for o in opts:
                if named and o.low_rank is not None:
                    num = den = 0.0
                    for name, m in named:
                        e, t = self._low_rank_error(name, m, o.low_rank, o.weights)
                        num += e
                        den += t
                    wn = num / den if den > 0 else 0.0
                elif named:
                    num = den = 0.0
                    for m in subs:
                        d = _apply(m, o.weights, o.sparsity)
                        num += float(((m.double() - d.double()) ** 2).sum())
                        den += float((m.double() ** 2).sum())
                    wn = num / den if den > 0 else 0.0
                else:
                    wn = group_weight_noise(g, o)
                row.append(imp * (wn + group_activation_noise(g, o, self.recipe)))
            if not named:
                fallback += 1
            out.append(np.asarray(row, dtype=np.float64))
        notes = (f"{fallback} of {len(groups)} groups had no tensor in the weights given; their weight noise is the "
                 "prior's",) if fallback else ()
        return SensitivityScores(values=tuple(out), notes=notes)

    def kv_score(self, kv: str, groups: Sequence[GroupInfo]) -> float:
        return PriorSensitivity().kv_score(kv, groups)

    def with_recipe(self, recipe: ActivationRecipe | None) -> WeightsSensitivity:
        return replace(self, recipe=recipe)


# ---------------------------------------------------------------------------
# Measured tables (data, files)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TableSensitivity:
    """Scores given per group pattern and option key; missing entries fall back to the
    prior. ``entries`` are ``(pattern, {option key: score})`` in priority order (the first
    matching pattern that has the key wins)."""

    entries: tuple[tuple[str, Mapping[str, float]], ...]
    kv: Mapping[str, float] = field(default_factory=dict)
    source: str = "data"
    recipe: ActivationRecipe | None = None  # for the prior's fallback scores (PriorSensitivity.recipe)
    # How the table's integer-activation scores were measured (the file's ``activation_recipe``, written by
    # ``tierwise sensitivity --activations``); None: not stated.
    measured_recipe: ActivationRecipe | None = None

    def with_recipe(self, recipe: ActivationRecipe | None) -> TableSensitivity:
        return replace(self, recipe=recipe)

    def _lookup(self, fqn: str, option: Option) -> float | None:
        key = option.key
        # A weight-only option may be given without its compute format (``int8``, ``int8@r512``).
        bare = option_key(option.weights, option.sparsity, "bf16", option.low_rank)
        for pattern, table in self.entries:
            if fnmatch.fnmatchcase(fqn, pattern):
                if key in table:
                    return table[key]
                if option.weight_only and bare in table:
                    return table[bare]
        return None

    def scores(self, groups: Sequence[GroupInfo], options: Sequence[Sequence[Option]]) -> SensitivityScores:
        _check_aligned(groups, options)
        prior = PriorSensitivity(recipe=self.recipe).scores(groups, options).values
        out = []
        missing = total = measured_int = 0
        for g, opts, pv in zip(groups, options, prior):
            row = []
            for o, p in zip(opts, pv):
                total += 1
                v = self._lookup(g.fqn, o)
                if v is not None and not o.weight_only and smoothable(o.activations) and self._recipe_differs(g, o):
                    measured_int += 1
                if v is None:
                    # A 16-bit option is the reference: it costs nothing by definition (a
                    # factorised one does: its truncation).
                    v = 0.0 if (o.weights in HIGH_PRECISION_COMPUTE and o.sparsity == "dense"
                                and o.weight_only and o.low_rank is None) else None
                if v is None:
                    missing += 1
                    v = float(p)
                row.append(v)
            out.append(np.asarray(row, dtype=np.float64))
        self._check_matched(groups)
        notes = (f"{missing} of {total} (group, option) scores were not in the {self.source} table and come from "
                 "the prior",) if missing else ()
        if measured_int:
            notes += (f"{measured_int} integer-activation scores of the {self.source} table were measured with "
                      f"activations quantized {self.measured_recipe.describe()}, but the plan's engine quantizes "  # type: ignore[union-attr]
                      f"those groups' {(self.recipe or ActivationRecipe()).describe()}; they are used as measured "
                      "(measure again with `tierwise sensitivity --engine` of this plan's engine)",)
        return SensitivityScores(values=tuple(out), notes=notes)

    def _check_matched(self, groups: Sequence[GroupInfo]) -> None:
        """Every entry names at least one of the model's decision groups: one that matches none
        (``model.layerz.3.mlp.down_proj``, a layer the model lacks) is an error naming it, not a
        score silently left unused, as a pin that matches nothing is."""
        fqns = tuple(g.fqn for g in groups)
        unmatched = _unmatched(tuple(pattern for pattern, _ in self.entries), fqns)
        if not unmatched:
            return
        shown = ", ".join(repr(u) for u in unmatched[:3]) + (f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else "")
        example = ", ".join(fqns[: min(2, len(fqns))])
        raise SensitivityError(f"--sensitivity {self.source.removeprefix('file:')}: {len(unmatched)} of "
                               f"{len(self.entries)} group entries match no decision group of the model: {shown}; its "
                               f"groups are named like {example} (`tierwise plan ... --per-group` lists them)",
                               field="sensitivity")

    def _recipe_differs(self, g: GroupInfo, o: Option) -> bool:
        """Whether the table's measurement of ``o`` on ``g`` quantized its integer activations otherwise than
        the plan's engine does: SmoothQuant where the group alone reads a norm, the block of its weight format
        (False when the table states no recipe)."""
        if self.measured_recipe is None:
            return False
        plan = self.recipe or ActivationRecipe()

        def how(r: ActivationRecipe) -> tuple:
            return (r.smoothing if g.reads_norm else None, r.block_for(o.weights))

        return how(self.measured_recipe) != how(plan)

    def kv_score(self, kv: str, groups: Sequence[GroupInfo]) -> float:
        name = get_format(kv).name
        if name in self.kv:
            return float(self.kv[name])
        if name in HIGH_PRECISION_COMPUTE:
            return 0.0
        return PriorSensitivity().kv_score(name, groups)


@functools.lru_cache(maxsize=64)
def _unmatched(patterns: tuple[str, ...], fqns: tuple[str, ...]) -> tuple[str, ...]:
    """The patterns that match none of ``fqns``: computed once per table and model, not for every
    layout and KV format the search scores."""
    return tuple(p for p in patterns if not any(fnmatch.fnmatchcase(f, p) for f in fqns))


def _score(v: object, where: str) -> float:
    if not is_number(v) or v < 0:
        raise SensitivityError(f"{where} must be a finite number >= 0; got {v!r}", field=where)
    return float(v)


_ENTRY_FIELDS = ("weights", "sparsity", "activations", "low_rank", "score")


def _entry_key(entry: object, where: str) -> tuple[str, object, str]:
    """(option key, score, location) of a list entry ``{weights, [sparsity], [activations],
    [low_rank], score}``."""
    if not isinstance(entry, Mapping):
        raise SensitivityError(f"{where} must be a mapping with 'weights' and 'score'; got {type(entry).__name__}",
                               field=where)
    unknown = set(entry) - set(_ENTRY_FIELDS)
    if unknown:
        raise SensitivityError(f"{where}: unknown fields {', '.join(sorted(map(str, unknown)))} (known: "
                               f"{', '.join(_ENTRY_FIELDS)})", field=f"{where}.{sorted(map(str, unknown))[0]}")
    for name in ("weights", "score"):
        if name not in entry:
            raise SensitivityError(f"{where}: '{name}' is required", field=f"{where}.{name}")
    w, sp, a, r = (entry.get("weights"), entry.get("sparsity", "dense"), entry.get("activations", "bf16"),
                   entry.get("low_rank"))
    for name, v in (("weights", w), ("sparsity", sp), ("activations", a)):
        if not isinstance(v, str) or not v.strip():
            raise SensitivityError(f"{where}.{name} must be a format name; got {v!r}", field=f"{where}.{name}")
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise SensitivityError(f"{where}.low_rank must be an integer >= 1 or absent; got {r!r}",
                               field=f"{where}.low_rank")
    try:
        key = option_key(w, sp, a, r)
    except (FormatError, OptionError, ValueError) as exc:
        raise SensitivityError(f"{where}: {getattr(exc, 'message', exc)}", field=where) from None
    return key, entry["score"], f"{where}.score"


def _once(spelled: dict[str, str], canon: str, where: str, within: str) -> None:
    """One score per option: two spellings of one option (``fp8`` and ``fp8-e4m3``, ``int8@r0512``
    and ``int8@r512``, two list entries of ``int8``) would keep one score silently."""
    def label(w: str) -> str:  # ".fp8" → fp8, "[1].score" → entry [1]
        rest = w.removeprefix(within).removesuffix(".score")
        return f"entry {rest}" if rest.startswith("[") else rest.lstrip(".")

    if canon in spelled:
        raise SensitivityError(f"{within}: {label(spelled[canon])} and {label(where)} are both the option {canon!r}; "
                               "give each option one score", field=where)
    spelled[canon] = where


def table_from_scores(scores: Mapping[str, Mapping[str, float]], *, kv: Mapping[str, float] | None = None,
                      source: str = "data") -> TableSensitivity:
    """A :class:`TableSensitivity` from ``{group FQN or pattern: {option key: score}}``
    (what a measurement with a torch model produces)."""
    entries = []
    for pattern, table in scores.items():
        if not isinstance(pattern, str) or not pattern:
            raise SensitivityError(f"group patterns must be non-empty strings; got {pattern!r}", field="sensitivity")
        if isinstance(table, Sequence) and not isinstance(table, (str, bytes)):
            items = [_entry_key(e, f"groups.{pattern}[{i}]") for i, e in enumerate(table)]
        elif isinstance(table, Mapping):
            items = [(str(key), v, f"groups.{pattern}.{key}") for key, v in table.items()]
        else:
            raise SensitivityError(f"groups.{pattern} must map option keys to scores, or list entries with "
                                   f"'weights' and 'score'; got {type(table).__name__}", field=f"groups.{pattern}")
        clean: dict[str, float] = {}
        spelled: dict[str, str] = {}
        for key, v, where in items:
            try:
                w, sp, a, r = parse_option_key(key)
                canon = option_key(w, sp, a or "bf16", r)
            except OptionError as exc:
                raise SensitivityError(f"groups.{pattern}: {exc.message}", field=f"{where}") from None
            _once(spelled, canon, where, f"groups.{pattern}")
            clean[canon] = _score(v, where)
        entries.append((pattern, clean))
    kv_clean: dict[str, float] = {}
    kv_spelled: dict[str, str] = {}
    for k, v in (kv or {}).items():
        try:
            fmt = get_format(k)
        except FormatError as exc:
            raise SensitivityError(f"kv: {exc}", field=f"kv.{k}") from None
        _once(kv_spelled, fmt.name, f"kv.{k}", "kv")
        kv_clean[fmt.name] = _score(v, f"kv.{k}")
    return TableSensitivity(entries=tuple(entries), kv=kv_clean, source=source)


def load_sensitivity_file(path: str | Path) -> TableSensitivity:
    """Read a sensitivity file (YAML or JSON; format in the module docstring)."""
    import yaml

    from planner.fileio import DuplicateKeyError, parse_document

    p = Path(path)
    from hwmodels.loader import exists, is_dir, is_file

    if exists(p) and not is_dir(p) and not is_file(p):  # a FIFO or device would block the read or never end
        raise SensitivityError(f"--sensitivity {path}: not a regular file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SensitivityError(f"--sensitivity {path}: expected UTF-8 text; got undecodable bytes ({exc.reason})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise SensitivityError(f"--sensitivity {path}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = parse_document(text, "json" if p.suffix.lower() == ".json" else "yaml")
    except DuplicateKeyError as exc:
        raise SensitivityError(f"--sensitivity {p.name}: {exc.message}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise SensitivityError(f"--sensitivity {p.name}: not valid {'JSON' if p.suffix == '.json' else 'YAML'} "
                               f"({exc})") from None
    if not isinstance(data, Mapping):
        raise SensitivityError(f"--sensitivity {p.name}: expected a mapping with 'version' and 'groups'")
    unknown = set(data) - {"version", "metric", "source", "groups", "kv", "activation_recipe"}
    if unknown:
        raise SensitivityError(f"--sensitivity {p.name}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                               "(known: version, metric, source, groups, kv, activation_recipe)",
                               field=sorted(map(str, unknown))[0])
    if data.get("version") != 1:
        raise SensitivityError(f"--sensitivity {p.name}: 'version' must be 1; got {data.get('version')!r}",
                               field="version")
    groups = data.get("groups")
    if not isinstance(groups, Mapping) or not groups:
        raise SensitivityError(f"--sensitivity {p.name}: 'groups' must map group patterns to "
                               "{option key: score}", field="groups")
    kv = data.get("kv") or {}
    if not isinstance(kv, Mapping):
        raise SensitivityError(f"--sensitivity {p.name}: 'kv' must map KV formats to scores", field="kv")
    measured = None
    if data.get("activation_recipe") is not None:
        from planner.format_noise import recipe_from_dict

        def error(where: str, expected: str, got: object) -> SensitivityError:
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            return SensitivityError(f"--sensitivity {p.name}: '{where}' must be {expected}; got {shown}", field=where)

        measured = recipe_from_dict(data["activation_recipe"], "activation_recipe", error)
    try:
        table = table_from_scores(groups, kv=kv, source=f"file:{p.name}")
    except SensitivityError as exc:
        raise SensitivityError(f"--sensitivity {p.name}: {exc.message}", field=exc.field) from None
    return replace(table, measured_recipe=measured)


def sensitivity_from_spec(spec: str | Sensitivity | None) -> Sensitivity:
    """``None`` / ``"prior"`` → the prior; ``"weights:<path>"`` → real tensors from a
    safetensors file or directory; any other string is a sensitivity file path."""
    if spec is None:
        return PriorSensitivity()
    if not isinstance(spec, str):
        if hasattr(spec, "scores") and hasattr(spec, "kv_score") and hasattr(spec, "source"):
            return spec
        raise SensitivityError(f"--sensitivity must be 'prior', 'weights:PATH' or a file; got {spec!r}")
    s = spec.strip()
    if s in ("", "prior"):
        return PriorSensitivity()
    if s.startswith("weights:"):
        return WeightsSensitivity(tensors=weights_from_safetensors(s.split(":", 1)[1]))
    p = Path(s)
    if not p.exists():
        raise SensitivityError(f"--sensitivity {per_front_end(s, s)}: no such file (expected 'prior', 'weights:PATH.safetensors' or a "
                               "YAML/JSON sensitivity file)")
    return load_sensitivity_file(p)
