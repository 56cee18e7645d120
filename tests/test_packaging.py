"""The built wheel carries the built-in sequences and presets: from a fresh venv, outside the repository,
``cvqa list sequences`` names them and ``cvqa validate synthetic`` passes; a tiny ``cvqa run`` from an empty
folder writes nothing under site-packages and caches where docs/paths.md says (issue 31, item 1).

The wheel is built from a copy of the package (``pip wheel --no-deps --no-build-isolation``, offline) and
installed with ``--no-deps`` into a venv without system site-packages; the dependencies come from this
test's own environment through a ``.pth`` line naming its site-packages folder. A ``.pth`` line only adds a
folder to ``sys.path`` (the ``.pth`` files inside it are not run), so the editable install of the checkout
stays invisible; the test checks that ``cvqa_bench`` is imported from the fresh venv.
"""

from __future__ import annotations

import json
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
    if env is None:  # the fresh venv must not see this checkout through PYTHONPATH
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
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


def _user_env(home: Path) -> dict[str, str]:
    """A user's environment: no CVQA_CACHE, a home and a user cache folder of its own, no bytecode written
    (so that any file that appears under site-packages was written by cvqa-bench)."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "CVQA_CACHE"}}
    return {**env, "COLUMNS": "200", "HOME": str(home), "XDG_CACHE_HOME": str(home / "xdg-cache"),
            "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}


def _cvqa(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(bin_dir / "cvqa", *args, cwd=cwd, env=env or _user_env(cwd.parent / f"{cwd.name}-home"))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime in ns) of everything under ``root``."""
    return {p.relative_to(root).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def test_the_installed_wheel_runs_from_an_empty_folder_and_writes_nothing_under_site_packages(
        fresh_venv: Path, tmp_path: Path) -> None:
    """Issue 31 (1, 6, 8): list, validate and a tiny run of the default method; the caches go to the user cache
    folder (``$XDG_CACHE_HOME/cvqa`` here, platformdirs), the run to the working directory, nothing into the
    package; results.json validates against the schema the wheel ships."""
    import jsonschema

    site = Path(_run(fresh_venv / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).stdout.strip())
    work, home = tmp_path / "empty", tmp_path / "home"
    work.mkdir()
    env = _user_env(home)
    before = _tree(site)
    listed = _cvqa(fresh_venv, "list", "methods", cwd=work, env=env)
    assert listed.returncode == 0 and "llaca" in listed.stdout, listed.stderr
    assert _cvqa(fresh_venv, "validate", "synthetic", cwd=work, env=env).stdout.strip().endswith("ok")
    ran = _cvqa(fresh_venv, "run", "--sequence", "regression", "--limit", "2", "--set", "train.max_steps=1",
                "--set", "train.batch_size=2", "--set", "eval.batch_size=8", "-q", cwd=work, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert _tree(site) == before  # not one file added, changed or removed under site-packages
    run = work / "results" / "regression-llaca-seed0"  # bare `cvqa run` trains the default, llaca
    assert yaml.safe_load((run / "config.yaml").read_text())["method"]["name"] == "llaca"
    assert sorted(p.name for p in work.iterdir()) == ["results"]
    cache = home / "xdg-cache" / "cvqa"
    assert {"data", "models", "vision"} <= {p.name for p in cache.iterdir()}
    assert [p.name.split("-")[0] for p in (cache / "models").iterdir()] == ["tiny"]
    assert {p.name.split("-")[0] for p in (cache / "data").iterdir()} == {"regression", "synthetic"}
    shipped = site / "cvqa_bench" / "report" / "results.schema.json"
    jsonschema.validate(json.loads((run / "results.json").read_text()), json.loads(shipped.read_text()))
    assert json.loads((run / "manifest.json").read_text())["git_commit"] is None  # no checkout, no commit


def test_experiments_and_their_relative_paths_resolve_from_an_empty_folder(fresh_venv: Path, tmp_path: Path) -> None:
    """Issue 31 (1): the help's own `cvqa experiment configs/reproduce.yaml` and a relative run_config find the
    built-in files; `out` lands in the working directory (docs/paths.md)."""
    (tmp_path / "mine.yaml").write_text("name: mine\nrun_config: configs/default.yaml\nmethods: [ema]\nseeds: [1]\n"
                                        "out: results/myexp\n")
    code = ("from cvqa_bench.run.experiment import load_experiment, planned_runs\n"
            "for name in ('configs/reproduce.yaml', 'reproduce', 'mine.yaml'):\n"
            "    print(*[f'{f} {c.method.name} {c.model.tiny}' for f, c in planned_runs(load_experiment(name))][:1])\n"
            "from cvqa_bench.config import load_sequence\n"
            "print(load_sequence('tasks/regression.yaml')[1])")
    shown = _run(fresh_venv / "python", "-c", code, cwd=tmp_path, env=_user_env(tmp_path / "home"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n")[:3] == ["results/reproduce/finetune-seed0 finetune configs/models/tiny.yaml",
                                            "results/reproduce/finetune-seed0 finetune configs/models/tiny.yaml",
                                            "results/myexp/ema-seed1 ema configs/models/tiny.yaml"]
    sequence = Path(shown.stdout.split("\n")[3])  # a sequence named by its repository path: the built-in file
    assert sequence.is_relative_to(fresh_venv.parent) and sequence.read_bytes() == (ROOT / "tasks" /
                                                                                 "regression.yaml").read_bytes()


def test_the_wheel_alone_lists_the_built_in_sequences(fresh_venv: Path, tmp_path: Path) -> None:
    where = _run(fresh_venv / "python", "-c", "import cvqa_bench; print(cvqa_bench.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(fresh_venv.parent)), where.stdout + where.stderr
    listed = _cvqa(fresh_venv, "list", "sequences", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == sequence_names() == sorted(p.stem for p in (ROOT / "tasks").glob("*.yaml"))
    synthetic = yaml.safe_load((ROOT / "tasks" / "synthetic.yaml").read_text())
    assert f"{synthetic['description']} [{' → '.join(t['name'] for t in synthetic['tasks'])}]" in listed.stdout


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
    code = ("from cvqa_bench.config import load_run_config; from cvqa_bench.config.base import resolve_path; "
            "c = load_run_config('default'); print(c.method.name); print(resolve_path(c.model.tiny))")
    shown = _run(fresh_venv / "python", "-c", code, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    method, tiny = shown.stdout.split()
    assert method == yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["method"]["name"]
    assert tiny.startswith(str(fresh_venv.parent)) and tiny.endswith("builtin/configs/models/tiny.yaml")
    assert Path(tiny).read_bytes() == (ROOT / "configs" / "models" / "tiny.yaml").read_bytes()


def test_the_cache_folder_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/paths.md: $CVQA_CACHE, else a checkout's .cache/cvqa, else the user cache folder (platformdirs)."""
    from cvqa_bench.config import base

    monkeypatch.setenv("CVQA_CACHE", str(tmp_path / "mine"))
    assert base.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("CVQA_CACHE")
    assert base.in_checkout() and base.cache_root() == ROOT / ".cache" / "cvqa"
    monkeypatch.setattr(base, "in_checkout", lambda: False)  # as from an installed wheel
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert base.cache_root() == tmp_path / "xdg" / "cvqa"


def test_relative_paths_resolve_against_the_working_directory_then_the_built_in_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cvqa_bench.config.base import resolve_config_path, resolve_path

    monkeypatch.chdir(tmp_path)
    builtin = ROOT / "cvqa_bench" / "builtin" / "configs" / "default.yaml"
    assert resolve_path("configs/default.yaml").resolve() == builtin.resolve()
    assert resolve_config_path("default").resolve() == builtin.resolve()
    assert resolve_path("results/x") == Path("results/x") and resolve_path("configs/nothing.yaml") == Path(
        "configs/nothing.yaml")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("seed: 5\n")
    assert resolve_path("configs/default.yaml") == Path("configs/default.yaml")  # the folder's own file wins
    assert resolve_config_path("default").resolve() == (tmp_path / "configs" / "default.yaml").resolve()


def test_torch_is_a_range_in_pyproject_and_the_exact_tested_pin_in_the_makefile() -> None:
    """Issue 31 (8): installing the package keeps a user's torch 2.x; `make` installs the tested 2.13.0."""
    import tomllib

    from packaging.requirements import Requirement

    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    torch = next(r.specifier for r in deps if r.name == "torch")
    assert "2.13.0" in torch and "2.6.0" in torch and "2.12.1" in torch and "3.0.0" not in torch
    assert '"torch==2.13.0"' in (ROOT / "Makefile").read_text()


def test_the_tensorboard_hint_works_for_an_installed_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from cvqa_bench.config import ConfigError, TrainSpec
    from cvqa_bench.run.watching import trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'cvqa-bench\[tensorboard\]'") as raised:
        trackers.check_trackers(TrainSpec(report_to=["tensorboard"]))
    assert " -e " not in str(raised.value)  # an editable install needs a checkout
    assert "tensorboard" in (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
