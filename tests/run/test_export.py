"""PEFT-format stages and ``cvqa export``: the exported folder loads with ``from_pretrained`` offline and
reproduces the stage's stored predictions; predictions carry prompt, image and score (or not, with
``--log-samples false``); a shortened run says so on the console; a routed stage needs ``--task``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import invoke, one_torch_thread
from safetensors.torch import load_file

from cvqa_bench.config import RunConfig, read_yaml, validate_model

STEPS = 20


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory: pytest.TempPathFactory, small_config: Path) -> tuple[Path, str]:
    """color → shape → position with finetune, shortened by --set; returns the run folder and stderr."""
    out = tmp_path_factory.mktemp("export") / "ft"
    result = invoke("run", "--config", small_config, "--out", out, "--set", f"train.max_steps={STEPS}")
    assert result.exit_code == 0, result.stderr
    return out, result.stderr


@pytest.fixture(scope="module")
def llaca_run(tmp_path_factory: pytest.TempPathFactory, small_config: Path, llaca_sequence: Path) -> Path:
    """color → count → position with llaca (count joins colour's group), small predictions files."""
    out = tmp_path_factory.mktemp("export") / "llaca"
    result = invoke("run", "--config", small_config, "--sequence", llaca_sequence, "--method", "llaca",
                    "--out", out, "--set", f"train.max_steps={STEPS}", "--log-samples", "false")
    assert result.exit_code == 0, result.stderr
    return out


def predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def regenerate(model_dir: Path, run: Path, task: str) -> list[str]:
    """Greedy predictions of the model in ``model_dir`` on ``task``'s test rows, as the run generates them."""
    from transformers import AutoModelForImageTextToText

    from cvqa_bench.models.families import family_for
    from cvqa_bench.models.inputs import ModelInputs
    from cvqa_bench.run.evaluation.evaluate import generate_predictions
    from cvqa_bench.run.prepare import pads_to_square, prepare, task_max_new_tokens

    config = validate_model(RunConfig, read_yaml(run / "config.yaml"), "config.yaml")
    spec = next(t for t in prepare(config).tasks if t.spec.name == task)
    with one_torch_thread():
        model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
        processor = ModelInputs.from_pretrained(model_dir, family_for(model_dir))
        records = generate_predictions(model, processor, spec.test, batch_size=config.eval.batch_size,
                                       max_new_tokens=task_max_new_tokens(config, spec.spec),
                                       pad_to_square=pads_to_square(config, spec.spec.image_aspect.eval))
    return [r["prediction"] for r in records]


def test_each_stage_holds_a_peft_adapter_and_the_projector_in_llava_names(finetune_run: tuple[Path, str]) -> None:
    run, _ = finetune_run
    stage = run / "stages" / "2-shape"
    config = json.loads((stage / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16 and config["modules_to_save"] == ["multi_modal_projector"]
    adapter = load_file(stage / "adapter" / "adapter_model.safetensors")
    weights = load_file(stage / "weights.safetensors")
    lora = {k: v for k, v in weights.items() if "lora_" in k}
    assert len(lora) == 8  # q_proj and v_proj of 2 layers, A and B
    for name, tensor in lora.items():  # peft drops the adapter name ("default") from the saved keys
        assert adapter[name.replace(".default.weight", ".weight")].equal(tensor)
    projector = load_file(stage / "non_lora.safetensors")
    assert sorted(projector) == [f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]
    key = "base_model.model.model.multi_modal_projector.modules_to_save.default.linear_1.weight"
    assert projector["model.multi_modal_projector.linear_1.weight"].equal(weights[key])
    done = json.loads((stage / "DONE.json").read_text())
    assert "adapter/adapter_model.safetensors" in json.dumps(done)  # sealed with the stage's other files


@pytest.mark.parametrize("merge", [False, True], ids=["adapter", "merged"])
def test_an_exported_stage_reproduces_the_stage_predictions(finetune_run: tuple[Path, str], tmp_path: Path,
                                                            merge: bool) -> None:
    run, _ = finetune_run
    out = tmp_path / "model"
    result = invoke("export", run, "--stage", "2", "--out", out, *(["--merge"] if merge else []))
    assert result.exit_code == 0, result.stderr
    assert (out / "adapter_config.json").is_file() != merge and (out / "tokenizer.json").is_file()
    stored = predictions(run / "predictions" / "2-shape" / "color.jsonl")
    zero_shot = predictions(run / "predictions" / "0-zero-shot" / "color.jsonl")
    assert [r["prediction"] for r in stored] != [r["prediction"] for r in zero_shot]  # the stage's weights matter
    assert regenerate(out, run, "color") == [r["prediction"] for r in stored]


def test_predictions_carry_prompt_image_and_score_and_a_shortened_run_says_so(finetune_run: tuple[Path, str]) -> None:
    run, stderr = finetune_run
    records = predictions(run / "predictions" / "1-color" / "color.jsonl")
    assert len(records) == 8
    for record in records:
        assert record["prompt"].startswith("USER: <image>\n") and record["prompt"].endswith(" ASSISTANT:")
        assert not Path(record["image"]).is_absolute() and record["image"].endswith(".png")  # relative to the data root
    cell = json.loads((run / "scores" / "1-color" / "color.json").read_text())
    assert [r["score"] for r in records] == cell["scores"] and sum(cell["scores"]) / 8 == pytest.approx(cell["score"])
    assert f"shortened run: train.max_steps={STEPS}: the config file has 40" in stderr
    assert "shortened run: --set" not in stderr  # an override is recorded, not a reason (issue 31)
    results = json.loads((run / "results.json").read_text())
    assert results["overrides"]["train.max_steps"] == STEPS
    finished = json.loads((run / "manifest.json").read_text())["finished"]
    assert finished is not None and results["provenance"]["finished"] == finished  # issue 31: filled by the run
    assert json.loads((run / "results.json").read_text())["shortened"]["shortened"] is True


def test_llaca_exports_the_adapter_of_a_tasks_group_and_small_predictions(llaca_run: Path, tmp_path: Path) -> None:
    routing = json.loads((llaca_run / "stages" / "3-position" / "adapters" / "routing.json").read_text())
    assert routing["color"] == routing["count"] != routing["position"]  # count joined colour's group
    result = invoke("export", llaca_run, "--stage", "3", "--task", "color", "--merge", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.stderr
    stored = predictions(llaca_run / "predictions" / "3-position" / "color.jsonl")
    assert regenerate(tmp_path / "m", llaca_run, "color") == [r["prediction"] for r in stored]
    assert all(set(r) == {"id", "prediction", "answers", "score"} for r in stored)  # --log-samples false


def test_a_routed_stage_is_not_exported_without_a_task(llaca_run: Path, tmp_path: Path) -> None:
    """adapter/ holds the weights trained last (position's group): color and count were evaluated with
    another group's, so a folder from it would not be the model the run evaluated (issue 31)."""
    result = invoke("export", llaca_run, "--stage", "3", "--merge", "--out", tmp_path / "m")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "choose one with --task" in result.stderr and "color, count" in result.stderr
    assert "position" in result.stderr and not (tmp_path / "m").exists()


def test_a_stage_whose_tasks_share_one_group_exports_that_group(llaca_run: Path, tmp_path: Path) -> None:
    """Stage 1 routes every task to the one group so far: exported without --task, it is that group."""
    result = invoke("export", llaca_run, "--stage", "1", "--merge", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.stderr
    stored = predictions(llaca_run / "predictions" / "1-color" / "position.jsonl")
    assert regenerate(tmp_path / "m", llaca_run, "position") == [r["prediction"] for r in stored]


def test_export_refuses_bad_input_with_one_line(finetune_run: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = finetune_run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    for args, message in [(["--stage", "1", "--out", tmp_path / "full"], "exists and is not empty"),
                          (["--stage", "4", "--out", tmp_path / "x"], "has stages 1..3"),
                          (["--stage", "1", "--task", "nope", "--out", tmp_path / "x"], "no adapter for task 'nope'")]:
        result = invoke("export", run, *args)
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "x").exists()


def test_export_refuses_a_damaged_adapter(finetune_run: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = finetune_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    adapter = copy / "stages" / "1-color" / "adapter" / "adapter_model.safetensors"
    data = adapter.read_bytes()
    adapter.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one flipped byte in the last tensor
    result = invoke("export", copy, "--stage", "1", "--out", tmp_path / "x")
    assert result.exit_code == 2 and f"{adapter}: damaged" in result.stderr and not (tmp_path / "x").exists()


def test_each_adapter_folder_carries_a_model_card_naming_its_stage_and_weights(llaca_run: Path) -> None:
    """A card of the run's own (stage, method, which tasks these weights were evaluated on), with the tags and
    base model peft adds to a card it finds, not the hub's empty template."""
    stage = llaca_run / "stages" / "3-position"
    routing = json.loads((stage / "adapters" / "routing.json").read_text())
    from huggingface_hub import ModelCard

    for folder in (stage / "adapter", *(stage / "adapters" / g for g in sorted(set(routing.values())))):
        card = ModelCard.load(folder / "README.md")
        assert card.data.library_name == "peft" and "lora" in card.data.tags
        assert card.text.startswith("# cvqa-bench adapter: stage 3-position, method llaca\n")
        assert "More Information Needed" not in card.text and "PEFT " in card.text
    group = stage / "adapters" / routing["color"]
    assert "evaluated color, count with" in (group / "README.md").read_text()
    assert "with adapters/ (adapters/routing.json)" in (stage / "adapter" / "README.md").read_text()
