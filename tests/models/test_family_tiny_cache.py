"""The tiny-checkpoint cache is keyed by what builds the checkpoint: a changed preset, or a changed family module
(any module of ``models/families/``, which import helpers from each other), builds a new folder instead of
reusing a stale one; the same inputs reuse the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import cvqa_bench.models.families as families_package
from cvqa_bench.models.tiny import tiny_model_dir

PRESET = Path(__file__).parents[2] / "configs" / "models" / "tiny.yaml"


def test_the_same_preset_and_code_reuse_the_folder(tmp_path: Path) -> None:
    first = tiny_model_dir(PRESET, cache_root=tmp_path)
    assert (first / "DONE").is_file()
    assert tiny_model_dir(PRESET, cache_root=tmp_path) == first
    copy = tmp_path / "renamed.yaml"  # the content decides, not the file's name
    shutil.copyfile(PRESET, copy)
    assert tiny_model_dir(copy, cache_root=tmp_path) == first


def test_a_changed_preset_builds_a_new_folder(tmp_path: Path) -> None:
    first = tiny_model_dir(PRESET, cache_root=tmp_path)
    changed = tmp_path / "tiny.yaml"
    changed.write_text(PRESET.read_text().replace("seed: 1234", "seed: 1235"))
    assert changed.read_text() != PRESET.read_text()
    second = tiny_model_dir(changed, cache_root=tmp_path)
    assert second != first and (second / "DONE").is_file() and (first / "DONE").is_file()


@pytest.mark.parametrize("module", ["llava.py", "base.py", "anyres.py"])
def test_a_changed_family_module_builds_a_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     module: str) -> None:
    first = tiny_model_dir(PRESET, cache_root=tmp_path)
    code = tmp_path / "families"  # the family layer as it would be after an edit of ``module``
    shutil.copytree(Path(families_package.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    (code / module).write_text((code / module).read_text() + "\n# an edit\n")
    monkeypatch.setattr(families_package, "__file__", str(code / "__init__.py"))
    second = tiny_model_dir(PRESET, cache_root=tmp_path)
    assert second != first and (second / "DONE").is_file()
