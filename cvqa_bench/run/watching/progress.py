"""The one display of a run: stage k/T, training steps (loss, lr), evaluation cells, ETAs, matrix rows.

On a terminal it is a live rich display (run, training and evaluation bars) above which the stage
headers and each stage's matrix row are printed; elsewhere (a pipe, a log file) it prints a few plain
lines per stage and never a ``\\r`` frame. Every line also goes to ``run.log``
(``cvqa_bench.run.watching.logs``), every Trainer log dict to ``logs/train.jsonl``, and each matrix row is
scored as soon as its cells are predicted (``scores/`` of the run, and the trackers as scalars).
ETAs come from measured rates: seconds per optimizer step and per test question, of this run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from transformers import TrainerCallback

from cvqa_bench.io import atomic_write_json
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.watching.logs import LOGGER, TrainLog
from cvqa_bench.run.prepare import PreparedRun
from cvqa_bench.run.watching.trackers import MatrixScalars, logging_dir, trackers
from cvqa_bench.scoring.cells import score_predictions
from cvqa_bench.scoring.seals import seal_scores
from cvqa_bench.scoring.protocol import scorer_for


def duration(seconds: float | None) -> str:
    """``"?"``, ``"42 s"``, ``"3.5 min"`` or ``"1.2 h"``."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class RunProgress:
    """The display, logs and running scores of one run (only the main process shows and writes)."""

    def __init__(self, prepared: PreparedRun, run: RunDir, console: Console, *, quiet: bool = False,
                 main: bool = True) -> None:
        self.run, self.console, self.quiet, self.main = run, console, quiet or not main, main
        self.config = prepared.config
        self.tasks = [t.spec for t in prepared.tasks]
        limit = self.config.eval.limit
        self.questions = sum(min(len(t.test), limit) if limit else len(t.test) for t in prepared.tasks)
        self.steps = self.config.train.max_steps  # per stage; measured once a stage starts
        self.sec_per_step: float | None = None
        self.sec_per_question: float | None = None
        self.train_log = TrainLog(run.root if main else None)
        self.scalars = MatrixScalars(self.config.train, run.root) if main and trackers(self.config.train) else None
        self.live: Progress | None = None
        self._run_bar: Any = None
        self._eval: tuple[float, int] | None = None  # (start, questions) of the stage's evaluation

    # -- display ----------------------------------------------------------------------------------
    def __enter__(self) -> RunProgress:
        if self.console.is_terminal and not self.quiet:
            self.live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), console=self.console, transient=True)
            self.live.start()
            self._run_bar = self.live.add_task(f"run ({self.config.method.name})", total=len(self.tasks) + 1,
                                               info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.scalars is not None:
            self.scalars.close()

    def say(self, text: str, style: str | None = None) -> None:
        """One line on the console (unless quiet) and in run.log."""
        LOGGER.info(text, extra={"shown": not self.quiet})
        if not self.quiet:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def eta(self, stage: int, steps_left: int = 0, questions_left: int | None = None) -> tuple[str, str]:
        """(this stage, the whole run) still to go, from the measured rates."""
        q, step = self.sec_per_question, self.sec_per_step
        if q is None or (stage and step is None):
            return "?", "?"
        left = steps_left * (step or 0.0) + (self.questions if questions_left is None else questions_left) * q
        if stage == len(self.tasks):
            return duration(left), duration(left)
        if step is None or self.steps is None:
            return duration(left), "?"
        later = (len(self.tasks) - stage) * (self.steps * step + self.questions * q)
        return duration(left), duration(left + later)

    # -- stages -----------------------------------------------------------------------------------
    def tracker_dir(self, stage: int, task: str) -> Path | None:
        """Where the stage's Trainer writes file-based tracker logs (None without trackers)."""
        if not trackers(self.config.train):
            return None
        return logging_dir(self.config.train, self.run.root) / RunDir.stage_name(stage, task)

    def restored(self, stage: int, task: str) -> None:
        """A stage done by an earlier attempt."""
        self.say(f"stage {stage} ({task}): done earlier, restored", style="dim")

    def training(self, stage: int, task: str, rows: int, resume_from: Path | None) -> TrainerCallback:
        """Announce a stage's training; the callback to hand to its Trainer."""
        where = f", resuming from {resume_from.name}" if resume_from else ""
        self.say(f"stage {stage}/{len(self.tasks)}: training on {task} ({rows} rows, method "
                 f"{self.config.method.name}{where})", style="bold")
        return StageCallback(self, stage, task)

    def evaluation(self, stage: int, names: list[str]) -> EvalDisplay:
        """The display of one stage's evaluation cells (rich ``Progress``'s add_task / advance)."""
        if stage == 0:
            self.say(f"stage 0/{len(self.tasks)}: zero-shot evaluation of {len(names)} tasks", style="bold")
        return EvalDisplay(self, stage)

    def row(self, stage: int) -> None:
        """Score the predicted cells of matrix row ``stage``, print the row and log it to the trackers."""
        if not self.main:
            return
        stage_task = self.tasks[stage - 1].name if stage else None
        values: dict[str, float] = {}
        written = []
        for spec in self.tasks:
            path = self.run.predictions(stage, stage_task, spec.name)
            if path.is_file():
                cell = score_predictions(path, scorer_for(self.config.protocol, spec.name, spec.scorer),
                                         self.config.protocol)
                atomic_write_json(self.run.scores(stage, stage_task, spec.name), cell)
                written.append((path, self.run.scores(stage, stage_task, spec.name)))
                values[spec.name] = 100.0 * float(cell["score"])
        seal_scores(self.run.root, written)  # one cells.json write per row
        cells = " · ".join(f"{s.name} {values[s.name]:.2f}" if s.name in values else f"{s.name} –" for s in self.tasks)
        timing = ""
        if self._eval is not None:
            started, n = self._eval
            seconds = time.perf_counter() - started
            if n:
                self.sec_per_question = seconds / n
            timing = f" · eval {duration(seconds)}"
            self._eval = None
        self.say(f"  row {stage}: {cells}{timing} · run ETA {self.eta(stage, questions_left=0)[1]}")
        if self.live is not None:
            self.live.update(self._run_bar, completed=stage + 1, info=f"ETA {self.eta(stage, questions_left=0)[1]}")
        if self.scalars is not None and values:
            self.scalars.log_row(stage, values)

    def finished(self, metrics: dict[str, float]) -> None:
        """The run's end, with its metrics, in run.log."""
        LOGGER.info("finished: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()), extra={"shown": True})
        if self.scalars is not None:
            LOGGER.info(f"tracker scalars: {logging_dir(self.config.train, self.run.root)}", extra={"shown": True})


class EvalDisplay:
    """``with progress.evaluation(stage, names) as bars:`` then ``bars.add_task(...)`` / ``bars.advance(...)``."""

    def __init__(self, progress: RunProgress, stage: int) -> None:
        self.progress, self.stage, self.bars = progress, stage, []

    def __enter__(self) -> EvalDisplay:
        self.progress._eval = (time.perf_counter(), 0)
        return self

    def __exit__(self, *exc: Any) -> None:
        for bar in self.bars if self.progress.live is not None else []:
            self.progress.live.remove_task(bar)

    def add_task(self, description: str, total: int) -> Any:
        """A bar for one cell (``total`` questions of this process)."""
        started, n = self.progress._eval or (time.perf_counter(), 0)
        self.progress._eval = (started, n + total)
        live = self.progress.live
        if live is None:
            return None
        self.bars.append(live.add_task(description, total=total, info=""))
        return self.bars[-1]

    def advance(self, bar: Any, n: int) -> None:
        """``n`` more questions of a cell answered."""
        live = self.progress.live
        if live is not None and bar is not None:
            live.advance(bar, n)


class StageCallback(TrainerCallback):
    """The Trainer's events of one stage: steps, loss and lr on the display, log dicts to train.jsonl."""

    def __init__(self, progress: RunProgress, stage: int, task: str) -> None:
        self.progress, self.stage, self.task = progress, stage, task
        self.started, self.first_step, self.bar, self.said_middle = 0.0, 0, None, False
        self.loss: float | None = None  # of the last logging window
        self.mean_loss: float | None = None  # of the whole stage (the Trainer's closing train_loss)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started, self.first_step = time.perf_counter(), state.global_step
        self.progress.steps = state.max_steps
        live = self.progress.live
        if live is not None:
            self.bar = live.add_task(f"train {self.task}", total=state.max_steps, completed=state.global_step,
                                     info="")

    def _rate(self, state: Any) -> None:
        done = state.global_step - self.first_step
        if done > 0:
            self.progress.sec_per_step = (time.perf_counter() - self.started) / done

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._rate(state)
        live = self.progress.live
        if live is not None and self.bar is not None:
            stage_eta, run_eta = self.progress.eta(self.stage, state.max_steps - state.global_step)
            loss = "" if self.loss is None else f"loss {self.loss:.3f} · "
            live.update(self.bar, completed=state.global_step, info=f"{loss}ETA {stage_eta} (run {run_eta})")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        record = {"stage": self.stage, "task": self.task, "step": state.global_step, **logs}
        if state.is_world_process_zero:
            self.progress.train_log.write(record)
        LOGGER.debug(f"stage {self.stage} step {state.global_step}: {logs}")
        if "loss" not in logs:
            self.mean_loss = logs.get("train_loss", self.mean_loss)
            return
        self.loss = float(logs["loss"])
        if self.progress.live is None and not self.said_middle and 2 * state.global_step >= state.max_steps:
            self.said_middle = True
            stage_eta, run_eta = self.progress.eta(self.stage, state.max_steps - state.global_step)
            lr = logs.get("learning_rate")
            self.progress.say(f"  step {state.global_step}/{state.max_steps} · loss {self.loss:.3f}"
                              + ("" if lr is None else f" · lr {float(lr):.2e}")
                              + f" · stage ETA {stage_eta} · run ETA {run_eta}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._rate(state)
        live = self.progress.live
        if live is not None and self.bar is not None:
            live.remove_task(self.bar)
        seconds = time.perf_counter() - self.started
        loss = "" if self.loss is None else f" · loss {self.loss:.3f} (last {args.logging_steps} steps)"
        loss += "" if self.mean_loss is None else f" · stage mean {float(self.mean_loss):.3f}"
        if state.global_step < state.max_steps:  # stopped early (SIGINT/SIGTERM): no evaluation follows
            self.progress.say(f"  training stopped at step {state.global_step}/{state.max_steps} after "
                              f"{duration(seconds)}{loss}")
            return
        self.progress.say(f"  trained {state.global_step} steps in {duration(seconds)}{loss} · "
                          f"evaluating {len(self.progress.tasks)} tasks")
