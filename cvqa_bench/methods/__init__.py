"""Continual-learning methods: each a small class of hooks on the training loop.

Entries are lazy so that ``cvqa list methods`` never imports torch.
"""

from cvqa_bench.registry import Registry

methods: Registry = Registry("method")

methods.add_lazy("finetune", "cvqa_bench.methods.finetune:Finetune",
                 "plain sequential training of the trainable tensors (LoRA or full)")
methods.add_lazy("ema", "cvqa_bench.methods.ema:FixedEMA",
                 "fixed-weight EMA of the trainable tensors (alpha 0.01), swapped in at task end")
methods.add_lazy("llaca", "cvqa_bench.methods.llaca:LLaCA",
                 "LLaCA: dynamic-alpha EMA from gradient and drift norms + instruction grouping")
methods.add_lazy("replay", "cvqa_bench.methods.replay:Replay",
                 "experience replay: a seeded buffer of earlier tasks' rows mixed into later stages")
