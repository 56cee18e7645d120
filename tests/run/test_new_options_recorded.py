"""Issue 27: every option it added is written into config.yaml, the manifest and results.json, and enters the
stage hash only away from its default.

One short run per case on a one-task synthetic sequence. The stage's hash (DONE.json: SHA-256 of the config
hash + the tasks up to the stage + the stage number + the tasks' training rows) is recomputed here by hand
from config.yaml without the fields that are never hashed and without the options whose value is their
default, as a run folder made before the options existed has them: so a default leaves an older folder's
stage hashes (and its resume) alone, and removing a non-default value would change the hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import invoke, small_sequence_dict

NEVER_HASHED = (("train", "report_to"), ("train", "logging_dir"), ("eval", "log_samples"), ("model", "device"))
LLACA_DEFAULTS = {"schedule": "pinned", "variant": "icml", "alpha_scale": 2.0, "fallback": 0.01,
                  "ema_dtype": "float32", "alpha_gradient": "step"}

# (method, --set options, what config.yaml must record, the recorded options that are at their default)
CASES = {
    "llaca-defaults": ("llaca", {}, LLACA_DEFAULTS, set(LLACA_DEFAULTS)),
    "llaca-changed": ("llaca", {"variant": "continual-next", "alpha_gradient": "micro_batch", "ema_dtype": "param",
                                "schedule": "computed", "overrides": {"color": {"eval_with": "color"}}},
                      {"schedule": "computed", "variant": "continual-next", "alpha_scale": 0.01, "fallback": 0.001,
                       "ema_dtype": "param", "alpha_gradient": "micro_batch",
                       "overrides": {"color": {"eval_with": "color"}}}, set()),
    "llaca-scale": ("llaca", {"alpha_scale": 3.0, "fallback": 0.02},
                    {**LLACA_DEFAULTS, "alpha_scale": 3.0, "fallback": 0.02},
                    {"schedule", "variant", "ema_dtype", "alpha_gradient"}),
    "olora-defaults": ("olora", {}, {"variant": "cvqa"}, {"variant"}),
    "olora-original": ("olora", {"variant": "original"}, {"variant": "original"}, set()),
    "replay-defaults": ("replay", {}, {"memory": "growing"}, {"memory"}),
    "replay-fixed": ("replay", {"memory": "fixed", "max_buffer": 3}, {"memory": "fixed", "max_buffer": 3}, set()),
    "cumulative-defaults": ("cumulative", {}, {"start": "base"}, {"start"}),
    "cumulative-previous": ("cumulative", {"start": "previous"}, {"start": "previous"}, set()),
}


@pytest.fixture(scope="module")
def one_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sequence") / "opts1.yaml"
    path.write_text(yaml.safe_dump(small_sequence_dict("opts1", ("color",)), sort_keys=False))
    return path


def by_hand_hash(config: dict[str, Any], default_options: set[str], rows_per_step_set: bool) -> str:
    """SHA-256 of config.yaml's canonical JSON as a folder made before issue 27's options would hash it."""
    data = json.loads(json.dumps(config))
    for section, key in NEVER_HASHED:
        data[section].pop(key)
    assert data["train"].pop("vision_cache") is True  # hashed only when off (an earlier field)
    if not rows_per_step_set:
        assert data["train"].pop("rows_per_step") == {}
    for key in default_options:
        data["method"]["options"].pop(key)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def by_hand_stage_hash(out: Path, config_hash: str) -> str:
    """Stage 1's hash from a config hash: + the tasks up to it as sequence.yaml holds them, "1", its rows' hash."""
    tasks = yaml.safe_load((out / "sequence.yaml").read_text())["tasks"]
    rows = json.loads((out / "manifest.json").read_text())["data"]["color"]["train_items"]
    return hashlib.sha256((config_hash + yaml.safe_dump(tasks[:1]) + "1" + rows).encode()).hexdigest()


def stage_hash(out: Path) -> str:
    """The hash the run sealed stage 1 with."""
    return json.loads((out / "stages" / "1-color" / "DONE.json").read_text())["stage_hash"]


def short_run(sequence: Path, out: Path, method: str, options: dict[str, Any], *extra: str) -> None:
    result = invoke("run", "--sequence", sequence, "--method", method, "--out", out,
                    *(a for k, v in options.items() for a in ("--set", f"method.options.{k}={json.dumps(v)}")),
                    "--set", "train.max_steps=1", "--set", "train.batch_size=2", "--set", "eval.limit=1",
                    "--set", "eval.max_new_tokens=1", *extra)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", list(CASES))
def test_each_new_option_is_recorded_and_hashed_only_off_its_default(one_task, tmp_path, case):
    method, given, recorded, at_default = CASES[case]
    out = tmp_path / "run"
    short_run(one_task, out, method, given)
    config = yaml.safe_load((out / "config.yaml").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for where in (config, manifest["config"], results["config"]):
        assert where["method"]["options"] == recorded
    assert manifest["method"]["options"] == results["provenance"]["method"]["options"] == recorded
    # a task without a pinned schedule row (ema, start_from, eval_with) is hashed as before the field existed
    assert "schedule" not in yaml.safe_load((out / "sequence.yaml").read_text())["tasks"][0]
    assert results["config_hash"] == by_hand_hash(config, at_default, rows_per_step_set=False)
    assert stage_hash(out) == by_hand_stage_hash(out, by_hand_hash(config, at_default, rows_per_step_set=False))
    for key in set(recorded) - at_default:  # each non-default value is in the hash
        without = by_hand_stage_hash(out, by_hand_hash(config, at_default | {key}, rows_per_step_set=False))
        assert stage_hash(out) != without, key


def test_train_rows_per_step_is_recorded_and_hashed_when_set(one_task, tmp_path):
    out = tmp_path / "run"
    short_run(one_task, out, "finetune", {}, "--set", "train.rows_per_step={color: 4}")  # 2 micro-batches of 2
    config = yaml.safe_load((out / "config.yaml").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for where in (config, manifest["config"], results["config"]):
        assert where["train"]["rows_per_step"] == {"color": 4}
    assert manifest["protocol"]["tasks"]["color"]["rows_per_step"] == 4  # what the stage really trained with
    assert manifest["protocol"]["tasks"]["color"]["grad_accum"] == 2
    assert stage_hash(out) == by_hand_stage_hash(out, by_hand_hash(config, set(), rows_per_step_set=True))
    unset = json.loads(json.dumps(config))
    unset["train"]["rows_per_step"] = {}
    assert stage_hash(out) != by_hand_stage_hash(out, by_hand_hash(unset, set(), rows_per_step_set=False))
