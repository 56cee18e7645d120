"""The stateful part of a run: the model, the method and the per-stage train / save / restore / evaluate steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import set_seed as seed_everything

from cvqa_bench.checkpoint import (
    all_finite,
    latest_checkpoint,
    load_method_state,
    load_tensors,
    save_method_state,
    save_tensors,
)
from cvqa_bench.interrupt import NO_INTERRUPT, InterruptFlag
from cvqa_bench.io import atomic_write_json, atomic_write_jsonl
from cvqa_bench.manifest import build_manifest, now
from cvqa_bench.methods.base import TaskContext, Trainables
from cvqa_bench.models.load import load_model
from cvqa_bench.rundir import RunDir
from cvqa_bench.runner import PreparedRun, clean_stage_checkpoints, predictions_complete, stage_hash
from cvqa_bench.errors import NonFiniteError
from cvqa_bench.train import train_stage


class StageRunner:
    """Holds the loaded model and the method across the stages of one run."""

    def __init__(self, prepared: PreparedRun, run: RunDir, console: Console | None = None,
                 interrupt: InterruptFlag = NO_INTERRUPT) -> None:
        self.prepared = prepared
        self.interrupt = interrupt
        self.config = prepared.config
        self.run = run
        self.console = console or Console(stderr=True)
        self.infos = prepared.task_infos()
        seed_everything(self.config.seed)  # LoRA init draws from the global RNG
        self.loaded = load_model(self.config.model)
        self.model = self.loaded.model
        self.trainables = Trainables(self.model)
        self.method = prepared.method
        self.method.setup(self.infos)

    # -- manifest ---------------------------------------------------------------------------------
    def write_manifest(self) -> None:
        """Write manifest.json (kept from an earlier attempt when resuming, with a resume timestamp)."""
        from cvqa_bench.data.coin import file_sha256

        if self.run.manifest.is_file():
            manifest = json.loads(self.run.manifest.read_text())
            manifest.setdefault("resumed", []).append(now())
        else:
            data = {
                t.spec.name: {
                    "train": file_sha256(self.prepared.data_root / t.spec.train),
                    "test": file_sha256(self.prepared.data_root / t.spec.test),
                    "test_items": t.test_hash(), "n_train": len(t.train), "n_test": len(t.test),
                }
                for t in self.prepared.tasks
            }
            model = {"source": self.loaded.source, "dtype": self.config.model.dtype,
                     "trainable_params": self.trainables.numel()}
            manifest = build_manifest(self.config.model_dump(mode="json"), data, model)
            manifest["data_root"] = str(self.prepared.data_root)
        atomic_write_json(self.run.manifest, manifest)

    def finish_manifest(self) -> None:
        """Stamp the end time."""
        manifest = json.loads(self.run.manifest.read_text())
        manifest["finished"] = now()
        atomic_write_json(self.run.manifest, manifest)

    # -- training ---------------------------------------------------------------------------------
    def train_or_restore(self, stage: int) -> None:
        """Train stage ``stage`` (1-based) and save it, or restore it when its DONE marker matches."""
        info = self.infos[stage - 1]
        task = self.prepared.tasks[stage - 1]
        stage_dir = self.run.stage_dir(stage, info.name)
        expected = stage_hash(self.config, self.prepared.sequence, stage)
        done = stage_dir / "DONE.json"
        if done.is_file() and json.loads(done.read_text()).get("stage_hash") == expected:
            self.restore(stage_dir)
            self.console.print(f"[dim]stage {stage} ({info.name}): done earlier, restored[/dim]")
            return
        ctx = TaskContext(stage=stage, task=info, tasks=self.infos, trainables=self.trainables)
        checkpoint = latest_checkpoint(stage_dir / "trainer")
        if checkpoint is not None:  # resume inside the stage: the method state saved with that checkpoint
            load_method_state(checkpoint, self.method, self.loaded.device)
        rows = self.method.train_rows(info, task.train)
        where = f", resuming from {checkpoint.name}" if checkpoint else ""
        self.console.print(f"[bold]stage {stage}/{len(self.infos)}[/bold]: training on {info.name} "
                           f"({len(rows)} rows, method {self.config.method.name}{where})")
        seed_everything(self.config.seed * 1000 + stage)
        started = time.perf_counter()
        self.method.before_task(ctx)
        result = train_stage(
            self.model, self.loaded.processor, rows, self.method, info, self.trainables, self.config.train,
            stage_dir / "trainer", seed=self.config.seed * 1000 + stage,
            pad_to_square=self.config.model.pad_to_square, resume_from=checkpoint, interrupt=self.interrupt,
        )
        self.method.after_task(ctx)
        weights = self.trainables.snapshot()
        bad = all_finite(weights) or all_finite(self.method.state_dict())
        if bad is not None:
            raise NonFiniteError(f"task {info.name!r}: {bad!r} is not finite after the stage; nothing was saved")
        save_tensors(stage_dir / "weights.safetensors", weights)
        save_method_state(stage_dir, self.method)
        atomic_write_json(self.run.method_records, self.method.records())
        atomic_write_json(done, {
            "stage": stage, "task": info.name, "stage_hash": expected, "steps": result.steps,
            "train_loss": result.final_loss, "losses": result.losses, "rows": len(rows),
            "seconds": round(time.perf_counter() - started, 3), "finished": now(),
        })
        clean_stage_checkpoints(stage_dir)

    def restore(self, stage_dir: Path) -> None:
        """Load a saved stage's weights and method state."""
        self.trainables.load(load_tensors(stage_dir / "weights.safetensors", self.loaded.device))
        load_method_state(stage_dir, self.method, self.loaded.device)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, stage: int) -> None:
        """Write the predictions of every task after ``stage`` (0 = base model), skipping complete cells."""
        from cvqa_bench.evaluate import generate_predictions

        stage_task = self.infos[stage - 1].name if stage else None
        pending = [
            (info, task) for info, task in zip(self.infos, self.prepared.tasks)
            if not predictions_complete(self.run.predictions(stage, stage_task, info.name), self._test_rows(task))
        ]
        if not pending:
            return
        current = self.trainables.snapshot() if stage else None
        with self._progress() as progress:
            for info, task in pending:
                self.interrupt.check(f"before evaluating {info.name!r} after stage {stage}")
                rows = self._test_rows(task)
                bar = progress.add_task(f"eval {RunDir.stage_name(stage, stage_task)} → {info.name}", total=len(rows))
                state = self.method.eval_state(info) if stage else None
                if state is not None:
                    self.trainables.load(state)  # the parameter group this task is routed to
                records = generate_predictions(
                    self.model, self.loaded.processor, rows, batch_size=self.config.eval.batch_size,
                    max_new_tokens=task.spec.max_new_tokens, pad_to_square=self.config.model.pad_to_square,
                    progress=lambda n, bar=bar: progress.advance(bar, n),
                )
                if state is not None:
                    self.trainables.load(current)
                atomic_write_jsonl(self.run.predictions(stage, stage_task, info.name), records)

    def _test_rows(self, task: Any) -> list[dict[str, Any]]:
        limit = self.config.eval.limit
        return task.test[:limit] if limit else task.test

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True)
