"""Benchmark: `make run` on an idle machine against the same run beside synthetic load, in one session.

The loaded side runs with ``--busy`` Python processes spinning (``while True: pass``, 2 by default: every
core of a 2-core machine taken) from before it starts until it ends; in the benchmark's own session, or with
``--other-session`` in one session of their own, as another terminal's jobs (Linux's autogroup scheduler
shares the cores between sessions first). After one untimed warm-up, ``--pairs``
pairs alternate idle, loaded, loaded, idle, ... (``--one-thread`` adds the same two with ``CVQA_THREADS=1``:
the run's single-thread self). Each run is a fresh ``make run`` (it removes
results/default first) with the environment as it is: no OMP_NUM_THREADS or OpenMP wait settings, so ``cvqa run``'s
thread policy (cvqa_bench/run/threads.py) applies. Wall and CPU time per run, medians, the loaded/idle wall ratio, and the
thread counts each run's manifest recorded. Run it on an otherwise quiet machine (the load average is
recorded before and after)::

    .venv/bin/python benchmarks/busy_load.py --pairs 2 --out benchmarks/results/busy-load.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from cvqa_bench.bench.processes import busy_processes, timed

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Run the pairs and print (and optionally write) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="make -o .venv/.installed run",
                        help="the measured command (default: make run without reinstalling)")
    parser.add_argument("--run-dir", default="results/default", help="the run folder the command writes")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside the loaded runs")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--one-thread", action="store_true",
                        help="also time the command with CVQA_THREADS=1, idle and loaded (its single-thread self)")
    parser.add_argument("--other-session", action="store_true",
                        help="the spinners in one session of their own (another terminal's jobs), not the caller's")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "CVQA_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    command = ["bash", "-c", args.command]
    load = os.getloadavg()

    def run(side: str) -> dict[str, Any]:
        side_env = {**env, "CVQA_THREADS": "1"} if side.endswith("_1thread") else env
        if not side.startswith("loaded"):
            return {**timed(command, ROOT, side_env), **threads_of(ROOT / args.run_dir)}
        with busy_processes(args.busy, own_session=args.other_session):
            time.sleep(2.0)  # the spinners are running before the run starts
            return {**timed(command, ROOT, side_env), **threads_of(ROOT / args.run_dir)}

    if not args.no_warmup:
        run("idle")
    names = ["idle", "loaded"] + (["idle_1thread", "loaded_1thread"] if args.one_thread else [])
    sides: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for pair in range(args.pairs):
        for side in names if pair % 2 == 0 else names[::-1]:
            sides[side].append(run(side))
    median = {side: {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu")} for side, rows in sides.items()}
    result = {
        "command": args.command, "busy_processes": args.busy, "pairs": args.pairs, "cpu_count": os.cpu_count(),
        "load_session": "its own (--other-session)" if args.other_session else "the benchmark's",
        "load_before": load, "load_after": os.getloadavg(),
        "order": "idle loaded, loaded idle, ... (interleaved, alternating)",
        "runs": sides, "median": median,
        "ratio_wall_loaded_over_idle": round(median["loaded"]["wall"] / median["idle"]["wall"], 3),
        **({"ratio_wall_loaded_over_loaded_1thread": round(median["loaded"]["wall"] / median["loaded_1thread"]["wall"], 3),
            "ratio_wall_loaded_1thread_over_idle_1thread":
                round(median["loaded_1thread"]["wall"] / median["idle_1thread"]["wall"], 3)} if args.one_thread else {}),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


def threads_of(run_dir: Path) -> dict[str, Any]:
    """The thread count and OpenMP wait the run's manifest recorded (``threads``)."""
    try:
        record = json.loads((run_dir / "manifest.json").read_text())["threads"]
    except (OSError, KeyError, ValueError):
        return {"threads": None}
    return {"threads": record.get("threads"), "openmp_wait": record.get("openmp_wait")}


if __name__ == "__main__":
    main()
