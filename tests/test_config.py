"""Config models: typos and bad values fail at load with the file and field named; task order permutations."""

from __future__ import annotations

import pytest

from cvqa_bench.config import (
    ConfigError,
    RunConfig,
    load_run_config,
    load_sequence,
    read_yaml,
    reorder_tasks,
    set_dotted,
)


def test_defaults_build_the_embedded_default_run():
    """Issue 31 (6): one default everywhere: no config file, `--config default` and `make run` (the file
    configs/default.yaml) are the same run, LLaCA on the synthetic sequence with the tiny model."""
    cfg = load_run_config(None)
    assert cfg.sequence == "synthetic" and cfg.method.name == "llaca"
    assert cfg.model.tiny == "configs/models/tiny.yaml"
    assert cfg == load_run_config("default") == load_run_config("configs/default.yaml")
    assert cfg.stable_hash() == load_run_config("configs/default.yaml").stable_hash()


def test_a_partial_model_section_keeps_the_default_tiny_model():
    cfg = load_run_config(None, {"model.lora": None, "model.dtype": "bfloat16"})
    assert cfg.model.lora is None and cfg.model.tiny.endswith("configs/models/tiny.yaml")
    assert load_run_config(None, {"model.path": "/m"}).model.tiny is None


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("trian: {max_steps: 3}\n", "trian: unknown key"),
        ("train: {max_stepz: 3}\n", "train.max_stepz: unknown key"),
        ("train: {lr: -1}\n", "train.lr: Input should be greater than 0"),
        ("train: {warmup_ratio: 1.5}\n", "train.warmup_ratio"),
        ("eval: {batch_size: 0}\n", "eval.batch_size"),
        ("model: {path: /x, tiny: /y}\n", "exactly one of 'path'"),
        ("model: {dtype: float8}\n", "model.dtype"),
    ],
)
def test_invalid_run_config_names_file_and_field(tmp_path, yaml_text, fragment):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 1\n   max_steps: [\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: malformed YAML"):
        read_yaml(path)


def test_run_config_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_run_config(path)


def test_dotted_overrides_apply_and_validate():
    cfg = load_run_config(None, {"train.max_steps": 7, "method.name": "llaca", "method.options.threshold": 0.3})
    assert cfg.train.max_steps == 7 and cfg.method.options == {"threshold": 0.3}
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_run_config(None, {"train.max_steps": 0})


def test_set_dotted_creates_nested_mappings():
    data: dict = {"a": 1}
    set_dotted(data, "b.c.d", 2)
    assert data == {"a": 1, "b": {"c": {"d": 2}}}


def test_stable_hash_ignores_nothing_but_excluded_keys():
    a, b = RunConfig(seed=0), RunConfig(seed=1)
    assert a.stable_hash() != b.stable_hash()
    assert a.stable_hash(exclude=("seed",)) == b.stable_hash(exclude=("seed",))


def test_task_order_permutations():
    seq, _ = load_sequence("synthetic")
    names = seq.task_names()
    assert reorder_tasks(seq, None).task_names() == names
    assert reorder_tasks(seq, "reverse").task_names() == names[::-1]
    assert reorder_tasks(seq, "alphabetical").task_names() == ["color", "count", "glyph", "mcq", "position", "shape"]
    custom = "glyph,mcq,color,shape,count,position"
    assert reorder_tasks(seq, custom).task_names() == custom.split(",")
    with pytest.raises(ConfigError, match="exactly once"):
        reorder_tasks(seq, "glyph,mcq")
    with pytest.raises(ConfigError, match="exactly once"):
        reorder_tasks(seq, "glyph,glyph,color,shape,count,position")


def test_sequence_with_duplicate_task_or_unknown_scorer_is_rejected(tmp_path):
    path = tmp_path / "seq.yaml"
    path.write_text(
        "name: s\ndata_root: .\ntasks:\n"
        "  - {name: a, train: a.json, test: b.json, scorer: exact}\n"
        "  - {name: a, train: a.json, test: b.json, scorer: exactt}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_sequence(str(path))
    assert "tasks.1.scorer" in str(err.value) and "Did you mean 'exact'" in str(err.value)


def test_train_vision_cache_enters_the_hash_only_when_turned_off():
    import hashlib
    import json

    config = RunConfig()
    before_the_field = config.model_dump(mode="json")  # what a config made before train.vision_cache hashed
    before_the_field["train"].pop("vision_cache")
    before_the_field["train"].pop("rows_per_step")  # added later still, hashed only when set
    for section, key in (("train", "report_to"), ("train", "logging_dir"), ("eval", "log_samples"),
                         ("model", "device")):
        before_the_field[section].pop(key)
    expected = hashlib.sha256(json.dumps(before_the_field, sort_keys=True).encode()).hexdigest()
    assert config.stable_hash() == expected  # old run folders keep their stage hashes
    assert RunConfig(train={"vision_cache": False}).stable_hash() != expected
