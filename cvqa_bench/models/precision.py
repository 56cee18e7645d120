"""Mixed precision as the official CoIN/LLaCA run keeps it: a low-precision base, float32 trainable tensors.

A ``bfloat16`` or ``float16`` run loads the frozen base in that dtype (memory), keeps the trainable
tensors (LoRA A/B, the projector, or the whole LM in full training) in float32 and runs every forward
under ``torch.autocast`` to the low dtype. The matmuls are low precision, while AdamW and the methods'
EMA/α math read and write float32 tensors: the official run (LLaVA's train.py under DeepSpeed bf16)
keeps float32 master weights, and an update of a bf16 tensor at lr 2e-5 is mostly rounded away. One
difference remains: DeepSpeed's forward is bf16 throughout, autocast runs the ops on its float32 list
(softmax, norms, the loss) in float32.

A float32 model is never touched: no cast, no attribute, no wrapped forward.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Any

import torch

LOW_DTYPES = (torch.bfloat16, torch.float16)
# A plain attribute on the model load_model returns (the peft wrapper when there is one); train.py reads
# it before the Trainer wraps the model in DDP.
COMPUTE_DTYPE_ATTR = "cvqa_compute_dtype"


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the model computes in: the low dtype recorded by :func:`keep_trainables_fp32`, else the
    dtype of its first floating-point tensor (a float32 model: float32)."""
    recorded = getattr(model, COMPUTE_DTYPE_ATTR, None)
    if recorded is not None:
        return recorded
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


def trainable_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's trainable tensors (that of its first floating tensor when none is trainable)."""
    first = next((p for p in model.parameters() if p.requires_grad), None)
    return first.dtype if first is not None else compute_dtype(model)


def keep_trainables_fp32(model: torch.nn.Module) -> torch.dtype:
    """Make a bf16/fp16 model train with float32 trainable tensors and autocast forwards; returns the
    dtype of the trainable tensors afterwards.

    Call after the trainable tensors are marked (LoRA applied). The frozen tensors keep the low dtype,
    the compute dtype is recorded on ``model`` (:func:`compute_dtype`) and the forward of the underlying
    ``LlavaForConditionalGeneration`` autocasts to it, so every caller (the Trainer, generation, the
    benchmarks) computes alike. A model whose frozen tensors are float32 (or wider) is left as it is.
    """
    low = _base_dtype(model)
    if low not in LOW_DTYPES:
        return trainable_dtype(model)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                # In place on .data: the Parameter objects (and everything holding them, such as
                # peft's modules_to_save wrapper) stay the same.
                param.data = param.data.float()
    setattr(model, COMPUTE_DTYPE_ATTR, low)
    _autocast_forward(_base_module(model), low)
    return torch.float32


def autocast_for(model: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
    """A context in which the model computes in its low dtype: ``torch.autocast`` on the model's device for a
    model prepared by :func:`keep_trainables_fp32`, a no-op context for any other model."""
    low = getattr(model, COMPUTE_DTYPE_ATTR, None)
    if low is None:
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    return torch.autocast(device_type=device.type, dtype=low)


def _base_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the frozen tensors (of the first floating tensor when every tensor is trainable)."""
    floating = [p for p in model.parameters() if p.is_floating_point()]
    frozen = next((p for p in floating if not p.requires_grad), None)
    return (frozen if frozen is not None else floating[0]).dtype


def _base_module(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (the model itself without one).

    ``generate`` calls this module's forward directly, bypassing the peft wrapper's, so the autocast
    must sit on it to cover training and generation alike.
    """
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _autocast_forward(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Wrap ``module.forward`` (an instance attribute, as accelerate does) so that it runs under autocast."""
    if getattr(module.forward, "cvqa_autocast", None) == dtype:
        return
    forward = module.forward.__func__  # type: ignore[attr-defined]

    # A method bound to the module (not a closure over it), so that a deep copy calls its own forward.
    @functools.wraps(forward)
    def autocast_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        device = next(self.parameters()).device  # read per call: the model moves after loading
        with torch.autocast(device_type=device.type, dtype=dtype):
            return forward(self, *args, **kwargs)

    autocast_forward.cvqa_autocast = dtype  # type: ignore[attr-defined]
    module.forward = types.MethodType(autocast_forward, module)  # type: ignore[method-assign]
