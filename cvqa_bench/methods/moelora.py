"""MoELoRA as CoIN runs it: every LoRA layer becomes a set of LoRA experts mixed by a softmax router.

The model surgery is ``models/moelora.py``; training is then plain sequential fine-tuning of the
experts, routers and projector (CoIN's ``Train_MOE`` scripts: ``--expert_num 8`` with the LoRA rank
split over the experts). Defaults are CoIN's: 8 experts, a dense softmax router without bias.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.config import ConfigError
from cvqa_bench.methods.base import Method, TaskInfo
from cvqa_bench.models.moelora import MoELoRALinear
from cvqa_bench.models.surgery import replace_lora_layers


class MoELoRAOptions(BaseModel):
    """Options of the ``moelora`` method."""

    model_config = ConfigDict(extra="forbid")

    experts: int = Field(8, ge=1, description="LoRA experts per layer (CoIN: 8); the LoRA rank must be a multiple")
    top_k: int | None = Field(None, ge=1, description="keep the k largest router weights per token, renormalised; "
                              "null = dense softmax over every expert, as CoIN")


class MoELoRA(Method):
    """CoIN's MoELoRA: LoRA experts per layer mixed by a learned softmax router over the layer input."""

    name = "moelora"
    Options = MoELoRAOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.layers: list[MoELoRALinear] = []

    def check_model(self, model: Any) -> None:
        """The model needs LoRA, with a rank that is a multiple of the expert count."""
        if model.lora is None:
            raise ValueError("MoELoRA splits the LoRA into experts and needs model.lora (it is null: full training)")
        if model.lora.r % self.options.experts:
            raise ValueError(f"model.lora.r ({model.lora.r}) must be a multiple of experts ({self.options.experts})")

    def prepare_model(self, model: torch.nn.Module, tasks: list[TaskInfo]) -> None:
        """Replace every peft LoRA layer with ``experts`` experts of rank r / experts and a router."""
        opts = self.options

        def build(site: Any) -> MoELoRALinear:
            if site.r % opts.experts:
                raise ConfigError(f"method moelora: model.lora.r ({site.r}) must be a multiple of "
                                  f"method.options.experts ({opts.experts})")
            return MoELoRALinear(site, opts.experts, opts.top_k)

        self.layers = replace_lora_layers(model, build, self.name)

    def records(self) -> dict[str, Any]:
        """Expert count, rank per expert and router."""
        rank = int(self.layers[0].lora_A.shape[0]) // self.options.experts if self.layers else None
        return {"experts": self.options.experts, "rank_per_expert": rank, "top_k": self.options.top_k,
                "layers": len(self.layers)}
