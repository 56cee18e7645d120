"""Benchmark: batched greedy-generation throughput through ``generate_predictions`` (issue 8).

Questions/s at each batch size on the same questions, the speed-up over the first batch size, and
whether batched predictions equal the unbatched ones (``cvqa_bench.bench.bench_generation``). Target on
the CPU tiny model: batch 32 >= 8x batch 1.

    .venv/bin/python benchmarks/bench_generation.py [--tiny configs/models/tiny.yaml | --path DIR]
        [--batch-sizes 1 8 32] [--n-questions 128] [--max-new-tokens 8] [--repeats 3] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

from cvqa_bench.bench.common import add_model_arguments
from cvqa_bench.bench.generation import bench_generation
from cvqa_bench.config import ModelSpec
from cvqa_bench.io import atomic_write_json


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32],
                        help="the first one is the reference the others are compared with")
    parser.add_argument("--n-questions", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size (median reported)")
    parser.add_argument("--no-force-length", action="store_true",
                        help="let answers stop at end-of-sequence instead of forcing max-new-tokens")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = torch's default. Two "
                        "threads on a busy 2-core machine made batch 1 about 5x slower than one thread")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the result as JSON to this file")
    return parser.parse_args()


def print_table(result: dict) -> None:
    """One line per batch size: seconds, questions/s, speed-up, agreement with the reference."""
    print(f"{result['device_name']} ({result['torch_threads']} threads), {result['dtype']}, "
          f"{result['n_questions']} questions, {result['max_new_tokens']} new tokens "
          f"({'forced' if result['force_length'] else 'until end-of-sequence'}), median of {result['repeats']}")
    print(f"{'batch':>5} {'seconds':>8} {'min-max':>15} {'questions/s':>11} {'speed-up':>8} {'agreement':>9}")
    for run in result["runs"]:
        print(f"{run['batch_size']:>5} {run['seconds']:8.3f} {run['min_seconds']:7.3f}-{run['max_seconds']:<7.3f} "
              f"{run['questions_per_s']:11.1f} {run['speedup']:7.2f}x {run['agreement']:9.3f}")
    targets = result["targets"]
    print(f"target: largest batch >= {targets['speedup_min']}x batch 1: {targets['speedup_ok']}")


def main() -> None:
    """Run the benchmark, print the table, write JSON if asked."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ModelSpec(path=args.path, tiny=args.tiny, dtype=args.dtype)  # neither given: the tiny default
    result = bench_generation(
        spec, batch_sizes=tuple(args.batch_sizes), n_questions=args.n_questions,
        max_new_tokens=args.max_new_tokens, repeats=args.repeats, force_length=not args.no_force_length,
        seed=args.seed, device=args.device,
    )
    print_table(result)
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
