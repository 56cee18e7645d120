"""Where a sequence's data lives: data-root resolution and materialisation of generated sequences.

Order of precedence for the data root: an explicit ``--data-root``, then the sequence YAML's
``data_root`` (relative to the YAML's folder), then — for a sequence with a ``generator`` — a cache
folder the generator is materialised into once: ``<cache>/data/<name>-<hash>`` (``<cache>``: ``config.base.cache_root``,
``$CVQA_CACHE`` else the user cache folder). Materialisation writes into a temporary sibling folder with a
``DONE`` marker and renames it into place, so a reader never sees half a data set and concurrent
processes at worst generate twice.

The cache removes only what it made: its own temporary folders (``.<name>-<hash>.<pid>-<id>.tmp``,
those of a dead process too). A ``<name>-<hash>`` folder without ``DONE`` is never something it leaves
behind (the rename is atomic), so it is refused, not deleted. Sequence names are safe identifiers
(``config/sequence.py``), so the folder always lies inside ``<cache>/data``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from cvqa_bench.config import SequenceSpec, TaskSpec
from cvqa_bench.config.base import cache_root
from cvqa_bench.data.coin import TaskData, load_task, validate_task
from cvqa_bench.data.images import ImageChecker
from cvqa_bench.data.rows import DataError
from cvqa_bench.data.synthetic import GENERATOR_VERSION, generate
from cvqa_bench.io import atomic_write_json

DONE_MARKER = "DONE"


def generator_key(seq: SequenceSpec) -> str:
    """Short hash of what determines generated files: generator spec, task list, generator version."""
    if seq.generator is None:
        raise ValueError(f"sequence {seq.name!r} has no generator")
    payload = {"generator": seq.generator.model_dump(mode="json"), "tasks": seq.task_names(),
               "version": GENERATOR_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _check_generated_layout(seq: SequenceSpec) -> None:
    """The task paths must be the ones the generator writes, else loading would fail obscurely later."""
    for task in seq.tasks:
        expected = {"train": f"{task.name}/train.json", "test": f"{task.name}/test.json"}
        got = {"train": task.train, "test": task.test}
        folder = task.image_folder or seq.image_folder
        if got != expected or folder != "images":
            raise DataError(
                f"sequence {seq.name!r}, task {task.name!r}: a generated sequence needs train "
                f"{expected['train']!r}, test {expected['test']!r} and image_folder 'images'"
            )


def materialise(seq: SequenceSpec) -> Path:
    """Generate the sequence's files into the cache once and return that folder (instant when done).

    Raises:
        DataError: the task list does not match the generator's layout or skills.
    """
    if seq.generator is None:
        raise ValueError(f"sequence {seq.name!r} has no generator")
    _check_generated_layout(seq)
    final = cache_root() / "data" / f"{seq.name}-{generator_key(seq)}"
    if (final / DONE_MARKER).is_file():
        return final
    if final.is_symlink() or final.exists():
        raise DataError(f"{final}: exists but was not made by cvqa-bench (no {DONE_MARKER} marker); it is left "
                        "untouched: move it away, or point CVQA_CACHE at another folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(final.parent, final.name)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        try:
            generate(seq.generator, tmp, seq.task_names())
        except ValueError as exc:
            raise DataError(f"sequence {seq.name!r}: {exc}") from exc
        atomic_write_json(tmp / DONE_MARKER, {"generator": seq.generator.model_dump(mode="json"),
                                              "tasks": seq.task_names(), "version": GENERATOR_VERSION})
        _move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` folder to ``final`` unless another process already did.

    Raises:
        DataError: ``final`` exists without a ``DONE`` marker (not made by this cache: left alone).
    """
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if (final / DONE_MARKER).is_file():
            return  # another process won the race with identical content; ours is discarded
    raise DataError(f"{final}: exists but was not made by cvqa-bench (no {DONE_MARKER} marker); it is left "
                    "untouched: move it away, or point CVQA_CACHE at another folder")


def _remove_dead_temporaries(folder: Path, final_name: str) -> None:
    """Remove this cache's temporary folders of ``final_name`` whose process no longer exists."""
    for tmp in folder.glob(f".{final_name}.*-*.tmp"):
        pid = tmp.name[len(final_name) + 2:].split("-", 1)[0]
        if pid.isdigit() and tmp.is_dir() and not tmp.is_symlink() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_data_root(seq: SequenceSpec, seq_path: Path, data_root: str | None = None) -> Path:
    """The folder the task paths are relative to (see the module docstring for the precedence).

    Raises:
        DataError: the folder does not exist, or the sequence has neither data_root nor generator.
    """
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-root {root}: folder not found")
        return root.resolve()
    if seq.data_root is not None:
        root = Path(seq_path).parent / Path(seq.data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"{seq_path}: data_root {seq.data_root!r} ({root}) not found; pass --data-root")
        return root.resolve()
    if seq.generator is not None:
        return materialise(seq)
    raise DataError(
        f"{seq_path}: sequence {seq.name!r} has no data_root and no generator; "
        "pass --data-root pointing at the folder that holds its files"
    )


def image_root(seq: SequenceSpec, data_root: Path, task: TaskSpec | None = None) -> Path:
    """The image folder (the task's override, else the sequence's), relative to ``data_root``."""
    folder = task.image_folder if task is not None and task.image_folder else seq.image_folder
    return Path(data_root) / folder


def load_sequence_data(
    seq: SequenceSpec, seq_path: Path, data_root: str | None = None, check_images: bool = True
) -> list[TaskData]:
    """Every task of the sequence, loaded and validated, in sequence order.

    Raises:
        DataError: the first problem found in any task's files.
    """
    root = resolve_data_root(seq, seq_path, data_root)
    # shared: an image used by two tasks is checked once, and its decode kept for training and evaluation
    images = ImageChecker(seq.max_image_pixels, keep_decoded=True) if check_images else None
    return [load_task(task, root, image_root(seq, root, task), check_images, images, seq.allow_outside_root)
            for task in seq.tasks]


def validate_sequence_data(
    seq: SequenceSpec, seq_path: Path, data_root: str | None = None, check_images: bool = True,
    max_problems: int = 20,
) -> dict[str, list[str]]:
    """Task name → its problems (empty when the task is fine), for ``cvqa validate``.

    Raises:
        DataError: the data root itself cannot be resolved.
    """
    root = resolve_data_root(seq, seq_path, data_root)
    images = ImageChecker(seq.max_image_pixels) if check_images else None
    return {
        task.name: validate_task(task, root, image_root(seq, root, task), check_images, max_problems, images,
                                 seq.allow_outside_root)
        for task in seq.tasks
    }
