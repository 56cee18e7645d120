"""Benchmark: two whole-process commands timed in pairs, interleaved, with proof that they wrote the same numbers.

Each variant is a shell command, the folder it runs in and the run folder it writes (removed before each
run). After one untimed warm-up of each, ``--runs`` timed runs of each alternate A B, B A, A B, ...; the
result gives every wall time, min and median per variant, A/B ratios of both (above 1: B is faster), and
whether all runs of both wrote the same matrix.csv, the same answers (each predictions file's id and
prediction, comparable across versions that add fields) and byte-identical predictions files.

``make run`` now against an earlier commit, each with the dependencies its own pyproject.toml installs (a
worktree with its own .venv; ``make install`` there once)::

    git worktree add /tmp/before 0fd4df0 && make -C /tmp/before install
    .venv/bin/python benchmarks/whole_run_ab.py \\
        --a before "make -o .venv/.installed run" /tmp/before results/default \\
        --b after "make -o .venv/.installed run" . results/default --runs 3 --out ab-make-run.json

(``-o .venv/.installed``: make must not reinstall between runs.)

Cell reuse on and off, same code::

    .venv/bin/python benchmarks/whole_run_ab.py \\
        --a reuse-off "make -o .venv/.installed run RUN_ARGS='--set eval.reuse_cells=false'" . results/default \\
        --b reuse-on "make -o .venv/.installed run" . results/default --runs 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cvqa_bench.bench.whole_run import Variant, paired_runs
from cvqa_bench.io import atomic_write_json


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for side in ("a", "b"):
        parser.add_argument(f"--{side}", nargs=4, required=True, metavar=("LABEL", "COMMAND", "CWD", "RUN_DIR"))
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each variant")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    return parser.parse_args()


def main() -> None:
    """Run the pairs and print (and optionally write) the JSON result."""
    args = parse_args()
    a, b = (Variant(label, command, Path(cwd), Path(run_dir)) for label, command, cwd, run_dir in (args.a, args.b))
    result = paired_runs(a, b, runs=args.runs, warmup=not args.no_warmup)
    print(json.dumps(result, indent=1))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
