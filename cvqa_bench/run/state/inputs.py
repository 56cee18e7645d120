"""What a run's numbers are made from, hashed by content: rows and their images' bytes, stages, cells.

A stage hash (``run/state/resume.py`` ``stage_hash``) covers the training rows of the tasks up to it; here
each task's rows hash takes in the SHA-256 of every image the rows name (``data/file_hashes.py``:
read once, then known by stat), so pixels replaced under the same file names change the hash. A
cell's test-items hash covers its test images the same way. The manifest records these hashes per
task (``data``) and the base model's content hash (``models/fingerprint.py``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cvqa_bench.data.file_hashes import FileHashes
from cvqa_bench.run.prepare import PreparedRun
from cvqa_bench.run.state.resume import rows_hash, stage_hash


def content_rows_hash(rows: list[dict[str, Any]], image_root: Any, files: FileHashes) -> str:
    """:func:`rows_hash` of ``rows`` (order included) extended with the SHA-256 of each row's image bytes."""
    digests = files.digests(r["image"] for r in rows if r.get("image"))
    images = [digests[r["image"]] if r.get("image") else None for r in rows]
    payload = rows_hash(rows, image_root) + json.dumps(images)
    return hashlib.sha256(payload.encode()).hexdigest()


class RunInputs:
    """The content hashes of one run's inputs, each computed once per run (images through ``files``)."""

    def __init__(self, prepared: PreparedRun, files: FileHashes | None = None) -> None:
        self.prepared = prepared
        self.files = files or FileHashes()
        self._train: list[str] | None = None
        self._test: dict[str, str] = {}
        self._stages: dict[int, str] = {}

    def test_rows(self, task: Any) -> list[dict[str, Any]]:
        """The test rows a cell answers (the first ``eval.limit`` when set)."""
        limit = self.prepared.config.eval.limit
        return task.test[:limit] if limit else task.test

    def train_hashes(self) -> list[str]:
        """Each task's training rows and images, in sequence order."""
        if self._train is None:
            self._train = [content_rows_hash(t.train, t.image_root, self.files) for t in self.prepared.tasks]
        return self._train

    def test_hash(self, task: Any) -> str:
        """The test rows a cell answers and their images."""
        if task.spec.name not in self._test:
            self._test[task.spec.name] = content_rows_hash(self.test_rows(task), task.image_root, self.files)
        return self._test[task.spec.name]

    def stage_hash(self, stage: int) -> str:
        """What stage ``stage`` (1-based) is made from: the config, the tasks up to it, their rows and images."""
        if stage not in self._stages:
            self._stages[stage] = stage_hash(self.prepared.config, self.prepared.sequence, stage, self.train_hashes())
        return self._stages[stage]

    def cell_inputs(self, stage: int, task: Any) -> dict[str, str]:
        """What a predictions file after ``stage`` is made from (its ``.inputs.json``)."""
        return {"test_items": self.test_hash(task), "stage": self.stage_hash(stage),
                "task": rows_hash([task.spec.model_dump(mode="json")])}  # its generation length, image aspect

    def data_record(self) -> dict[str, dict[str, Any]]:
        """The manifest's ``data``: per task the file hashes, the content hashes of its rows and images, counts."""
        from cvqa_bench.data.coin import file_sha256

        root, train = self.prepared.data_root, self.train_hashes()
        return {
            t.spec.name: {
                "train": file_sha256(root / t.spec.train), "test": file_sha256(root / t.spec.test),
                "train_items": train[i], "test_items": content_rows_hash(t.test, t.image_root, self.files),
                "n_train": len(t.train), "n_test": len(t.test),
                **({"answers": file_sha256(root / t.spec.answers_file)} if t.spec.answers_file else {}),
            }
            for i, t in enumerate(self.prepared.tasks)
        }
