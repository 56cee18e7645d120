"""Benchmark: training-step time and state memory of each continual-learning method (issue 5).

Times forward + backward + AdamW step + the method's ``after_optimizer_step`` hook on one model and one
batch, methods interleaved round-robin (``cvqa_bench.bench.bench_methods``), prints a table and
optionally writes the full result as JSON. Targets: llaca <= 1.05x finetune per step, llaca state
<= 2x the trainable bytes.

    .venv/bin/python benchmarks/bench_methods.py [--tiny configs/models/tiny.yaml | --path DIR]
        [--dtype float32] [--batch-size 8] [--steps 120] [--warmup 5] [--rounds STEPS] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

from cvqa_bench.bench.common import add_model_arguments
from cvqa_bench.bench.methods import bench_methods
from cvqa_bench.config import LoraSpec, ModelSpec
from cvqa_bench.io import atomic_write_json


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--full", action="store_true", help="full-parameter training of the LM instead of LoRA")
    parser.add_argument("--lora-targets", default=None, help="LoRA target regex (default: LM q_proj/v_proj)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=120, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method first")
    parser.add_argument("--rounds", type=int, default=None,
                        help="round-robin blocks the timed steps are split into (default: one step per block)")
    parser.add_argument("--methods", nargs="+", default=["finetune", "ema", "llaca", "replay", "ewc", "lwf", "olora",
                                                          "moelora", "eproj"])
    parser.add_argument("--no-llaca-loop", action="store_true", help="skip llaca's per-tensor loop variant")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = torch's default. One is "
                        "as fast on the tiny model (tiny-model.md) and far steadier on a shared machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the result as JSON to this file")
    return parser.parse_args()


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The ModelSpec the options describe."""
    lora = None if args.full else LoraSpec(**({"target_modules": args.lora_targets} if args.lora_targets else {}))
    return ModelSpec(path=args.path, tiny=args.tiny, dtype=args.dtype, lora=lora)  # neither: the tiny default


def print_table(result: dict) -> None:
    """One line per method: median ms/step (quartiles), ratio to finetune, tokens/s, state memory."""
    print(f"{result['device_name']} ({result['torch_threads']} threads), {result['dtype']}, batch "
          f"{result['batch_size']} ({result['tokens_per_step']} tokens), {result['steps']} timed steps per method "
          f"in {result['rounds']} rounds; trainable {result['trainable_params']:,} params "
          f"({result['trainable_bytes'] / 2**20:.2f} MiB)")
    print(f"{'method':<11} {'ms/step':>8} {'p25-p75':>15} {'x finetune':>10} {'tokens/s':>9} "
          f"{'state MiB':>9} {'x trainable':>11} {'set MiB':>8} {'peak MiB':>9}")
    for label, row in result["methods"].items():
        ratio = "-" if row["ratio_vs_finetune"] is None else f"{row['ratio_vs_finetune']:.3f}"
        peak = "-" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**20:.0f}"
        print(f"{label:<11} {row['median_ms']:8.2f} {row['p25_ms']:7.2f}-{row['p75_ms']:<7.2f} {ratio:>10} "
              f"{row['tokens_per_s']:9.0f} {row['state_bytes'] / 2**20:9.3f} {row['copies_ratio']:11.3f} "
              f"{row['trainable_set_bytes'] / 2**20:8.3f} {peak:>9}")
    if result["llaca_fused_vs_loop"] is not None:
        print(f"llaca fused / loop: {result['llaca_fused_vs_loop']:.3f}")
    targets = result["targets"]
    print(f"targets: llaca step <= {targets['llaca_step_ratio_max']}x finetune: {targets['llaca_step_ok']}; "
          f"llaca state <= {targets['llaca_state_ratio_max']}x trainable: {targets['llaca_state_ok']}")


def main() -> None:
    """Run the benchmark, print the table, write JSON if asked."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_methods(
        model_spec(args), batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
        methods=tuple(args.methods), seed=args.seed, rounds=args.rounds,
        compare_llaca_loop=not args.no_llaca_loop, device=args.device,
    )
    print_table(result)
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
