"""What the model tests share: the tiny default model with a LoRA that changes the language model."""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.config import ModelSpec
from cvqa_bench.models.load import load_model


def tiny_with_lora() -> Any:
    """The tiny default (LoRA r=16 on q/v, trainable projector) loaded, with LoRA B drawn from N(0, 0.5) under
    seed 0, so that the language model is not the base one (B starts at zero)."""
    torch.manual_seed(0)
    loaded = load_model(ModelSpec())
    with torch.no_grad():
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return loaded
