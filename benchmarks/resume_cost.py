"""Benchmark: ``--resume`` of a finished run (nothing to redo) on two checkouts, timed in pairs, interleaved.

Each side is a checkout (run with this virtual environment's python, ``PYTHONPATH`` = the checkout, in its
folder) and a run folder that checkout finished with ``--config``; a missing run folder is made first,
untimed. Each side then resumes once untimed (warm file caches, the stat cache of image hashes), and
``--pairs`` timed pairs follow, A B, B A, A B, ... Every resume must leave the predictions files and
matrix.csv byte-identical (nothing redone). The result, for wall time and for CPU time (user + system,
less sensitive to other processes on a shared machine): every figure, each side's median, the median of
the per-pair ratios B / A and the ratio of the medians (above 1: B is slower).

The code before issue 30 (content hashes, seals) against now, on the default run::

    git worktree add /tmp/pre30 9d97e99
    .venv/bin/python benchmarks/resume_cost.py --a pre30 /tmp/pre30 /tmp/runs/pre \\
        --b now . /tmp/runs/now --pairs 5 --out resume-cost.json

The machine's load drifts between minutes; the pairs alternate so that drift falls on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cvqa_bench.bench.whole_run import outputs_digest


@dataclass
class Side:
    """A checkout and the finished run folder it resumes."""

    label: str
    cwd: Path
    run_dir: Path

    def command(self, config: str, resume: bool) -> list[str]:
        """``cvqa run`` of this checkout, as a module of its own folder."""
        return [sys.executable, "-m", "cvqa_bench.cli", "run", "--config", config, "--out", str(self.run_dir), "-q",
                *(["--resume"] if resume else [])]

    def run(self, config: str, resume: bool = True) -> tuple[float, float]:
        """(wall seconds, CPU seconds: user + system) of one ``cvqa run`` (``--resume`` unless told), failing loudly."""
        env = dict(os.environ, PYTHONPATH=str(self.cwd), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(self.command(config, resume), cwd=self.cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{self.label}: exit {done.returncode}: {done.stderr[-2000:]}")
        return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Parse, make missing runs, time the pairs, print (and write) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("a", "b"):
        parser.add_argument(f"--{name}", nargs=3, required=True, metavar=("LABEL", "CHECKOUT", "RUN_DIR"))
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    a, b = (Side(label, Path(cwd).resolve(), Path(run).resolve()) for label, cwd, run in (args.a, args.b))
    for side in (a, b):
        if not (side.run_dir / "matrix.csv").is_file():
            side.run(args.config, resume=False)
        side.run(args.config)  # untimed warm-up
    before = {side.label: outputs_digest(side.run_dir) for side in (a, b)}
    times: dict[str, dict[str, list[float]]] = {s.label: {"wall": [], "cpu": []} for s in (a, b)}
    for i in range(args.pairs):
        for side in (a, b) if i % 2 == 0 else (b, a):
            wall, cpu = side.run(args.config)
            times[side.label]["wall"].append(wall)
            times[side.label]["cpu"].append(cpu)
            print(f"pair {i + 1} {side.label}: wall {wall:.1f} s, cpu {cpu:.1f} s", file=sys.stderr, flush=True)
            if outputs_digest(side.run_dir) != before[side.label]:
                raise RuntimeError(f"{side.label}: a resume of a finished run changed its predictions or matrix")
    result: dict[str, object] = {
        "config": args.config, "pairs": args.pairs, "order": "A B, B A, ... (interleaved, alternating)",
        "sides": {s.label: {"checkout": str(s.cwd), "run_dir": str(s.run_dir)} for s in (a, b)},
        "outputs_unchanged": True,
    }
    for kind in ("wall", "cpu"):  # cpu: user + system seconds, less sensitive to other processes' load
        xa, xb = times[a.label][kind], times[b.label][kind]
        ratios = [y / x for x, y in zip(xa, xb)]
        result[kind] = {
            "seconds": {a.label: [round(x, 3) for x in xa], b.label: [round(x, 3) for x in xb]},
            "median_s": {a.label: round(statistics.median(xa), 3), b.label: round(statistics.median(xb), 3)},
            "pair_ratios_b_over_a": [round(r, 3) for r in ratios],
            "median_pair_ratio_b_over_a": round(statistics.median(ratios), 3),
            "ratio_of_medians_b_over_a": round(statistics.median(xb) / statistics.median(xa), 3),
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
