"""Kill ``cvqa run`` with SIGKILL at random moments, resume it, and compare with an uninterrupted run.

Run by hand for many iterations::

    .venv/bin/python tests/kill_resume.py --methods llaca,replay --iterations 3 --kills 5   # ~30 kills

Each iteration starts a fresh run folder and keeps killing and resuming the same run until it
finishes on its own; the finished run's matrix.csv and every predictions file must equal the
uninterrupted reference byte for byte (CPU, same seed). Besides kills at random moments, each
iteration aims one kill at the removal of a finished stage's ``trainer/`` checkpoints and one at the
writing of the summary (scores written, report.md not yet): the script polls the run folder and
kills as soon as it sees that moment, and reports where every kill landed.
``tests/run/test_kill_resume.py`` runs one short iteration in CI.
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


# The CLI, with the removal of a finished stage's trainer/ checkpoints stretched to one file per 20 ms
# (test harness only), so that a kill can land in the middle of it.
SLOW_CLEANUP = """
import shutil, sys, time
from pathlib import Path
real = shutil.rmtree
def rmtree(path, *args, **kwargs):
    if Path(path).name == "trainer":
        for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            file.unlink(missing_ok=True)
            time.sleep(0.02)
    return real(path, *args, **kwargs)
shutil.rmtree = rmtree
from cvqa_bench.cli import main
sys.argv[0] = "cvqa"
main()
"""


def cvqa(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``cvqa run`` in a subprocess (its own process group, output discarded)."""
    cmd = [sys.executable, "-c", SLOW_CLEANUP, "run", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def in_cleanup(run: Path, since: float = 0.0) -> bool:
    """A stage is done (DONE.json) while its trainer/ checkpoints are still being removed."""
    return any((done.parent / "trainer").exists() for done in run.glob("stages/*/DONE.json"))


def in_report(run: Path, since: float = 0.0) -> bool:
    """The summary is being written (by the process started at ``since``): cell scores written, report.md not yet."""
    if not (run / "scores").is_dir() or (run / "report.md").exists():
        return False
    return any(p.stat().st_mtime >= since for p in (run / "scores").rglob("*.json"))


TARGETS = {"cleanup": in_cleanup, "report": in_report}


def phase_of(run: Path, since: float = 0.0) -> str:
    """A short description of how far a run folder got (used to report where kills landed)."""
    if not run.joinpath("config.yaml").exists():
        return "start-up"
    for name, test in TARGETS.items():
        if test(run, since):
            return f"during {name}"
    done = sorted(p.parent.name for p in run.glob("stages/*/DONE.json"))
    ckpts = sorted(p.parent.name for p in run.glob("stages/*/trainer/checkpoint-*/cvqa_complete.json"))
    preds = len(list(run.glob("predictions/*/*.jsonl")))
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
               max_attempts: int = 20, targets: tuple[str, ...] = ()) -> Iteration:
    """Kill and resume one run until it finishes; the last attempt runs to the end.

    The first attempt aims at ``targets[0]``, the ones before the last at the others (names of
    :data:`TARGETS`), polling the folder every millisecond; a run that passes the moment unseen runs on
    (and may finish with fewer kills: the counts say where every kill landed).
    """
    result = Iteration()
    # the first target on the first attempt (a fresh run reaches every moment), the others last
    aims = {0: targets[0]} if targets else {}
    aims.update({max_attempts - 1 - len(targets) + k: name for k, name in enumerate(targets[1:], start=1)})
    for attempt in range(max_attempts):
        resume = ["--resume"] if out.joinpath("config.yaml").exists() else []
        started, wall = time.perf_counter(), time.time()
        proc = cvqa([*args, "--out", str(out), *resume], env)
        last = attempt == max_attempts - 1
        # a resumed run has less left to do: draw the kill time within what is left (plus start-up)
        left = max(8.0, budget - sum(a.seconds for a in result.attempts) + 8.0 * len(result.attempts))
        deadline = None if last else started + rng.uniform(0.3, min(budget, left))
        aim = TARGETS[aims[attempt]] if attempt in aims and not last else None
        while proc.poll() is None:
            if aim is not None and aim(out, wall):
                break
            if deadline is not None and aim is None and time.perf_counter() > deadline:
                break
            time.sleep(0.001 if aim is not None else 0.01)
        if proc.poll() is not None:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"attempt {attempt} exited {proc.returncode}: {err.decode()[-2000:]}")
            result.attempts.append(Attempt(time.perf_counter() - started, False, "finished"))
            return result
        hit = aim is not None and aim(out, wall)
        phase = f"aimed, {phase_of(out, wall)}" if hit else f"random, {phase_of(out, wall)}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        result.attempts.append(Attempt(time.perf_counter() - started, True, phase))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the kill/resume check; exit 1 if any iteration differs from the reference."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3, help="iterations per method")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cvqa-kill-resume"))
    parser.add_argument("--methods", "--method", default="llaca", help="comma-separated, e.g. llaca,replay")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--kills", type=int, default=3, help="kills per iteration before it may finish")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per task (more = longer stages)")
    opts = parser.parse_args(argv)
    rng = random.Random(opts.seed)
    failures = total = kills_total = 0
    phases: dict[str, int] = {}
    for method in opts.methods.split(","):
        workdir = opts.workdir / method
        env = {**os.environ, "CVQA_CACHE": str(opts.workdir / "cache")}
        _, args = write_inputs(workdir, method, opts.steps)
        expected, seconds = reference_run(workdir, args, env)
        print(f"[{method}] reference run: {seconds:.1f} s, {len(expected)} files fingerprinted")
        for i in range(opts.iterations):
            out = workdir / f"killed-{opts.seed}-{i}"
            targets = ("cleanup", "report") if opts.kills >= 3 else ()
            iteration = killed_run(out, args, env, budget=seconds * 0.9, rng=rng, max_attempts=opts.kills + 1,
                                   targets=targets)
            iteration.identical = fingerprint(out) == expected
            failures += not iteration.identical
            total += 1
            kills = [a for a in iteration.attempts if a.killed]
            kills_total += len(kills)
            print(f"[{method}] iteration {i}: {len(kills)} kills, identical={iteration.identical}")
            for a in kills:
                # aimed kills landed in the moment they waited for; a random one is named by the folder's state
                key = a.phase if a.phase.startswith("aimed") else "random"
                phases[key] = phases.get(key, 0) + 1
                print(f"   killed after {a.seconds:5.1f} s: {a.phase}")
    print(f"{kills_total} SIGKILLs; where: {phases}")
    print(f"{total - failures}/{total} runs identical to the uninterrupted run (matrix.csv and every predictions file)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
