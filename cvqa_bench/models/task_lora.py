"""One LoRA per task on a frozen linear layer, the first ``active`` of them summed (O-LoRA's layer).

``y = W x + scaling * sum_{t < active} B_t A_t dropout(x)``. Task 0's LoRA starts as the peft layer it
replaces (same A, B = 0); every later one is drawn like peft's default init (Kaiming-uniform A, B = 0)
when the model is prepared, so a run draws them once, in a fixed order, whatever is resumed later.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvqa_bench.models.surgery import LoraSite


class TaskLoRALinear(torch.nn.Module):
    """A frozen linear layer plus ``n_tasks`` LoRAs (``lora_A.<t>``: (r, in), ``lora_B.<t>``: (out, r))."""

    def __init__(self, site: LoraSite, n_tasks: int) -> None:
        super().__init__()
        self.base_layer = site.base_layer
        self.dropout = site.dropout
        self.scaling = site.scaling
        self.active = 0  # how many task LoRAs the forward adds (0 = the base layer; B = 0 gives the same)
        dtype, device = site.lora_A.dtype, site.lora_A.device
        self.lora_A = torch.nn.ParameterList()
        self.lora_B = torch.nn.ParameterList()
        for task in range(n_tasks):
            a = site.lora_A.clone() if task == 0 else torch.empty(site.r, site.in_features, dtype=dtype, device=device)
            if task:
                torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # peft's init of lora_A
            self.lora_A.append(torch.nn.Parameter(a))
            self.lora_B.append(torch.nn.Parameter(torch.zeros(site.out_features, site.r, dtype=dtype, device=device)))

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if not self.active:
            return result
        out_dtype = result.dtype
        h = self.dropout(x.to(self.lora_A[0].dtype))
        for task in range(self.active):
            result = result + F.linear(F.linear(h, self.lora_A[task]), self.lora_B[task]) * self.scaling
        return result.to(out_dtype)
