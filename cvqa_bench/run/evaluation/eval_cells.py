"""The evaluation of one matrix cell inside a run: reuse an identical earlier cell, else generate it.

:class:`CellEvaluator` belongs to a ``StageRunner``. Per cell it loads the weights the method routes the
task to, keys the cell (``run/evaluation/reuse.py``) and either copies an earlier cell's predictions or generates
them from the task's inputs encoded once per run (``run/evaluation/evaluate.py``), with cached vision features
when the vision tower is frozen (``models/vision_cache.py``). Under a multi-process launch every
process computes the same key; the main process alone reads and writes the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cvqa_bench.methods.base import Method, Trainables
from cvqa_bench.models.fingerprint import tensors_fingerprint
from cvqa_bench.models.vision_cache import VisionFeatureCache, tower_is_frozen
from cvqa_bench.run.training import distributed
from cvqa_bench.run.evaluation.evaluate import EvalInputs, generate_predictions, length_order, shard_rows
from cvqa_bench.run.evaluation.reuse import CellIndex, cell_key, copy_predictions


class WeightsFingerprint:
    """Exact hash of the weights a cell is evaluated with: every trainable tensor, plus any other
    parameter or buffer changed in place (or replaced) since the run's model was loaded."""

    def __init__(self, model: torch.nn.Module, trainables: Trainables) -> None:
        self.model = model
        self.trainables = trainables
        self.trainable = set(trainables.names)
        self.loaded = {n: self._stamp(t) for n, t in self._others()}

    @staticmethod
    def _stamp(tensor: torch.Tensor) -> tuple[int, int]:
        return tensor.data_ptr(), tensor._version  # _version counts in-place writes

    def _others(self) -> list[tuple[str, torch.Tensor]]:
        named = [(f"param:{n}", p) for n, p in self.model.named_parameters() if n not in self.trainable]
        return named + [(f"buffer:{n}", b) for n, b in self.model.named_buffers()]

    def __call__(self) -> str:
        changed = [(n, t) for n, t in self._others() if self.loaded.get(n) != self._stamp(t)]
        return tensors_fingerprint([*self.trainables.items(), *changed])


class CellEvaluator:
    """Reuse-or-generate for every cell of one run; keeps the encoded inputs and the vision cache."""

    def __init__(self, model: torch.nn.Module, processor: Any, trainables: Trainables, method: Method,
                 run_root: Path, cells_path: Path, settings: dict[str, Any], *, reuse: bool,
                 vision_folder: Path | None, sort_by_length: bool) -> None:
        self.model = model
        self.processor = processor
        self.trainables = trainables
        self.method = method
        self.settings = settings
        self.reuse = reuse
        self.sort_by_length = sort_by_length
        self.fingerprint = WeightsFingerprint(model, trainables)
        self.index = CellIndex(cells_path, run_root) if distributed.is_main() else None
        use_vision = vision_folder is not None and tower_is_frozen(model)
        self.vision = VisionFeatureCache(model, processor, vision_folder) if use_vision else None
        self.inputs: dict[str, tuple[list[int], EvalInputs]] = {}
        self.weights: str | None = None  # the fingerprint of the weights the latest key was made with

    @classmethod
    def for_run(cls, config: Any, loaded: Any, trainables: Trainables, method: Method, run: Any) -> CellEvaluator:
        """The evaluator of a run: its eval settings, model, method and run folder."""
        from cvqa_bench.data.sources import cache_root

        spec = config.eval
        settings = {"model": config.model.model_dump(mode="json"), "source": loaded.source,
                    "batch_size": spec.batch_size, "sort_by_length": spec.sort_by_length,
                    "log_samples": getattr(spec, "log_samples", None)}
        return cls(loaded.model, loaded.processor, trainables, method, run.root, run.cells, settings,
                   reuse=spec.reuse_cells, sort_by_length=spec.sort_by_length,
                   vision_folder=cache_root() / "vision" if spec.vision_cache else None)

    def _task_inputs(self, name: str, rows: list[dict[str, Any]], batch_size: int, pad: bool
                     ) -> tuple[list[int], EvalInputs]:
        """This process's row indices of the task (sorted by prompt length if asked) and their inputs."""
        if name not in self.inputs:
            order = length_order(self.processor, rows) if self.sort_by_length else list(range(len(rows)))
            shard = [order[j] for j in shard_rows(len(rows), batch_size, distributed.rank(), distributed.world_size())]
            self.inputs[name] = shard, EvalInputs(self.processor, [rows[i] for i in shard], batch_size, pad)
        return self.inputs[name]

    def key(self, test_hash: str, generation: dict[str, Any], task_signature: Any) -> str:
        """The key of the cell about to be evaluated with the weights now in the model."""
        self.weights = self.fingerprint()
        return cell_key(self.weights, test_hash, {**self.settings, **generation, "method": task_signature})

    def try_reuse(self, key: str, target: Path) -> bool:
        """Copy an earlier identical cell's predictions to ``target`` (main process; True when done)."""
        assert self.index is not None
        source = self.index.source_for(key, target) if self.reuse else None
        if source is not None:
            copy_predictions(source, target)
            self.index.record(target, key, source, self.weights)
        return source is not None

    def record(self, key: str, target: Path) -> None:
        """Index a computed cell (main process)."""
        assert self.index is not None
        self.index.record(target, key, None, self.weights)

    def generate(self, name: str, rows: list[dict[str, Any]], batch_size: int, max_new_tokens: int, pad: bool,
                 progress: Any) -> list[tuple[int, dict[str, Any]]]:
        """This process's (row index, record) pairs of the cell."""
        shard, inputs = self._task_inputs(name, rows, batch_size, pad)
        records = generate_predictions(self.model, self.processor, inputs.rows, batch_size=batch_size,
                                       max_new_tokens=max_new_tokens, pad_to_square=pad, progress=progress,
                                       inputs=inputs, vision=self.vision)
        return list(zip(shard, records))

    def counts(self) -> dict[str, int]:
        """Cells computed and reused so far (main process; zeros elsewhere)."""
        return self.index.counts() if self.index is not None else {"computed": 0, "reused": 0}
