"""The thread policy of `cvqa run` (run/threads.py): one count per run, recorded; short OpenMP waits; no number changes."""

from __future__ import annotations

import json

import pytest

from cvqa_bench.run import threads as policy


def test_explicit_counts_win_then_one_thread_for_a_tiny_model_and_bad_counts_are_refused(monkeypatch):
    from cvqa_bench.config import ConfigError, ModelSpec

    tiny, real = ModelSpec(), ModelSpec(path="/models/llava-1.5-7b-hf")  # the default is the tiny model
    assert (tiny.tiny, real.tiny) == ("configs/models/tiny.yaml", None)

    monkeypatch.setenv("CVQA_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for model in (tiny, real):
        assert policy.ThreadPolicy.for_run(model) == policy.ThreadPolicy("CVQA_THREADS", 3)
    for bad in ("many", "auto", "0"):
        monkeypatch.setenv("CVQA_THREADS", bad)
        with pytest.raises(ConfigError, match=f"CVQA_THREADS='{bad}'"):
            policy.ThreadPolicy.for_run(tiny)
    monkeypatch.delenv("CVQA_THREADS")
    for model in (tiny, real):  # torch reads OMP_NUM_THREADS itself: nothing to set
        assert policy.ThreadPolicy.for_run(model) == policy.ThreadPolicy("OMP_NUM_THREADS", 0)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert policy.ThreadPolicy.for_run(tiny) == policy.ThreadPolicy("tiny model", 1)
    assert policy.ThreadPolicy.for_run(real) == policy.ThreadPolicy("torch default", 0)


def test_a_bad_count_stops_the_command_with_one_line_before_any_folder_is_made(cvqa, tmp_path, small_config,
                                                                               small_sequence, monkeypatch):
    monkeypatch.setenv("CVQA_THREADS", "two")
    out = tmp_path / "never"
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: CVQA_THREADS='two': use a thread count (1, 2, ...)"]
    assert not out.exists()


def test_openmp_waits_are_shortened_unless_the_user_chose(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):  # set first: monkeypatch then restores what was there
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert policy.short_openmp_waits() == "GOMP_SPINCOUNT=1000"
    assert policy.os.environ["GOMP_SPINCOUNT"] == "1000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    assert policy.short_openmp_waits() == "GOMP_SPINCOUNT=300000 (set by the user)"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert policy.short_openmp_waits() == "OMP_WAIT_POLICY=ACTIVE (set by the user)"
    assert "GOMP_SPINCOUNT" not in policy.os.environ


def test_the_command_line_sets_the_wait_before_torch_loads():
    """libgomp reads GOMP_SPINCOUNT once, when torch loads it: the CLI module must set it without importing torch."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    probe = "import os, sys, cvqa_bench.cli; print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1000", "False"]


def test_a_run_on_one_and_two_threads_writes_the_same_bytes_and_records_the_count(cvqa, tmp_path, small_config,
                                                                                   small_sequence, monkeypatch):
    import torch

    before = torch.get_num_threads()
    outs = {}
    try:
        for count in ("1", "2"):
            monkeypatch.setenv("CVQA_THREADS", count)
            out = outs[count] = tmp_path / f"threads{count}"
            result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out,
                          "--set", "train.max_steps=6")
            assert result.exit_code == 0, result.output
            manifest = json.loads((out / "manifest.json").read_text())
            assert {k: manifest["threads"][k] for k in ("threads", "source")} == {"threads": int(count),
                                                                                   "source": "CVQA_THREADS"}
            assert f"torch threads: {count} (CVQA_THREADS;" in (out / "run.log").read_text()
    finally:
        torch.set_num_threads(before)
    one, two = outs["1"], outs["2"]
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.suffix in (".jsonl", ".safetensors", ".csv")
                   and p.relative_to(one).parts[0] != "logs")  # the logs hold timings
    assert len([f for f in files if f.suffix == ".jsonl"]) >= 12
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


@pytest.fixture
def no_count_set_torch_on_two(monkeypatch):
    """No CVQA_THREADS or OMP_NUM_THREADS, and torch on 2 threads, its default on a 2-core machine (the
    `cvqa` fixture would set 1); torch's own count back after."""
    import torch

    for name in ("CVQA_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_tiny_model_run_with_no_count_set_runs_on_one_thread_and_records_why(tmp_path, small_config,
                                                                               small_sequence,
                                                                               no_count_set_torch_on_two):
    from typer.testing import CliRunner

    from cvqa_bench.cli import app

    out = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["run", "--config", str(small_config), "--sequence", str(small_sequence),
                                      "--out", str(out), "--set", "train.max_steps=2"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "manifest.json").read_text())["threads"]
    assert {k: recorded[k] for k in ("threads", "source")} == {"threads": 1, "source": "tiny model"}
    assert "torch threads: 1 (tiny model;" in (out / "run.log").read_text()


def test_the_plots_are_drawn_after_the_final_table(cvqa, tmp_path, small_config, small_sequence, monkeypatch):
    from cvqa_bench.report import summary

    seen = {}
    real = summary.write_run_plots

    def spy(folder):
        seen["heatmap_before"] = (folder / "heatmap.png").exists()
        seen["matrix_before"] = (folder / "matrix.csv").exists()
        real(folder)

    monkeypatch.setattr(summary, "write_run_plots", spy)
    out = tmp_path / "plots"
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out,
                  "--set", "train.max_steps=2")
    assert result.exit_code == 0, result.output
    assert seen == {"heatmap_before": False, "matrix_before": True}
    assert "Accuracy matrix" in result.output and (out / "heatmap.png").stat().st_size > 0
    assert "heatmap.png" in (out / "report.md").read_text()


def test_an_experiments_tiny_runs_get_the_same_one_thread_policy(tmp_path, small_config, small_sequence,
                                                                  no_count_set_torch_on_two):
    import yaml

    from cvqa_bench.run.experiment import load_experiment, run_experiment

    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump({"name": "threads", "run_config": str(small_config), "methods": ["finetune"],
                                    "seeds": [0], "out": str(tmp_path / "exp"),
                                    "overrides": {"sequence": str(small_sequence), "train.max_steps": 2}}))
    run_experiment(load_experiment(spec), formats=("md",))
    recorded = json.loads((tmp_path / "exp" / "finetune-seed0" / "manifest.json").read_text())["threads"]
    assert {k: recorded[k] for k in ("threads", "source")} == {"threads": 1, "source": "tiny model"}
