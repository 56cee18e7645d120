"""Model surgery: replace each peft LoRA layer of a loaded model with a method's own module.

Methods whose adapters peft cannot express (O-LoRA's per-task LoRAs, all active at once; MoELoRA's
routed experts) take the peft layer's frozen base layer, rank, scaling and dropout, and put their module
in its place. The rest of the peft model (the wrapper, the projector in ``modules_to_save``) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cvqa_bench.config import ConfigError

ADAPTER = "default"  # the one adapter models/load.py creates


@dataclass
class LoraSite:
    """One peft LoRA layer: what a replacement needs of it."""

    name: str  # module name in the model
    base_layer: torch.nn.Module  # the frozen linear layer
    r: int
    alpha: float
    scaling: float  # alpha / r
    dropout: torch.nn.Module
    lora_A: torch.Tensor  # (r, in), as peft initialised it
    lora_B: torch.Tensor  # (out, r)

    @property
    def in_features(self) -> int:
        return int(self.lora_A.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.lora_B.shape[0])


def lora_sites(model: torch.nn.Module) -> list[LoraSite]:
    """Every peft LoRA layer of ``model`` in ``named_modules`` order."""
    from peft.tuners.lora import LoraLayer

    sites = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            sites.append(LoraSite(
                name=name, base_layer=module.get_base_layer(), r=int(module.r[ADAPTER]),
                alpha=float(module.lora_alpha[ADAPTER]), scaling=float(module.scaling[ADAPTER]),
                dropout=module.lora_dropout[ADAPTER], lora_A=module.lora_A[ADAPTER].weight.detach(),
                lora_B=module.lora_B[ADAPTER].weight.detach(),
            ))
    return sites


def replace_lora_layers(model: torch.nn.Module, build: Callable[[LoraSite], torch.nn.Module],
                        method: str) -> list[torch.nn.Module]:
    """Put ``build(site)`` in place of every peft LoRA layer; returns the new modules in model order.

    Raises ConfigError when the model has no LoRA layer (full training: ``model.lora: null``).
    """
    sites = lora_sites(model)
    if not sites:
        raise ConfigError(f"method {method!r} adds its own LoRA modules and needs model.lora to be set "
                          "(the model has no LoRA layer)")
    built = []
    for site in sites:
        parent_name, _, child = site.name.rpartition(".")
        module = build(site)
        setattr(model.get_submodule(parent_name), child, module)
        built.append(module)
    return built


def parameter_names(model: torch.nn.Module) -> dict[int, str]:
    """id(parameter) -> its name in ``model`` (to name the tensors of replaced modules)."""
    return {id(p): n for n, p in model.named_parameters()}
