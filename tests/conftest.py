"""Shared fixtures: an isolated cache folder, small synthetic sequences, a small run config, a CLI invoker.

``CVQA_CACHE`` points at one folder per test session, so the tests never read or write the
developer's ``.cache/cvqa``; the tiny model and generated data are built into it once per session
(the tiny model in well under a second, a 3-task sequence in about a second).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

# One entry per synthetic skill the small sequences use: scorer, instruction rule, max_new_tokens
# (the same as tasks/synthetic.yaml).
SKILLS = {
    "color": ("vqa", "last_line", 8),
    "shape": ("contains", "last_line", 8),
    "count": ("exact", "last_line", 8),
    "position": ("grounding", "last_line_before_colon", 32),
}
SMALL_TASKS = ("color", "shape", "position")
# color and count share CoIN's short-answer instruction, so LLaCA's grouping joins them.
LLACA_TASKS = ("color", "count", "position")
SMALL_STEPS = 40  # colour reaches 75% of the 8 test rows by then (measured: 75.0-78.75 over seeds 0-2)
N_TRAIN, N_TEST = 32, 8


@pytest.fixture(autouse=True)
def working_folder_kept() -> Iterator[None]:
    """Fail the test that leaves the process in another working folder: later tests of its worker would
    resolve relative paths (configs/..., tasks/...) against it."""
    import os

    before = os.getcwd()
    yield
    try:
        after = os.getcwd()
    except FileNotFoundError:
        after = "(a removed folder)"
    if after != before:
        os.chdir(before)
        pytest.fail(f"the test left the working folder at {after} (use monkeypatch.chdir)")


@pytest.fixture(scope="session", autouse=True)
def cvqa_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``CVQA_CACHE`` at a fresh per-session folder for every test."""
    folder = tmp_path_factory.mktemp("cvqa-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CVQA_CACHE", str(folder))
        yield folder


def small_sequence_dict(name: str, tasks: Sequence[str]) -> dict:
    """A generated sequence of synthetic ``tasks``, 32 train and 8 test rows per task."""
    return {
        "name": name,
        "description": "synthetic skills, small, for tests",
        "image_folder": "images",
        "generator": {"name": "synthetic", "seed": 0, "n_train": N_TRAIN, "n_test": N_TEST, "image_size": 32},
        "tasks": [
            {"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": SKILLS[t][0],
             "instruction": SKILLS[t][1], "max_new_tokens": SKILLS[t][2]}
            for t in tasks
        ],
    }


@pytest.fixture(scope="session")
def small_sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the color → shape → position sequence YAML (data generated into the cache on first use)."""
    path = tmp_path_factory.mktemp("sequence") / "small3.yaml"
    path.write_text(yaml.safe_dump(small_sequence_dict("small3", SMALL_TASKS), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def llaca_sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the color → count → position sequence YAML (count joins colour's LLaCA group)."""
    path = tmp_path_factory.mktemp("sequence") / "llaca3.yaml"
    path.write_text(yaml.safe_dump(small_sequence_dict("llaca3", LLACA_TASKS), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory, small_sequence: Path) -> Path:
    """Path of a small run config: 40 steps of batch 8 per task at constant lr 5e-3, eval batch 16."""
    config = {
        "sequence": str(small_sequence),
        "seed": 0,
        "train": {"max_steps": SMALL_STEPS, "batch_size": 8, "lr": 5.0e-3, "scheduler": "constant",
                  "warmup_ratio": 0.0},
        "eval": {"batch_size": 16},
        "method": {"name": "finetune"},
    }
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the previous count."""
    # On a busy 2-core machine torch's thread pool spins against other processes: a small run took
    # 85 s with 2 threads and 17 s with 1 (same matrix). The tiny model gains nothing from 2 threads.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def invoke(*args: str | Path) -> Result:
    """``cvqa ARGS`` in-process (typer's CliRunner, stderr kept apart), torch on one thread."""
    from cvqa_bench.cli import app  # late: collecting the tests stays cheap

    with one_torch_thread():
        return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def cvqa() -> Callable[..., Result]:
    """:func:`invoke`: run ``cvqa`` with the given arguments and return typer's ``Result``."""
    return invoke


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root`` (folders included as ``<dir>``)."""
    out: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


@pytest.fixture(scope="session")
def digest() -> Callable[[Path], dict[str, str]]:
    """:func:`tree_digest`, for tests that check a folder is left unchanged."""
    return tree_digest

