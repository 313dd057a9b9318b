"""Run a model again after changing one layer, recomputing only what the change can reach.

:class:`ForwardTrace` runs a model once (the reference forward pass) with hooks on every
submodule and records, per module, the order in which its call started and ended, how often
it was called and what it returned. When the weights of some modules ``S`` change, every
module whose call *ended before the first module of S started* computed exactly what it
computed before: its inputs came from the model's inputs and from modules that ran even
earlier. :meth:`ForwardTrace.replaying` makes the top-most of those modules return their
recorded output instead of running (an instance ``forward`` that returns the cached
tensor), so a forward pass with a changed layer ``k`` runs the model's own code from layer
``k`` on, on the cached hidden states of the unchanged prefix. The result is the very
tensor a full forward pass computes: the same operations on the same inputs.

Only modules called exactly once whose output (a tensor or a tuple/list of tensors) was not
modified in place afterwards are replayed; a module that is never called cannot change the
output at all (:meth:`ForwardTrace.reaches` is false). Models with state across calls (a
decoder's KV cache) are not traced: their forward pass is not one pure call.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["ForwardTrace"]


def _tensors(out: Any) -> list[torch.Tensor] | None:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and out and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    return None


class ForwardTrace:
    """One recorded forward pass of ``root(*inputs)`` (under ``torch.no_grad``)."""

    def __init__(self, root: nn.Module, inputs: tuple[Any, ...]) -> None:
        self.root = root
        self.inputs = inputs
        self.modules: dict[str, nn.Module] = dict(root.named_modules())
        self.names: dict[int, str] = {id(m): n for n, m in self.modules.items()}
        self._replay_sets: dict[frozenset[str], list[str]] = {}
        self.start: dict[str, int] = {}
        self.end: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.outputs: dict[str, Any] = {}
        #: Embedding name → the ids it was called with (to quantise only the rows read).
        self.embedding_ids: dict[str, torch.Tensor] = {}
        versions: dict[str, list[int]] = {}
        tick = itertools.count()

        def pre(module: nn.Module, args: tuple) -> None:
            name = self.names[id(module)]
            self.calls[name] = self.calls.get(name, 0) + 1
            self.start.setdefault(name, next(tick))
            if isinstance(module, nn.Embedding) and args and isinstance(args[0], torch.Tensor):
                self.embedding_ids[name] = args[0]

        def post(module: nn.Module, _args: tuple, out: Any) -> None:
            name = self.names[id(module)]
            self.end[name] = next(tick)
            tensors = _tensors(out)
            if tensors is not None:
                self.outputs[name] = out
                versions[name] = [t._version for t in tensors]

        hooks = []
        for module in root.modules():
            hooks.append(module.register_forward_pre_hook(pre))
            hooks.append(module.register_forward_hook(post))
        try:
            with torch.no_grad():
                self.out = root(*inputs)
        finally:
            for h in hooks:
                h.remove()
        # An output changed in place after it was returned is not what the module computed.
        for name, before in versions.items():
            if [t._version for t in _tensors(self.outputs[name]) or []] != before:
                del self.outputs[name]

    def name_of(self, module: nn.Module) -> str:
        return self.names[id(module)]

    def reaches(self, modules: Iterable[nn.Module]) -> bool:
        """Whether any of ``modules`` took part in the forward pass (else changing them cannot
        change the output)."""
        return any(self.name_of(m) in self.start for m in modules)

    def replay_set(self, modules: Iterable[nn.Module]) -> list[str]:
        """The top-most modules that finished before the first of ``modules`` started and can
        return their recorded output."""
        key = frozenset(self.name_of(m) for m in modules)
        if key not in self._replay_sets:
            self._replay_sets[key] = self._replay_set(key)
        return self._replay_sets[key]

    def _replay_set(self, changed: frozenset[str]) -> list[str]:
        starts = [self.start[n] for n in changed if n in self.start]
        if not starts:
            return []
        first = min(starts)
        chosen: list[str] = []
        covered: set[str] = set()
        for name in self.names.values():  # parents come before their children
            if not name or self.calls.get(name) != 1 or name not in self.outputs or self.end[name] >= first:
                continue
            parts = name.split(".")
            if any(".".join(parts[:i]) in covered for i in range(1, len(parts))):
                continue
            covered.add(name)
            chosen.append(name)
        return chosen

    @contextlib.contextmanager
    def replaying(self, modules: Iterable[nn.Module]) -> Iterator[list[str]]:
        """Within the block, the modules of :meth:`replay_set` return their recorded outputs."""
        patched: list[tuple[nn.Module, Any]] = []
        names = self.replay_set(list(modules))
        try:
            for name in names:
                module = self.modules[name]
                patched.append((module, module.__dict__.get("forward")))
                recorded = self.outputs[name]
                module.forward = lambda *_a, _out=recorded, **_k: _out  # type: ignore[method-assign]
            yield names
        finally:
            for module, previous in reversed(patched):
                if previous is None:
                    del module.forward
                else:
                    module.forward = previous  # type: ignore[method-assign]

    def run(self) -> Any:
        """``root(*inputs)`` under ``torch.no_grad``."""
        with torch.no_grad():
            return self.root(*self.inputs)
