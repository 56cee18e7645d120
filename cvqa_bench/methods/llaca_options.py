"""The options of the ``llaca`` method: ablation switches, grouping threshold, schedule and numerics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.ema_update import ALPHA_NUMERATOR_SCALE, FALLBACK_ALPHA
from cvqa_bench.methods.llaca_plan import TaskOverride

# The official code's threshold per instruction folder (Instructions -> 0.9, the variants -> 0.3).
THRESHOLD_BY_STYLE = {"original": 0.9, "diverse": 0.3}
# (alpha_scale, fallback) per variant: the ICML code (JingyangQiao/CoIN CoIN/peft/tuners/lora.py:645,649) and
# Continual-NExT (ECNU-SII/Continual-NExT peft/tuners/lora/model.py:964, base_weight 0.001 in
# peft/tuners/lora/config.py:537 and scripts/train/*_train_cia.sh)
VARIANTS = {"icml": (ALPHA_NUMERATOR_SCALE, FALLBACK_ALPHA), "continual-next": (0.01, 0.001)}


class LLaCAOptions(BaseModel):
    """Options of the ``llaca`` method."""

    model_config = ConfigDict(extra="forbid")

    grouping: bool = Field(True, description="instruction grouping; off = one group, dynamic EMA on every task")
    ema: Literal["dynamic", "stable", "off"] = Field(
        "dynamic", description="dynamic: LLaCA's alpha; stable: fixed alpha = fallback (weight 0.99 on the "
        "old weights); off: no EMA (with grouping on: grouping alone)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="join a group at this mean TF-IDF similarity; null = by the sequence's "
        "instruction_style, as the official code picks it: 0.90 original CoIN instructions, 0.30 diverse / 10-type"
    )
    variant: Literal["icml", "continual-next"] = Field(
        "icml", description="alpha_scale and fallback of a reference code: icml 2 and 0.01 (JingyangQiao/CoIN), "
        "continual-next 0.01 and 0.001 (ECNU-SII/Continual-NExT); an explicit alpha_scale or fallback wins")
    alpha_scale: float | None = Field(None, gt=0, description="the factor in alpha = scale (1 + b) / (a c); "
                                      "null = the variant's")
    fallback: float | None = Field(None, gt=0, lt=1, description="alpha when the dynamic one is unusable (and the "
                                   "stable ablation's alpha); null = the variant's")
    ema_dtype: Literal["float32", "param"] = Field(
        "float32", description="float32: the EMA copy and gradients in float32; param: in the model's dtype, as the "
        "official bf16 run keeps them (its EMA is a deepcopy of the bf16 parameter)")
    alpha_gradient: Literal["step", "micro_batch"] = Field(
        "step", description="the gradient alpha reads: step = the accumulated (all-reduced) gradient of the "
        "optimizer step; micro_batch = the last micro-batch's gradient alone, as p.grad holds it under DeepSpeed "
        "bf16 with gradient accumulation (docs/protocol.md)")
    schedule: Literal["pinned", "computed"] = Field(
        "pinned", description="pinned: the sequence's official schedule rows (tasks/coin8*.yaml), when it has them; "
        "computed: TF-IDF grouping, and the tasks where it differs from the pinned rows are named")
    fused: bool = Field(True, description="torch._foreach update (no host sync); false = per-tensor loop")
    overrides: dict[str, TaskOverride] = Field(default_factory=dict, description="per-task decisions by task name")
