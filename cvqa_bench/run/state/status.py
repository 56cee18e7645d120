"""`cvqa status RUN_DIR`: how far a run folder is, read from its files only (safe while the run goes on).

Stages done (DONE.json) and remaining, cells predicted and scored, the newest in-stage checkpoint,
elapsed time and an ETA from the recorded stage times, whether a process holds the run (its lock,
``cvqa_bench.run.state.lock``) and the config hash. No torch import: it is quick on a busy machine.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, RunConfig, read_yaml, validate_model
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.state.lock import LOCK_FILE

COMPLETE_MARKER = "cvqa_complete.json"  # cvqa_bench.run.state.checkpoint's marker (that module imports torch)


@dataclass
class RunStatus:
    """What :func:`run_status` found in a run folder."""

    root: Path
    tasks: list[str]
    config_hash: str
    done: list[int]  # the stages (1-based) with a DONE.json
    predicted: int
    scored: int
    cells: int  # (T + 1) x T
    checkpoint: tuple[Path, int, int | None] | None  # (folder, step, max steps) of the newest complete one
    started: dt.datetime | None
    finished: dt.datetime | None
    elapsed_s: float | None
    eta_s: float | None
    mean_stage_s: float | None
    holder: str | None  # the PID holding the lock, or None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> list[int]:
        """The stages not done yet."""
        return [k for k in range(1, len(self.tasks) + 1) if k not in self.done]


def _time(value: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone.utc) if when is not None and when.tzinfo is None else when


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_holder(root: Path) -> str | None:
    """The PID (as written in the lock file) of the process holding the run's lock, or None."""
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None  # no lock file: nothing holds the run
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def newest_checkpoint(stage_dir: Path) -> tuple[Path, int, int | None] | None:
    """(folder, step, max steps) of the newest complete ``trainer/checkpoint-N`` of a stage."""
    found = []
    for folder in (stage_dir / "trainer").glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), folder))
    if not found:
        return None
    step, folder = max(found)
    return folder, step, _json(folder / "trainer_state.json").get("max_steps")


def run_status(run_dir: Path, now: dt.datetime | None = None) -> RunStatus:
    """Read the state of the run in ``run_dir`` (``now``: the clock, for the elapsed time and the ETA)."""
    from cvqa_bench.scoring.cells import load_run_sequence

    run = RunDir(Path(run_dir))
    if not run.config.is_file():
        raise ConfigError(f"{run.config}: not found; {run.root} is not a run folder")
    config = validate_model(RunConfig, read_yaml(run.config), str(run.config))
    if not run.sequence.is_file():
        raise ConfigError(f"{run.sequence}: not found; the run folder is incomplete")
    tasks = load_run_sequence(run).task_names()
    now = now or dt.datetime.now(dt.timezone.utc)
    manifest = _json(run.manifest)
    started, finished = _time(manifest.get("started")), _time(manifest.get("finished"))
    done, ends, checkpoint = [], [], None
    predicted = scored = 0
    for stage in range(len(tasks) + 1):
        stage_task = tasks[stage - 1] if stage else None
        if stage:
            marker = _json(run.stage_dir(stage, tasks[stage - 1]) / "DONE.json")
            if marker:
                done.append(stage)
                ends.append(_time(marker.get("finished")))
            elif checkpoint is None:
                checkpoint = newest_checkpoint(run.stage_dir(stage, tasks[stage - 1]))
        predicted += sum(run.predictions(stage, stage_task, t).is_file() for t in tasks)
        scored += sum(run.scores(stage, stage_task, t).is_file() for t in tasks)
    holder = lock_holder(run.root)
    elapsed = ((finished or now) - started).total_seconds() if started else None
    mean = eta = None
    times = [started, *ends] if started and all(ends) else []
    if len(times) > 1:
        mean = (times[-1] - times[0]).total_seconds() / (len(times) - 1)
        remaining = len(tasks) - len(done)
        since_last = (now - times[-1]).total_seconds() if holder else 0.0
        eta = max(0.0, mean * remaining - since_last) if remaining else 0.0
    meta = {"sequence": config.sequence, "method": config.method.name, "seed": config.seed}
    return RunStatus(run.root, tasks, config.stable_hash()[:12], done, predicted, scored,
                     (len(tasks) + 1) * len(tasks), checkpoint, started, finished, elapsed, eta, mean, holder, meta)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def status_lines(status: RunStatus) -> list[str]:
    """The human view of a :class:`RunStatus`, one fact per line."""
    meta = status.meta
    names = [RunDir.stage_name(k, status.tasks[k - 1]) for k in range(1, len(status.tasks) + 1)]
    lines = [f"run: {status.root} (sequence {meta['sequence']}, method {meta['method']}, seed {meta['seed']}, "
             f"config {status.config_hash})",
             f"stages: {len(status.done)} of {len(status.tasks)} done"
             + (f" ({', '.join(names[k - 1] for k in status.done)})" if status.done else "")
             + (f"; remaining: {', '.join(names[k - 1] for k in status.remaining)}" if status.remaining else ""),
             f"cells: {status.predicted} of {status.cells} predicted, {status.scored} scored"]
    if status.checkpoint is not None:
        folder, step, total = status.checkpoint
        of = f" of {total}" if total else ""
        lines.append(f"checkpoint: {folder.relative_to(status.root)} (step {step}{of})")
    else:
        lines.append("checkpoint: none in a stage under way")
    if status.elapsed_s is not None:
        since = f"{status.started:%Y-%m-%d %H:%M:%S %Z}".rstrip()
        line = (f"time: took {_duration(status.elapsed_s)} (started {since})" if status.finished else
                f"time: elapsed {_duration(status.elapsed_s)} since {since}")
        if status.mean_stage_s is not None and not status.finished:
            word = "ETA" if status.holder else "left to do (not running)"
            line += f"; {word} {_duration(status.eta_s or 0.0)} (mean stage {_duration(status.mean_stage_s)})"
        lines.append(line)
    lines.append(f"process: {'running, pid ' + status.holder if status.holder else 'none holds the run'}")
    return lines
