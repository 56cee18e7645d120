"""The built wheel carries the built-in sequences and presets: from a fresh venv, outside the repository,
``cvqa list sequences`` names them and ``cvqa validate synthetic`` passes.

The wheel is built from a copy of the package (``pip wheel --no-deps --no-build-isolation``, offline) and
installed with ``--no-deps`` into a venv without system site-packages; the dependencies come from this
test's own environment through a ``.pth`` line naming its site-packages folder. A ``.pth`` line only adds a
folder to ``sys.path`` (the ``.pth`` files inside it are not run), so the editable install of the checkout
stays invisible; the test checks that ``cvqa_bench`` is imported from the fresh venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from cvqa_bench.config.loading import sequence_names

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding only the wheel of this checkout; returns its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cvqa_bench", source / "cvqa_bench", ignore=shutil.ignore_patterns("__pycache__"))
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                 ".", "-w", tmp / "wheels", cwd=source)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "wheels").glob("cvqa_bench-*.whl"))
    venv = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
                     wheel, cwd=tmp)
    assert installed.returncode == 0, installed.stderr
    return venv / "bin"


def _cvqa(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return _run(bin_dir / "cvqa", *args, cwd=cwd, env={**env, "COLUMNS": "200"})


def test_the_wheel_alone_lists_and_validates_the_built_in_sequences(fresh_venv: Path, tmp_path: Path) -> None:
    where = _run(fresh_venv / "python", "-c", "import cvqa_bench; print(cvqa_bench.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(fresh_venv.parent)), where.stdout + where.stderr
    listed = _cvqa(fresh_venv, "list", "sequences", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == sequence_names() == sorted(p.stem for p in (ROOT / "tasks").glob("*.yaml"))
    synthetic = yaml.safe_load((ROOT / "tasks" / "synthetic.yaml").read_text())
    assert f"{synthetic['description']} [{' → '.join(t['name'] for t in synthetic['tasks'])}]" in listed.stdout
    checked = _cvqa(fresh_venv, "validate", "synthetic", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith("ok")


def test_a_local_tasks_folder_takes_precedence(fresh_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    mine = yaml.safe_load((ROOT / "tasks" / "synthetic.yaml").read_text())
    mine["description"] = "my own copy"
    (tmp_path / "tasks" / "synthetic.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))
    (tmp_path / "tasks" / "mine.yaml").write_text(yaml.safe_dump({**mine, "name": "mine"}, sort_keys=False))
    listed = _cvqa(fresh_venv, "list", "sequences", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert sorted(rows) == sorted({*sequence_names(), "mine"})
    assert "my own copy" in rows["synthetic"] and "my own copy" in rows["mine"]
    assert "my own copy" not in rows["regression"]


def test_a_preset_and_its_model_file_resolve_inside_the_wheel(fresh_venv: Path, tmp_path: Path) -> None:
    code = ("from cvqa_bench.config import load_run_config; from cvqa_bench.config.base import project_path; "
            "c = load_run_config('default'); print(c.method.name); print(project_path(c.model.tiny))")
    shown = _run(fresh_venv / "python", "-c", code, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    method, tiny = shown.stdout.split()
    assert method == yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["method"]["name"]
    assert tiny.startswith(str(fresh_venv.parent)) and tiny.endswith("builtin/configs/models/tiny.yaml")
    assert Path(tiny).read_bytes() == (ROOT / "configs" / "models" / "tiny.yaml").read_bytes()
