"""Paired whole-process timing: two shell commands run alternately (A B, B A, A B, ...), each starting a
fresh process, with the wall time of every run and a digest of what each run wrote (matrix.csv and every
predictions file), so that a speed-up is only reported next to the proof that the numbers did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Variant:
    """One side of the pair: a label, a shell command, the folder it runs in and the run folder it writes."""

    label: str
    command: str
    cwd: Path
    run_dir: Path  # removed before every run (relative paths are under cwd)

    def out(self) -> Path:
        """The run folder as an absolute path."""
        return self.run_dir if self.run_dir.is_absolute() else self.cwd / self.run_dir


DIGESTS = ("matrix", "answers", "prediction_files")


def outputs_digest(run_dir: Path) -> dict[str, str]:
    """SHA-256 of matrix.csv; of every predictions file's (id, prediction) pairs, in path and row order (the
    generated answers, comparable across versions that add fields beside them); and of the files' bytes."""
    answers, files = hashlib.sha256(), hashlib.sha256()
    for path in sorted((run_dir / "predictions").rglob("*.jsonl")):
        name = str(path.relative_to(run_dir)).encode() + b"\0"
        answers.update(name)
        files.update(name + path.read_bytes())
        for line in path.read_text().splitlines():
            record = json.loads(line)
            answers.update(json.dumps([record["id"], record["prediction"]]).encode() + b"\n")
    return {"matrix": hashlib.sha256((run_dir / "matrix.csv").read_bytes()).hexdigest(),
            "answers": answers.hexdigest(), "prediction_files": files.hexdigest()}


def run_once(variant: Variant, env: dict[str, str]) -> dict[str, Any]:
    """Run the variant's command once from a removed run folder: wall seconds and the outputs' digest."""
    shutil.rmtree(variant.out(), ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(variant.command, shell=True, cwd=variant.cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{variant.label}: `{variant.command}` exited {done.returncode}: {done.stderr[-2000:]}")
    return {"seconds": seconds, **outputs_digest(variant.out())}


def paired_runs(a: Variant, b: Variant, runs: int = 3, warmup: bool = True) -> dict[str, Any]:
    """``runs`` timed runs of each variant, interleaved and alternating which goes first; one untimed
    warm-up of each first (caches of data, model and features). Min, median, the B-over-A ratios of both
    (A's seconds / B's seconds: above 1 means B is faster) and whether every run wrote the same matrix, the
    same answers and the same predictions files."""
    env = dict(os.environ)
    for variant in (a, b) if warmup else ():
        run_once(variant, env)
    results: dict[str, list[dict[str, Any]]] = {a.label: [], b.label: []}
    for i in range(runs):
        for variant in ((a, b) if i % 2 == 0 else (b, a)):
            results[variant.label].append(run_once(variant, env))
    raw = {label: [r["seconds"] for r in rows] for label, rows in results.items()}
    summary = {label: {"seconds": [round(s, 3) for s in seconds], "min": round(min(seconds), 3),
                       "median": round(statistics.median(seconds), 3)} for label, seconds in raw.items()}
    every_run = [r for rows in results.values() for r in rows]
    return {
        "runs_each": runs, "order": "A B, B A, ... (interleaved, alternating)",
        "variants": {v.label: {"command": v.command, "cwd": str(v.cwd)} for v in (a, b)},
        "timings": summary,
        "speedup_min": round(min(raw[a.label]) / min(raw[b.label]), 3),
        "speedup_median": round(statistics.median(raw[a.label]) / statistics.median(raw[b.label]), 3),
        "identical": {kind: len({r[kind] for r in every_run}) == 1 for kind in DIGESTS},
        "matrix_sha256": sorted({r["matrix"] for r in every_run}),
    }
