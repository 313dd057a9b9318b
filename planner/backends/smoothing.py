"""SmoothQuant's per-channel migration of activation outliers into the weights.

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models", ICML 2023, https://arxiv.org/abs/2211.10438, Eq. 4: for a linear ``Y = X·Wᵀ`` with input
channels ``j``, ``s_j = max|X_j|^α / max|W_j|^(1−α)``; the layer computes ``(X·diag(s)⁻¹)·(W·diag(s))ᵀ``,
the same product, with the activations' outlier channels divided down and the weights' matching
columns multiplied up before each is quantized. ``α`` is the migration strength: 0 leaves the
activations alone, 1 moves all of their range into the weights.
"""

from __future__ import annotations

import torch

__all__ = ["smoothing_scales"]

#: Floor of a channel's statistics, so that a channel that is zero everywhere gets a finite scale.
_EPS = 1e-5


def smoothing_scales(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s`` (one per input channel) for activations whose per-channel maximum magnitude is
    ``act_absmax`` (``[in_features]``) and a ``[out_features, in_features]`` ``weight``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the migration strength alpha must be in [0, 1]; got {alpha!r}")
    if weight.ndim != 2 or act_absmax.ndim != 1 or act_absmax.shape[0] != weight.shape[1]:
        raise ValueError(f"need act_absmax [in_features] and weight [out_features, in_features]; got "
                         f"{tuple(act_absmax.shape)} and {tuple(weight.shape)}")
    a = act_absmax.detach().to(torch.float32).clamp(min=_EPS)
    w = weight.detach().abs().amax(dim=0).to(torch.float32).clamp(min=_EPS)
    return (a.pow(alpha) / w.pow(1.0 - alpha)).clamp(min=_EPS)
