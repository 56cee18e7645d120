"""A two-wide model with a projector and one q_proj that peft puts a LoRA on (O-LoRA and MoELoRA tests)."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model


class Tiny(torch.nn.Module):
    """A projector and one linear layer that peft puts a LoRA on."""

    def __init__(self) -> None:
        super().__init__()
        self.multi_modal_projector = torch.nn.Linear(2, 2)
        self.q_proj = torch.nn.Linear(2, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_proj(self.multi_modal_projector(x))


def peft_tiny(r: int = 1) -> torch.nn.Module:
    """Tiny with a seeded rank-r LoRA on q_proj and a trainable projector copy."""
    torch.manual_seed(0)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj"], modules_to_save=["multi_modal_projector"])
    return get_peft_model(Tiny(), config)
