"""Benchmark: evaluation at CoIN scale (issue 17), each pair measured in one process, interleaved.

1. matrix cells generated vs reused, llaca vs finetune, on the config's sequence (the methods' weight plans);
2. evaluation questions/s with and without the vision-feature cache (and sorted by prompt length),
   with the agreement of the predictions;
3. training step time with rows encoded once per stage vs the per-batch collator.

``--out FILE`` writes JSON whose top-level ``questions_per_s`` and ``step_seconds`` are what
``cvqa plan --throughput FILE`` reads.

Measured (tiny model, float32, 1 torch thread, the shared 2-core CPU under a load average of 10-18, so
absolute times are inflated and only the pairs are meaningful): cells on configs/default.yaml llaca 26
generated / 16 reused of 42, finetune 42 / 0; 128 questions at batch 32, 8 new tokens: 13.1 q/s
encoded per call without the cache, 16.3 q/s encoded once with cached features (1.24x), predictions
identical (agreement 1.0), sorted by length 16.6 q/s with identical predictions; training step (batch
16): per-batch collate 0.175 s of a 0.871 s step, encoded once 0.022 s of 0.682 s (1.28x; encoding the
512 rows once took 6.1 s).

    .venv/bin/python benchmarks/bench_eval.py [--tiny configs/models/tiny.yaml | --path DIR] [--dtype float32]
        [--config configs/default.yaml] [--n-questions 128] [--steps 20] [--repeats 3] [--threads 1]
        [--parts cells,eval,train] [--out FILE]
"""

from __future__ import annotations

import argparse
import json

import torch

from cvqa_bench.bench.common import add_model_arguments
from cvqa_bench.bench.evaluation import bench_cells, bench_encode_once, bench_eval_cache
from cvqa_bench.config import ModelSpec
from cvqa_bench.io import atomic_write_json


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--config", default="configs/default.yaml", help="run config for the cell counts")
    parser.add_argument("--n-questions", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--parts", default="cells,eval,train",
                        help="comma-separated subset of cells,eval,train (the mid model trains far too slowly on a CPU)")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    return parser.parse_args()


def main() -> None:
    """Run the three benchmarks and print (and optionally write) the JSON result."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    spec = ModelSpec(path=args.path, tiny=args.tiny, dtype=args.dtype)
    parts = set(args.parts.split(","))
    result: dict = {}
    if "cells" in parts:
        result["cells"] = bench_cells(args.config)
    if "eval" in parts:
        result["evaluation"] = bench_eval_cache(spec, n_questions=args.n_questions, batch_size=args.batch_size,
                                                max_new_tokens=args.max_new_tokens, repeats=args.repeats,
                                                device=args.device)
        result["questions_per_s"] = result["evaluation"]["questions_per_s"]
    if "train" in parts:
        result["training"] = bench_encode_once(spec, steps=args.steps, repeats=args.repeats, device=args.device)
        result["step_seconds"] = result["training"]["step_seconds"]
    print(json.dumps(result, indent=1))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
