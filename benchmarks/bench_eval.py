"""Benchmark: evaluation at CoIN scale (issue 17), each pair measured in one process, interleaved.

1. matrix cells generated vs reused, llaca vs finetune, on the config's sequence (the methods' weight plans);
2. evaluation questions/s with and without the vision-feature cache (and sorted by prompt length),
   with the agreement of the predictions;
3. training step time with the per-batch collator, with rows encoded once per stage, and with rows encoded
   once on vision features computed once per image, with whether the three give the same losses.

``--out FILE`` writes JSON whose top-level ``questions_per_s`` and ``step_seconds`` are what
``cvqa plan --throughput FILE`` reads (``step_seconds``: rows encoded once, on pixels, as one epoch over
distinct images trains). Committed results: ``benchmarks/results/bench-eval-*.json``.

Measured on the 2-core CPU, each variant in the same process, interleaved:
- tiny model, float32, 1 torch thread (``bench-eval-tiny.json``): cells on configs/default.yaml llaca 26
  generated / 16 reused of 42, finetune 42 / 0; 128 questions at batch 32, 8 new tokens: 423 q/s encoded
  per call without the cache, 580 q/s encoded once on cached features (1.37x), predictions identical
  (agreement 1.0), sorted by length 633 q/s, identical too; training step (batch 16): per-batch collate
  32.9 ms (7.4 ms of it collating), encoded once 29.1 ms (1.13x), on features computed once 23.8 ms
  (1.22x more; the 512 images' features took 0.06 s), the same loss at every step for all three;
- mid model (configs/models/mid.yaml, 243M parameters, ViT-B/16-sized tower, 196 image tokens), float32,
  2 torch threads, ``--parts eval --n-questions 16 --batch-size 16 --repeats 2`` (``bench-eval-mid-cpu.json``):
  0.91 q/s uncached, 1.33 q/s on cached features (1.47x; the tower is a third of the model here), the
  same predictions (agreement 1.0); sorted by length 1.18 q/s (one batch: nothing to reorder), identical.

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
