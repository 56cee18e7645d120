"""Sequential fine-tuning: the lower bound of every continual-learning table."""

from __future__ import annotations

from cvqa_bench.methods.base import Method


class Finetune(Method):
    """Plain sequential training of the trainable tensors (LoRA or full), no hooks."""

    name = "finetune"
