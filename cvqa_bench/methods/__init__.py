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
methods.add_lazy("ewc", "cvqa_bench.methods.ewc:EWC",
                 "online EWC: (lambda/2) sum F (theta - theta*)^2, empirical Fisher accumulated F <- gamma F_old + F_new")
methods.add_lazy("lwf", "cvqa_bench.methods.lwf:LwF",
                 "Learning without Forgetting: T^2-scaled KL to the previous stage's answers on the current rows")
methods.add_lazy("joint", "cvqa_bench.methods.joint:Joint",
                 "multi-task upper bound: one stage (the last) on every task's rows from the base model")
methods.add_lazy("cumulative", "cvqa_bench.methods.joint:Cumulative",
                 "cumulative multi-task: every stage retrains from the base on all tasks seen so far")
methods.add_lazy("olora", "cvqa_bench.methods.olora:OLoRA",
                 "O-LoRA: a new LoRA per task, earlier ones frozen and active, loss + lambda1 sum |A_t A_s^T|")
methods.add_lazy("moelora", "cvqa_bench.methods.moelora:MoELoRA",
                 "CoIN's MoELoRA: LoRA experts per layer (8, rank r/8) mixed by a softmax router over the input")
methods.add_lazy("eproj", "cvqa_bench.methods.eproj:EProj",
                 "EProj: a new projector per task, shared LoRA; test-time projector chosen by instructions")
