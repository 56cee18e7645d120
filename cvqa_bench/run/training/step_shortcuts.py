"""Cheaper equivalents of three per-step calls of the HF Trainer loop, on one process only.

Every optimizer step the Trainer calls ``model.train()`` (a walk over every module), ``model.zero_grad()``
(a walk over every parameter, frozen ones included) and ``accelerator.clip_grad_norm_(model.parameters())``
(the same walk again). On the tiny default model these walks cost more than a quarter of a millisecond
each, 1800 times per run. Here, for the duration of one ``trainer.train()``:

- ``model.train()`` returns at once when every module is already in training mode (nothing would change);
  otherwise, or for ``train(False)``, the model's own ``train`` runs. Only when no module class overrides
  ``train`` with side effects beyond the flag (e.g. peft's DoRA clears a cache on every call): the
  shortcut is not installed otherwise.
- ``model.zero_grad()`` (``set_to_none``, torch's default) sets to ``None`` the gradients of the tensors
  that required a gradient when the stage began, the only ones autograd can give one.
- the Trainer clips over the same tensors, in the model's parameter order
  (``loss_hook.MethodTrainer._clip_grad_norm``): ``clip_grad_norm_`` skips tensors without a gradient,
  so the norm, the clipping and the order of the per-tensor norms are the same.

``accelerate`` asks ``importlib.util.find_spec("lomo_optim")`` twice per optimizer step (a scan of
``sys.path``). When that package is not installed, the name is blocked in ``sys.modules`` for the stage
(``None``: Python's documented "not importable" entry, which ``find_spec`` answers without a scan) and
unblocked after.

Not used under a multi-process launch (DDP wraps the model and owns its own walks). The same bytes as
without the shortcuts: tests/run/test_step_shortcuts.py runs a stage both ways.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

import torch

ENABLED = True  # tests switch it off to compare with the Trainer's own calls
LOMO = "lomo_optim"


def plain_train(module: torch.nn.Module) -> bool:
    """Whether the module's ``train`` only sets the training flag (torch's or transformers' own)."""
    from transformers import PreTrainedModel

    # PreTrainedModel.train also sets kernels_mode from the flag: the same value when nothing changes.
    return type(module).train in (torch.nn.Module.train, PreTrainedModel.train)


@contextlib.contextmanager
def step_shortcuts(model: torch.nn.Module, single_process: bool) -> Iterator[list[torch.nn.Parameter] | None]:
    """Install the shortcuts on ``model`` for the block; yields the tensors to clip over (None: not installed)."""
    if not (ENABLED and single_process):
        yield None
        return
    modules = list(model.modules())
    params = [p for p in model.parameters() if p.requires_grad]
    if any(p.grad is not None for p in model.parameters() if not p.requires_grad):
        yield None  # a frozen tensor holds a gradient (set by hand): only the full walk clears it
        return
    own_train, own_zero_grad = model.train, model.zero_grad

    def train(mode: bool = True) -> torch.nn.Module:
        if mode and all(m.training for m in modules):
            return model
        return own_train(mode)

    def zero_grad(set_to_none: bool = True) -> None:
        if not set_to_none:
            own_zero_grad(set_to_none)
            return
        for param in params:
            param.grad = None

    shortcuts = {"zero_grad": zero_grad, **({"train": train} if all(map(plain_train, modules)) else {})}
    for name, function in shortcuts.items():
        object.__setattr__(model, name, function)  # on this instance only; its class is untouched
    blocked = LOMO not in sys.modules and importlib.util.find_spec(LOMO) is None
    if blocked:
        sys.modules[LOMO] = None  # type: ignore[assignment]
    try:
        yield params
    finally:
        if blocked and sys.modules.get(LOMO, 0) is None:
            del sys.modules[LOMO]
        for name in shortcuts:
            object.__delattr__(model, name)
