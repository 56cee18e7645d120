"""One LoRA per task on a frozen linear layer, the first ``active`` of them summed (O-LoRA's layer).

``y = W x + scaling * sum_{t < active} B_t A_t dropout(x)``. By default each task's LoRA has the peft
layer's rank and scaling; task 0's starts as the peft layer it replaces (same A, B = 0) and every later one
is drawn like peft's default init (Kaiming-uniform A, B = 0) when the model is prepared, so a run draws
them once, in a fixed order, whatever is resumed later. ``rank``, ``scaling`` and ``init`` (``kaiming``:
every task drawn, ``normal``: A ~ N(0, 0.01^2)) set other conventions; ``current_only`` adds only the
newest active LoRA while the module is in training mode (MCITlib's O-LoRA), every active one in eval mode.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from cvqa_bench.models.surgery import LoraSite

NORMAL_INIT_STD = 0.01  # MCITlib's O-LoRA: nn.init.normal_(loraA.weight, mean=0.0, std=0.01)


class TaskLoRALinear(torch.nn.Module):
    """A frozen linear layer plus ``n_tasks`` LoRAs (``lora_A.<t>``: (r, in), ``lora_B.<t>``: (out, r))."""

    def __init__(self, site: LoraSite, n_tasks: int, *, rank: int | None = None, scaling: float | None = None,
                 init: Literal["peft", "kaiming", "normal"] = "peft", current_only: bool = False) -> None:
        super().__init__()
        self.base_layer = site.base_layer
        self.dropout = site.dropout
        self.scaling = site.scaling if scaling is None else scaling
        self.current_only = current_only
        self.active = 0  # how many task LoRAs the forward adds (0 = the base layer; B = 0 gives the same)
        r = site.r if rank is None else rank
        if init == "peft" and r != site.r:
            raise ValueError(f"init 'peft' copies the peft layer's A (rank {site.r}); rank {r} needs another init")
        dtype, device = site.lora_A.dtype, site.lora_A.device
        self.lora_A = torch.nn.ParameterList()
        self.lora_B = torch.nn.ParameterList()
        for task in range(n_tasks):
            if init == "peft" and task == 0:
                a = site.lora_A.clone()
            else:
                a = torch.empty(r, site.in_features, dtype=dtype, device=device)
                if init == "normal":
                    torch.nn.init.normal_(a, mean=0.0, std=NORMAL_INIT_STD)
                else:
                    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # peft's init of lora_A
            self.lora_A.append(torch.nn.Parameter(a))
            self.lora_B.append(torch.nn.Parameter(torch.zeros(site.out_features, r, dtype=dtype, device=device)))

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if not self.active:
            return result
        out_dtype = result.dtype
        h = self.dropout(x.to(self.lora_A[0].dtype))
        first = self.active - 1 if self.current_only and self.training else 0
        for task in range(first, self.active):
            result = result + F.linear(F.linear(h, self.lora_A[task]), self.lora_B[task]) * self.scaling
        return result.to(out_dtype)
