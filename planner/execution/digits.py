"""A small CNN trained in seconds on scikit-learn's bundled handwritten digits (8×8, 10 classes).

The data ship inside scikit-learn (UCI optical recognition of handwritten digits, 1,797
images), so training and evaluation are offline. The split and the mini-batches are seeded
and training runs on one thread, so one seed gives the same weights on every run of the
same torch build.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from planner.arch import ArchSpec, ConvLayer

__all__ = ["DigitsCNN", "DigitsData", "accuracy", "digits_arch", "load_digits_data", "train_digits_cnn"]

IMAGE = 8
CLASSES = 10


class DigitsCNN(nn.Module):
    """conv 1→16 (3×3) → ReLU → conv 16→32 (3×3, stride 2) → ReLU → conv 32→64 (3×3, stride 2)
    → ReLU → global average pool → linear 64→10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.classifier = nn.Linear(64, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.classifier(x.mean(dim=(2, 3)))


def digits_arch() -> ArchSpec:
    """The CNN's architecture for the cost model and planner (groups ``model.conv1`` …
    ``model.classifier``); convolutions carry no BatchNorm."""
    layers = (
        ConvLayer(name="conv1", in_channels=1, out_channels=16, kernel=3, stride=1, groups=1, out_h=8, out_w=8,
                  has_bn=False),
        ConvLayer(name="conv2", in_channels=16, out_channels=32, kernel=3, stride=2, groups=1, out_h=4, out_w=4,
                  has_bn=False),
        ConvLayer(name="conv3", in_channels=32, out_channels=64, kernel=3, stride=2, groups=1, out_h=2, out_w=2,
                  has_bn=False),
    )
    return ArchSpec(id="digits-cnn", model_type="digits_cnn", source="planner.execution.digits (sklearn digits)",
                    family="cnn", num_layers=len(layers), hidden_size=64, num_heads=0, num_kv_heads=0, head_dim=0,
                    intermediate_size=0, gated_mlp=False, activation="relu", vocab_size=0,
                    tie_word_embeddings=False, max_position_embeddings=0, learned_pos_emb=False,
                    position_encoding="none", norm="batchnorm", conv_layers=layers, image_size=IMAGE,
                    num_channels=1, num_labels=CLASSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsData:
    """Images ``[n, 1, 8, 8]`` scaled to [0, 1] and labels ``[n]``, split 70/30."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@functools.lru_cache(maxsize=4)
def load_digits_data(seed: int = 0) -> DigitsData:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError("the digits CNN needs scikit-learn (pip install scikit-learn)") from exc
    raw = load_digits()
    x = torch.tensor(raw.data, dtype=torch.float32).reshape(-1, 1, IMAGE, IMAGE) / 16.0
    y = torch.tensor(raw.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.7 * len(y))
    tr, te = order[:cut], order[cut:]
    return DigitsData(train_x=x[tr], train_y=y[tr], test_x=x[te], test_y=y[te])


def train_digits_cnn(seed: int = 0, steps: int = 400, batch: int = 64, lr: float = 0.01) -> tuple[DigitsCNN, DigitsData]:
    """Train :class:`DigitsCNN` with Adam on seeded mini-batches; about a second on one core.

    Training runs on one thread: the result is then the same whatever the machine's thread
    count, and a busy machine does not slow it down by thread contention.
    """
    data = load_digits_data(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = len(data.train_y)
        for _ in range(steps):
            idx = torch.randint(0, n, (batch,), generator=gen)
            opt.zero_grad()
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, data


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=-1) == y).float().mean())
