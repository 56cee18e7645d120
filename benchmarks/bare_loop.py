"""Benchmark: the default job through the harness (`cvqa run`) against the same work in a bare PyTorch loop.

Each side is a fresh process: the harness runs ``cvqa run --config CONFIG`` into a removed folder, the bare
side ``cvqa_bench/bench/bare_loop.py``'s loop (same model, data order, optimizer, schedule, clipping, LLaCA
EMA/alpha update, generation, cell reuse and scorers). After one untimed warm-up of each (caches of data,
model, vision features), ``--pairs`` pairs run interleaved, alternating which side goes first; every pair
asserts that both wrote the same final trainable tensors of every stage, the same predictions and the same
matrix. Per side: CPU time (user + system of the process, from ``wait4``; also apart, with the minor page
faults) and wall time; their medians; the harness/bare ratio of the medians and the median of the per-pair
ratios. Both sides get ``OMP_NUM_THREADS=--threads`` (1: the issue's measurement)::

    .venv/bin/python benchmarks/bare_loop.py --pairs 3 --out benchmarks/results/bare-loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Run the pairs, check every pair's outputs, print (and optionally write) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of both sides")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    parser.add_argument("--once", default=None, help=argparse.SUPPRESS)  # the bare side: run once into this folder
    args = parser.parse_args()
    if args.once:
        from cvqa_bench.bench.bare_loop import bare_run, save_result

        save_result(bare_run(args.config), Path(args.once))
        return
    from cvqa_bench.bench.bare_loop import compare_with_run
    from cvqa_bench.bench.processes import timed

    load = os.getloadavg()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    work = Path(tempfile.mkdtemp(prefix="bare-loop-"))
    commands = {
        "harness": [str(ROOT / ".venv/bin/cvqa"), "run", "--config", args.config, "--out", str(work / "harness")],
        "bare": [sys.executable, str(Path(__file__).resolve()), "--config", args.config, "--once", str(work / "bare")],
    }

    def run(side: str) -> dict[str, float]:
        shutil.rmtree(work / side, ignore_errors=True)
        return timed(commands[side], ROOT, env)

    if not args.no_warmup:
        for side in commands:
            run(side)
    times: dict[str, list[dict[str, float]]] = {"harness": [], "bare": []}
    checks = []
    for pair in range(args.pairs):
        for side in ("harness", "bare") if pair % 2 == 0 else ("bare", "harness"):
            times[side].append(run(side))
        checks.append(compare_with_run(work / "bare", work / "harness"))  # raises when anything differs
    shutil.rmtree(work, ignore_errors=True)
    kinds = ("cpu", "wall", "user", "sys", "minor_faults")
    median = {side: {kind: statistics.median(t[kind] for t in rows) for kind in kinds} for side, rows in times.items()}
    # a pair's two runs are neighbours in time: their ratio cancels the machine's slow drift between pairs
    pair_ratios = [round(h["cpu"] / b["cpu"], 3) for h, b in zip(times["harness"], times["bare"], strict=True)]
    result: dict[str, Any] = {
        "config": args.config, "threads": args.threads, "pairs": args.pairs, "cpu_count": os.cpu_count(),
        "load_before": load, "load_after": os.getloadavg(),
        "order": "harness bare, bare harness, ... (interleaved, alternating)",
        "commands": {side: " ".join(c) for side, c in commands.items()},
        "seconds": times, "median": median,
        "ratio_cpu": round(median["harness"]["cpu"] / median["bare"]["cpu"], 3),
        "ratio_wall": round(median["harness"]["wall"] / median["bare"]["wall"], 3),
        "ratio_cpu_per_pair": pair_ratios, "ratio_cpu_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "identical": checks[-1], "identical_every_pair": len(checks) == args.pairs,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
