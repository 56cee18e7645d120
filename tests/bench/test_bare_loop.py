"""The bare-loop benchmark (cvqa_bench/bench/bare_loop.py) does the harness's work: a short LLaCA run through
`cvqa run` and through the bare loop end with the same tensors, predictions and matrix; a changed tensor is
caught. No timing here: benchmarks/bare_loop.py measures."""

from __future__ import annotations

import pytest
import torch
import yaml

from cvqa_bench.bench.bare_loop import bare_run, compare_with_run, sampler_order, save_result


def test_the_sampler_order_is_a_permutation_per_epoch_from_seed_plus_epoch():
    order = sampler_order(5, 12, data_seed=7)
    epochs = [torch.randperm(5, generator=torch.Generator().manual_seed(7 + e)).tolist() for e in range(3)]
    assert order == (epochs[0] + epochs[1] + epochs[2])[:12]


def test_the_bare_loop_ends_where_the_harness_does(cvqa, tmp_path, small_config, small_sequence):
    config = yaml.safe_load(small_config.read_text())
    config["sequence"] = str(small_sequence)
    config["method"] = {"name": "llaca"}
    config["train"].update({"max_steps": 6, "scheduler": "cosine", "warmup_ratio": 0.2, "max_grad_norm": 0.05})
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cvqa("run", "--config", path, "--out", tmp_path / "harness")
    assert result.exit_code == 0, result.output
    bare = bare_run(path)
    save_result(bare, tmp_path / "bare")
    assert compare_with_run(tmp_path / "bare", tmp_path / "harness") == {
        "stage_tensors": 3 * len(bare.weights[1]), "predictions": 4 * 3 * 8, "cells": 12}
    changed = dict(bare.weights[2])
    name = next(iter(changed))
    changed[name] = changed[name] + 1e-7
    bare.weights[2] = changed
    save_result(bare, tmp_path / "bare")
    with pytest.raises(AssertionError, match=f"stage 2: {name} differs"):
        compare_with_run(tmp_path / "bare", tmp_path / "harness")
