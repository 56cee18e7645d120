"""Kill ``cvqa run`` with SIGKILL at random moments, resume it, and compare with an uninterrupted run.

Run by hand for many iterations::

    .venv/bin/python tests/kill_resume.py --iterations 10 --workdir /tmp/kill-resume

Each iteration starts a fresh run folder and keeps killing and resuming the same run until it
finishes on its own; the finished run's matrix.csv and every predictions file must equal the
uninterrupted reference byte for byte (CPU, same seed). ``tests/test_kill_resume.py`` runs one short
iteration in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SEQUENCE = {
    "name": "kill-resume",
    "description": "three small synthetic tasks for the kill/resume check",
    "image_folder": "images",
    "generator": {"name": "synthetic", "seed": 0, "n_train": 48, "n_test": 8, "image_size": 32},
    "tasks": [
        {"name": "color", "train": "color/train.json", "test": "color/test.json", "scorer": "vqa", "max_new_tokens": 4},
        {"name": "shape", "train": "shape/train.json", "test": "shape/test.json", "scorer": "contains",
         "max_new_tokens": 4},
        {"name": "glyph", "train": "glyph/train.json", "test": "glyph/test.json", "scorer": "exact", "max_new_tokens": 4},
    ],
}


@dataclass
class Attempt:
    """One start of the process: how long it ran and what the run folder held when it was killed."""

    seconds: float
    killed: bool
    phase: str


@dataclass
class Iteration:
    """All attempts of one run until it finished, and whether it matched the reference."""

    attempts: list[Attempt] = field(default_factory=list)
    identical: bool = False


def write_inputs(workdir: Path, method: str, steps: int = 12) -> tuple[Path, list[str]]:
    """The sequence YAML and the CLI arguments of the run under test (``steps`` optimizer steps per task)."""
    workdir.mkdir(parents=True, exist_ok=True)
    seq = workdir / "kill-resume.yaml"
    seq.write_text(yaml.safe_dump(SEQUENCE, sort_keys=False))
    args = ["--sequence", str(seq), "--method", method, "--seed", "0",
            "--set", f"train.max_steps={steps}", "--set", "train.batch_size=8",
            "--set", f"train.checkpoint_every={max(1, steps // 4)}",
            "--set", "eval.batch_size=8"]
    return seq, args


def cvqa(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``cvqa`` in a subprocess (its own process group, output discarded)."""
    cmd = [sys.executable, "-m", "cvqa_bench.cli", "run", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def phase_of(run: Path) -> str:
    """A short description of how far a run folder got (used to report where kills landed)."""
    done = sorted(p.parent.name for p in run.glob("stages/*/DONE.json"))
    ckpts = sorted(p.parent.name for p in run.glob("stages/*/trainer/checkpoint-*/cvqa_complete.json"))
    preds = len(list(run.glob("predictions/*/*.jsonl")))
    if not run.joinpath("config.yaml").exists():
        return "start-up"
    return f"stages done {len(done)}, in-stage checkpoints {len(ckpts)}, prediction files {preds}"


def fingerprint(run: Path) -> dict[str, str]:
    """SHA-256 of matrix.csv and of every predictions file."""
    files = [run / "matrix.csv", *sorted(run.glob("predictions/*/*.jsonl"))]
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def reference_run(workdir: Path, args: list[str], env: dict[str, str]) -> tuple[dict[str, str], float]:
    """The uninterrupted run: its fingerprint and wall time."""
    out = workdir / "reference"
    if (out / "matrix.csv").is_file() and (out / "manifest.json").is_file():
        return fingerprint(out), float((out / ".seconds").read_text())
    started = time.perf_counter()
    proc = cvqa([*args, "--out", str(out)], env)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed: {err.decode()[-2000:]}")
    seconds = time.perf_counter() - started
    (out / ".seconds").write_text(str(seconds))
    return fingerprint(out), seconds


def killed_run(out: Path, args: list[str], env: dict[str, str], budget: float, rng: random.Random,
               max_attempts: int = 20) -> Iteration:
    """Kill and resume one run until it finishes; the last attempt runs to the end."""
    result = Iteration()
    for attempt in range(max_attempts):
        resume = ["--resume"] if out.joinpath("config.yaml").exists() else []
        started = time.perf_counter()
        proc = cvqa([*args, "--out", str(out), *resume], env)
        deadline = rng.uniform(0.3, budget) if attempt < max_attempts - 1 else None
        try:
            proc.wait(timeout=deadline)
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"attempt {attempt} exited {proc.returncode}: {err.decode()[-2000:]}")
            result.attempts.append(Attempt(time.perf_counter() - started, False, "finished"))
            return result
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            result.attempts.append(Attempt(time.perf_counter() - started, True, phase_of(out)))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the kill/resume check; exit 1 if any iteration differs from the reference."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cvqa-kill-resume"))
    parser.add_argument("--method", default="llaca")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--kills", type=int, default=3, help="kills per iteration before it may finish")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per task (more = longer stages)")
    opts = parser.parse_args(argv)
    env = {**os.environ, "CVQA_CACHE": str(opts.workdir / "cache")}
    _, args = write_inputs(opts.workdir, opts.method, opts.steps)
    expected, seconds = reference_run(opts.workdir, args, env)
    print(f"reference run: {seconds:.1f} s, {len(expected)} files fingerprinted")
    rng = random.Random(opts.seed)
    failures = 0
    for i in range(opts.iterations):
        out = opts.workdir / f"killed-{opts.seed}-{i}"
        iteration = killed_run(out, args, env, budget=seconds * 0.9, rng=rng, max_attempts=opts.kills + 1)
        iteration.identical = fingerprint(out) == expected
        failures += not iteration.identical
        kills = [a for a in iteration.attempts if a.killed]
        print(f"iteration {i}: {len(kills)} kills, identical={iteration.identical}")
        for a in kills:
            print(f"   killed after {a.seconds:5.1f} s: {a.phase}")
    print(f"{opts.iterations - failures}/{opts.iterations} iterations identical to the uninterrupted run")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
