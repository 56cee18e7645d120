"""The stateful part of a run: the model, the method and the per-stage train / save / restore / evaluate steps.

Under a multi-process launch every process holds the model and the method and runs the same steps;
the main process alone decides what the run folder already holds (broadcast to the others) and
writes every file, and each process evaluates a shard of the test rows that the main process merges.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from transformers import set_seed as seed_everything

from cvqa_bench.run.training import distributed
from cvqa_bench.run.state.adapters import save_stage_adapters
from cvqa_bench.run.state.checkpoint import (
    all_finite,
    latest_checkpoint,
    load_method_state,
    load_trainables,
    save_method_state,
    save_tensors,
)
from cvqa_bench.config import ConfigError
from cvqa_bench.run.watching.signals import NO_INTERRUPT, InterruptFlag
from cvqa_bench.io import atomic_write_json, atomic_write_jsonl
from cvqa_bench.run.state.manifest import build_manifest, check_same_model, now, read_manifest
from cvqa_bench.run.state.inputs import RunInputs
from cvqa_bench.models.fingerprint import model_content_hash
from cvqa_bench.models.vision_cache import vision_cache_off
from cvqa_bench.methods.base import TaskContext, Trainables
from cvqa_bench.models.load import base_provenance, load_model, model_directory
from cvqa_bench.rundir import RunDir
from cvqa_bench.errors import NonFiniteError
from cvqa_bench.run.watching.progress import RunProgress
from cvqa_bench.run.prepare import PreparedRun, pads_to_square, resolved_protocol, task_max_new_tokens, task_train_spec
from cvqa_bench.run.state.resume import cell_status, clean_stage_checkpoints, write_cell_inputs
from cvqa_bench.run.state.resume import stale_cell_message, trainer_inputs_match, write_trainer_inputs
from cvqa_bench.run.state.integrity import StageDamaged, discard_done, done_stage, write_done
from cvqa_bench.run.state.checkpoint import read_stage
from cvqa_bench.run.training.train import StageResult, interrupt_requested, train_stage
from cvqa_bench.run.training.batches import batch_source
from cvqa_bench.run.evaluation.eval_cells import CellEvaluator
from cvqa_bench.scoring.seals import seal_problem
from cvqa_bench.models.prompting import TrainCollator


class StageRunner:
    """Holds the loaded model and the method across the stages of one run."""

    def __init__(self, prepared: PreparedRun, run: RunDir, console: Console | None = None,
                 interrupt: InterruptFlag = NO_INTERRUPT, progress: RunProgress | None = None) -> None:
        self.prepared = prepared
        self.interrupt = interrupt
        self.config = prepared.config
        self.run = run
        self.console = console or Console(stderr=True)
        if not distributed.is_main():
            self.console = Console(stderr=True, quiet=True)  # one progress display per run
        self.progress = progress or RunProgress(prepared, run, self.console, main=distributed.is_main())
        self.infos = prepared.task_infos()
        self.inputs = RunInputs(prepared)  # content hashes of rows, images, stages and cells
        seed_everything(self.config.seed)  # LoRA init draws from the global RNG: the same on every process
        with distributed.main_first():  # the tiny model is built into the cache once
            model_directory(self.config.model)
        self.loaded = load_model(self.config.model)
        self.model = self.loaded.model
        prepared.method.prepare_model(self.model, self.infos)  # per-task adapters, experts: before the set is fixed
        self.trainables = Trainables(self.model)
        self.method = prepared.method
        self.method.setup(self.infos)
        for note in self.method.notes():  # e.g. where a computed LLaCA schedule differs from the pinned one
            self.progress.say(note)  # the console and run.log
        self.cells = CellEvaluator.for_run(self.config, self.loaded, self.trainables, self.method, self.run)
        self.vision_cache_off = off = vision_cache_off(self.model)  # the family's reason, or a trainable tower
        if off and (self.config.eval.vision_cache or self.config.train.vision_cache):
            self.progress.say(f"vision-feature cache off (eval.vision_cache, train.vision_cache): {off}")
        if self.cells.index is not None and self.cells.index.damage:
            self.console.print(f"{self.cells.index.damage}; set aside, every cell is checked and redone",
                               markup=False, highlight=False, soft_wrap=True)

    # -- manifest ---------------------------------------------------------------------------------
    def write_manifest(self) -> None:
        """Write manifest.json (kept from an earlier attempt when resuming, with a resume timestamp)."""
        distributed.run_on_main(self._write_manifest)

    def _write_manifest(self) -> None:
        model_hash = model_content_hash(Path(self.loaded.source), self.inputs.files)
        if self.run.manifest.is_file():
            manifest = read_manifest(self.run.manifest)
            check_same_model(self.run.manifest, manifest, model_hash, self._model_name())
            manifest.setdefault("resumed", []).append(now())
            manifest["data"] = self.inputs.data_record()  # what is made from other data is redone from this one
        else:
            model = {"source": self.loaded.source, "dtype": self.config.model.dtype, "content_sha256": model_hash,
                     "trainable_params": self.trainables.numel(), "vision_cache_off": self.vision_cache_off,
                     **base_provenance(self.config.model, self.loaded.source)}
            manifest = build_manifest(self.config.model_dump(mode="json"), self.inputs.data_record(), model)
            manifest["data_root"] = str(self.prepared.data_root)
            manifest["invocation"] = self.prepared.invocation  # what the command line changed (shortened runs)
            manifest["distributed"] = self._processes()
            manifest["protocol"] = resolved_protocol(self.config, self.prepared.sequence, distributed.world_size())
            manifest["method"] = {"options": self.config.method.options, "schedule": self.method.schedule(),
                                  "notes": self.method.notes()}
        atomic_write_json(self.run.manifest, manifest)

    def _model_name(self) -> str:
        spec = self.config.model
        return f"model.tiny {spec.tiny} (built as {self.loaded.source})" if spec.tiny else f"model.path {spec.path}"

    def _processes(self) -> dict[str, Any]:
        world = distributed.world_size()
        train = self.config.train
        return {"world_size": world, "backend": distributed.backend(),
                "rows_per_step": train.batch_size * train.grad_accum * world}

    def finish_manifest(self) -> None:
        """Stamp the end time."""
        distributed.run_on_main(self._finish_manifest)

    def _finish_manifest(self) -> None:
        manifest = read_manifest(self.run.manifest)
        manifest["finished"] = now()
        manifest["cells"] = cells = self.cells.counts()  # generated / copied from an identical earlier cell
        self.console.print(f"cells: {cells['computed']} computed, {cells['reused']} reused (identical to an earlier cell)")
        atomic_write_json(self.run.manifest, manifest)

    # -- training ---------------------------------------------------------------------------------
    def train_or_restore(self, stage: int) -> None:
        """Train stage ``stage`` (1-based) and save it, or restore it when its DONE marker matches."""
        info = self.infos[stage - 1]
        task = self.prepared.tasks[stage - 1]
        stage_dir = self.run.stage_dir(stage, info.name)
        expected = self._stage_hash(stage)
        done, checkpoint = distributed.run_on_main(self._stage_on_disk, stage_dir, expected)
        if done:
            try:
                self.restore(stage_dir)
                self.progress.restored(stage, info.name)
                return
            except StageDamaged as exc:  # nothing of it was applied
                self.console.print(f"{exc}; redoing stage {stage}", markup=False, highlight=False, soft_wrap=True)
                distributed.run_on_main(discard_done, stage_dir)
        ctx = TaskContext(stage=stage, task=info, tasks=self.infos, trainables=self.trainables, model=self.model)
        if checkpoint is not None:  # resume inside the stage: the method state saved with that checkpoint
            load_method_state(checkpoint, self.method, self.loaded.device)
            load_trainables(checkpoint, self.trainables, self.loaded.device)  # those the Trainer does not save
        rows = self.method.train_rows(info, task.train)
        display = self.progress.training(stage, info.name, len(rows), checkpoint)
        seed_everything(self.config.seed * 1000 + stage)
        started = time.perf_counter()
        self.method.before_task(ctx)
        train_spec = task_train_spec(self.config.train, task.spec, distributed.world_size())
        distributed.run_on_main(write_trainer_inputs, stage_dir / "trainer", expected)
        pad = pads_to_square(self.config, task.spec.image_aspect.train)
        ctx.batches = batch_source(  # the task's own rows, for after_task (EWC's Fisher)
            task.train, TrainCollator(self.loaded.processor, train_spec.max_length, pad), train_spec.batch_size,
            self.loaded.device, seed=self.config.seed * 1000 + stage)
        if rows:
            result = train_stage(
                self.model, self.loaded.processor, rows, self.method, info, self.trainables, train_spec,
                stage_dir / "trainer", seed=self.config.seed * 1000 + stage,
                pad_to_square=pad, resume_from=checkpoint, interrupt=self.interrupt,
                callbacks=[display], tracker_dir=self.progress.tracker_dir(stage, info.name),
                vision_features=train_spec.vision_cache,
            )
        else:  # the method trains nothing in this stage (joint before its one stage on every task)
            result = StageResult(steps=0, final_loss=float("nan"), losses=[])
        self.method.after_task(ctx)
        weights = self.trainables.snapshot()
        bad = all_finite(weights) or all_finite(self.method.state_dict())
        if bad is not None:
            raise NonFiniteError(f"task {info.name!r}: {bad!r} is not finite after the stage; nothing was saved")
        distributed.run_on_main(self._save_stage, stage_dir, weights, {
            "stage": stage, "task": info.name, "stage_hash": expected, "steps": result.steps,
            "train_loss": result.final_loss if result.steps else None, "losses": result.losses, "rows": len(rows),
            "rows_per_step": train_spec.batch_size * train_spec.grad_accum * distributed.world_size(),
            "image_aspect": "pad" if pads_to_square(self.config, task.spec.image_aspect.train) else "crop",
            "world_size": distributed.world_size(), "vision_features": result.vision_features,
            "seconds": round(time.perf_counter() - started, 3),
        })

    def _stage_on_disk(self, stage_dir: Path, expected: str) -> tuple[bool, Path | None]:
        """(stage done with this hash, newest complete in-stage checkpoint); refuses another process count."""
        usable, problem = done_stage(stage_dir, expected)  # sealed, intact, same inputs
        if usable:
            return True, None
        if problem is not None:
            self.console.print(f"{problem}; redoing this stage", markup=False, highlight=False, soft_wrap=True)
            discard_done(stage_dir)
        if not trainer_inputs_match(stage_dir / "trainer", expected):
            clean_stage_checkpoints(stage_dir)  # in-stage checkpoints made from other inputs
        manifest = read_manifest(self.run.manifest) if self.run.manifest.is_file() else {}
        before = manifest.get("distributed", {}).get("world_size", 1)
        if before != distributed.world_size():
            raise ConfigError(
                f"{self.run.manifest}: this run trains with {before} process(es), this launch has "
                f"{distributed.world_size()}; a stage trained with another count would see another number of "
                f"rows per optimizer step (batch_size x grad_accum x processes). Relaunch with {before} "
                "process(es), or start a new run with --out"
            )
        return False, latest_checkpoint(stage_dir / "trainer", report=self._say)

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _save_stage(self, stage_dir: Path, weights: dict[str, Any], done: dict[str, Any]) -> None:
        save_tensors(stage_dir / "weights.safetensors", weights)
        save_method_state(stage_dir, self.method)
        save_stage_adapters(self.model, self.trainables, self.method, self.infos, stage_dir)  # PEFT format
        atomic_write_json(self.run.method_records, self.method.records())
        write_done(stage_dir, {**done, "finished": now()})  # seals the SHA-256 of every stage file
        clean_stage_checkpoints(stage_dir)

    def restore(self, stage_dir: Path) -> None:
        """Load a saved stage's weights and method state (StageDamaged, and nothing applied, if unusable)."""
        weights, tensors, extra = read_stage(stage_dir, self.loaded.device)
        self.trainables.load(weights)
        self.method.load_state(tensors, extra)

    def _stage_hash(self, stage: int) -> str:
        return self.inputs.stage_hash(stage)

    def _cell_inputs(self, stage: int, task: Any) -> dict[str, str]:
        return self.inputs.cell_inputs(stage, task)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, stage: int) -> None:
        """Write the predictions of every task after ``stage`` (0 = base model), skipping complete cells.

        A cell identical to an earlier one (weights, test split, settings) gets a copy of its predictions
        (``eval.reuse_cells``, ``run/evaluation/eval_cells.py``). Each process generates a shard of whole batches; the
        main process merges them in row order.
        """
        from cvqa_bench.run.evaluation.samples import with_sample_fields

        stage_task = self.infos[stage - 1].name if stage else None
        pending = distributed.run_on_main(self._pending, stage, stage_task)
        if not pending:
            return
        current = self.trainables.snapshot() if stage else None
        batch_size = self.config.eval.batch_size
        with self.progress.evaluation(stage, [self.infos[i].name for i in pending]) as progress:
            for index in pending:
                info, task = self.infos[index], self.prepared.tasks[index]
                interrupt_requested(self.interrupt)
                self.interrupt.check(f"before evaluating {info.name!r} after stage {stage}")
                rows = self._test_rows(task)
                target, inputs = self.run.predictions(stage, stage_task, info.name), self._cell_inputs(stage, task)
                state = self.method.eval_state(info) if stage else None
                if state is not None:
                    self.trainables.load(state)  # the parameter group this task is routed to
                pad, max_new = pads_to_square(self.config, task.spec.image_aspect.eval), task_max_new_tokens(self.config, task.spec)
                key = self.cells.key(inputs["test_items"], {"max_new_tokens": max_new, "pad_to_square": pad},
                                     self.method.eval_signature(info))
                if distributed.run_on_main(self.cells.try_reuse, key, target):
                    distributed.run_on_main(write_cell_inputs, target, inputs)
                else:
                    bar = progress.add_task(f"eval {RunDir.stage_name(stage, stage_task)} → {info.name}",
                                            total=-(-len(rows) // distributed.world_size()))
                    pairs = self.cells.generate(info.name, rows, batch_size, max_new, pad,
                                                lambda n, bar=bar: progress.advance(bar, n))
                    records = with_sample_fields([r for _, r in pairs], [rows[i] for i, _ in pairs],
                                                 self.loaded.processor, self.config.eval.log_samples,
                                                 self.prepared.data_root)
                    shards = distributed.gather_to_main([(i, r) for (i, _), r in zip(pairs, records)])
                    distributed.run_on_main(self._write_predictions, target, shards, len(rows), inputs)
                    distributed.run_on_main(self.cells.record, key, target)
                if state is not None:
                    self.trainables.load(current)

    def _pending(self, stage: int, stage_task: str | None) -> list[int]:
        """Indices of the tasks whose predictions after ``stage`` are missing or incomplete."""
        pending = []
        sealed = self.cells.index.cells if self.cells.index is not None else {}
        for i, (info, task) in enumerate(zip(self.infos, self.prepared.tasks)):
            path = self.run.predictions(stage, stage_task, info.name)
            status = cell_status(path, self._test_rows(task), self._cell_inputs(stage, task))
            if status is None and (broken := seal_problem(sealed, self.run.root, path)) is not None:
                status = "seal"
                self.console.print(f"{broken}; redoing this cell", markup=False, highlight=False, soft_wrap=True)
            if status is not None:
                pending.append(i)
            message = stale_cell_message(path, status, self.prepared.data_root / task.spec.test)
            if message:
                self.console.print(message, markup=False, highlight=False, soft_wrap=True)
        return pending

    @staticmethod
    def _write_predictions(path: Path, shards: list[list[tuple[int, dict[str, Any]]]] | None, n_rows: int,
                           inputs: dict[str, str]) -> None:
        assert shards is not None  # the main process received every shard
        atomic_write_jsonl(path, distributed.merge_indexed(shards, n_rows))
        write_cell_inputs(path, inputs)  # after the predictions: a kill between them redoes the cell

    def _test_rows(self, task: Any) -> list[dict[str, Any]]:
        return self.inputs.test_rows(task)
