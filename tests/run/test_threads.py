"""The thread policy of `cvqa run` (run/threads.py): the free cores, at least one; recorded; no number changes."""

from __future__ import annotations

import json

import pytest

from cvqa_bench.run import threads as policy


@pytest.mark.parametrize(("cores", "busy", "default", "expected"), [
    (2, 0.0, 2, 2),   # idle: torch's default
    (2, 0.2, 2, 2),   # noise
    (2, 1.0, 2, 1),   # one core taken: one thread
    (2, 2.0, 2, 1),   # both taken (two busy loops): one thread, never zero
    (2, 9.0, 2, 1),
    (8, 3.0, 8, 5),
    (8, 0.0, 4, 4),   # never above torch's default
])
def test_fair_threads_are_the_free_cores(cores, busy, default, expected):
    assert policy.fair_threads(cores, busy, default) == expected


def test_others_busy_discounts_this_process(monkeypatch, tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("2.50 1.00 0.50 4/300 1234\n")  # 4 runnable now, this process among them
    monkeypatch.setattr(policy, "LOADAVG", loadavg)
    monkeypatch.setattr(policy.os, "getloadavg", lambda: (2.5, 1.0, 0.5))
    assert policy.others_busy(2) == 3.0  # max(2.5 - 2, 4 - 1)
    loadavg.write_text("2.50 1.00 0.50 1/300 1234\n")
    assert policy.others_busy(2) == 0.5


def test_explicit_counts_win_and_bad_ones_are_refused(monkeypatch):
    from cvqa_bench.config import ConfigError

    monkeypatch.setenv("CVQA_THREADS", "3")
    assert policy.ThreadPolicy.from_environment().mode == "3"
    monkeypatch.setenv("CVQA_THREADS", "many")
    with pytest.raises(ConfigError, match="CVQA_THREADS='many'"):
        policy.ThreadPolicy.from_environment()
    monkeypatch.delenv("CVQA_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert policy.ThreadPolicy.from_environment().mode == "explicit"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert policy.ThreadPolicy.from_environment().mode == "auto"


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
            assert manifest["threads"]["policy"] == count
            assert [c["threads"] for c in manifest["threads"]["chosen"]] == [int(count)]
            assert f"torch threads: {count} from stage 0 (CVQA_THREADS)" in (out / "run.log").read_text()
    finally:
        torch.set_num_threads(before)
    one, two = outs["1"], outs["2"]
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.suffix in (".jsonl", ".safetensors", ".csv")
                   and p.relative_to(one).parts[0] != "logs")  # the logs hold timings
    assert len([f for f in files if f.suffix == ".jsonl"]) >= 12
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


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
