"""CoIN's MoELoRA layer: LoRA experts on a frozen linear layer, mixed by a softmax router over its input.

As CoIN's ``CoINMOELoraLinear`` (``CoIN/peft/tuners/coinmoelora.py``): the LoRA rank r is split into
``experts`` experts of rank r / experts; expert e has ``A_e`` (r/E, in) drawn from N(0, 0.01^2) and
``B_e`` (out, r/E) = 0 (stored stacked: one (r, in) and one (out, r) tensor per layer); the router is a bias-free linear layer (in -> E, nn.Linear's default init) on
the layer input, and

    y = W x + scaling * sum_e softmax(R x)_e * B_e A_e dropout(x),    scaling = alpha / r.

``top_k`` (not in CoIN, whose router is dense) keeps the k largest router weights per token and
renormalises them to sum to 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvqa_bench.models.surgery import LoraSite

A_INIT_STD = 0.01  # CoIN: nn.init.normal_(loraA.weight, mean=0.0, std=0.01)


def router_weights(x: torch.Tensor, router: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """Per-token expert weights ``softmax(x @ router.T)`` [..., E], optionally only the top k, renormalised."""
    gate = torch.softmax(F.linear(x, router), dim=-1)
    if top_k is not None and top_k < gate.shape[-1]:
        kept, index = gate.topk(top_k, dim=-1)
        gate = torch.zeros_like(gate).scatter(-1, index, kept / kept.sum(dim=-1, keepdim=True))
    return gate


def mixed_delta(x: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, router: torch.Tensor,
                scaling: float, top_k: int | None = None,
                dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """``scaling * sum_e gate_e(x) * B_e A_e dropout(x)``: what the experts add to the base layer's output.

    The E experts (E = router rows) of rank k are stacked: ``lora_A`` (E*k, in) holds expert e's A in rows
    e*k..(e+1)*k, ``lora_B`` (out, E*k) its B in the same columns, so the sum is two matmuls with the gate
    applied in between. CoIN routes the layer input itself; dropout is on the experts' branch only.
    """
    gate = router_weights(x, router, top_k)
    down = F.linear(dropout(x) if dropout is not None else x, lora_A)  # [..., E*k]
    down = (down.unflatten(-1, (router.shape[0], -1)) * gate.unsqueeze(-1)).flatten(-2)
    return F.linear(down, lora_B) * scaling


class MoELoRALinear(torch.nn.Module):
    """A frozen linear layer plus ``experts`` stacked LoRA experts (``lora_A``, ``lora_B``) and ``lora_router``."""

    def __init__(self, site: LoraSite, experts: int, top_k: int | None = None) -> None:
        super().__init__()
        if experts < 1 or site.r % experts:
            raise ValueError(f"the LoRA rank ({site.r}) must be a multiple of the expert count ({experts})")
        self.base_layer = site.base_layer
        self.dropout = site.dropout
        self.scaling = site.scaling
        self.top_k = top_k
        dtype, device = site.lora_A.dtype, site.lora_A.device
        # r = experts x (r / experts) rows: the experts together are as big as the LoRA they replace
        self.lora_A = torch.nn.Parameter(torch.randn(site.r, site.in_features, dtype=dtype, device=device) * A_INIT_STD)
        self.lora_B = torch.nn.Parameter(torch.zeros(site.out_features, site.r, dtype=dtype, device=device))
        router = torch.empty(experts, site.in_features, dtype=dtype, device=device)
        torch.nn.init.kaiming_uniform_(router, a=math.sqrt(5))  # nn.Linear's default, as CoIN's router
        self.lora_router = torch.nn.Parameter(router)

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        out_dtype = result.dtype
        delta = mixed_delta(x.to(self.lora_router.dtype), self.lora_A, self.lora_B, self.lora_router, self.scaling,
                            self.top_k, self.dropout)
        return (result + delta).to(out_dtype)
