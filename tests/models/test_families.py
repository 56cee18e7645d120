"""Every registered model family, through its tiny offline checkpoint: inputs the modeling code accepts, labels
on the answer only, the processor wrapper's exact output where it loads, and cached vision features that give
the uncached predictions. Parametrized over ``families.names()``: a family registered later is tested too."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.config import ModelSpec
from cvqa_bench.models.families import families
from cvqa_bench.models.families.base import IGNORE_INDEX
from cvqa_bench.models.load import load_model
from cvqa_bench.models.prompting import TrainCollator, encode_prompts, generation_prompt, load_image
from cvqa_bench.models.vision_cache import VisionFeatureCache
from cvqa_bench.run.evaluation.evaluate import EvalInputs, generate_predictions


def tiny_preset(family: str) -> str:
    """The tiny preset of a family in configs/models/ (LLaVA-1.5's is the default tiny.yaml)."""
    return "configs/models/tiny.yaml" if family == "llava" else f"configs/models/tiny-{family}.yaml"


@pytest.fixture(scope="module", params=families.names())
def loaded(request: Any) -> Any:
    torch.manual_seed(0)
    return load_model(ModelSpec(tiny=tiny_preset(request.param), lora={"target_modules": None}))


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict[str, Any]]]:
    return {"train": load_task_rows("synthetic", "color", "train")[:3] + load_task_rows("synthetic", "mcq", "train")[:2],
            "test": load_task_rows("synthetic", "color", "test")[:3] + load_task_rows("synthetic", "shape", "test")[:2]}


def test_training_batch_runs_and_learns_only_the_answers(loaded: Any, rows: dict[str, list]) -> None:
    processor = loaded.processor
    batch = TrainCollator(processor, 512)(rows["train"])
    for ids, labels, row in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), rows["train"]):
        answer = [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
        assert all(label in (IGNORE_INDEX, t) for t, label in zip(ids, labels))
        assert processor.tokenizer.decode(answer).strip().startswith(row["conversations"][1]["value"].strip())
    loss = loaded.model(**batch).loss  # HF raises when image tokens and image features disagree
    assert torch.isfinite(loss)
    loss.backward()
    parts = processor.family.modules(loaded.model)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.projector.parameters())
    assert not any(p.requires_grad for p in parts.vision_tower.parameters())
    loaded.model.zero_grad()


def test_inputs_equal_the_processor_wrapper_where_it_loads(loaded: Any, rows: dict[str, list]) -> None:
    from transformers import AutoProcessor

    family = loaded.processor.family
    try:
        wrapper = AutoProcessor.from_pretrained(loaded.source, local_files_only=True)
    except (ImportError, ValueError, TypeError, OSError) as exc:  # its video processor needs torchvision
        pytest.skip(f"{family.name}: HF's processor wrapper cannot be instantiated here ({type(exc).__name__})")
    test = rows["test"]
    prompts = [generation_prompt(wrapper, r["text"], True) for r in test]
    expected = wrapper(text=prompts, images=[load_image(r["image"]) for r in test], padding=True, return_tensors="pt")
    ours = encode_prompts(loaded.processor, test)
    assert ours.keys() == expected.keys()
    for key in expected:
        assert torch.equal(ours[key], expected[key]), key


def test_cached_vision_features_give_the_uncached_predictions(loaded: Any, rows: dict[str, list], tmp_path: Any) -> None:
    family = loaded.processor.family
    if family.no_vision_cache is not None:
        pytest.skip(f"{family.name}: {family.no_vision_cache}")
    test = rows["test"]

    def predict(**kwargs: Any) -> list[dict[str, Any]]:
        return generate_predictions(loaded.model, loaded.processor, test, batch_size=4, max_new_tokens=3, **kwargs)

    plain = predict()
    cache = VisionFeatureCache(loaded.model, loaded.processor, tmp_path)
    cold = predict(inputs=EvalInputs(loaded.processor, test, 4, False), vision=cache)
    warm = predict(vision=VisionFeatureCache(loaded.model, loaded.processor, tmp_path))
    assert cache.computed == len(test)
    assert cold == warm == plain


DEFAULT_TARGETS = r".*language_model.*\.(q_proj|v_proj)"  # configs/default.yaml's model.lora.target_modules


@pytest.mark.parametrize("family", families.names())
def test_the_default_lora_regex_selects_the_language_models_q_and_v_projections(family: str) -> None:
    """On every family, Idefics3's ``text_model`` included; where the LM is called ``language_model`` the regex
    goes to peft unchanged (LLaVA-1.5's adapters and stage hashes stay as they were)."""
    from transformers import AutoConfig

    from cvqa_bench.config import read_yaml
    from cvqa_bench.models.families import family_for
    from cvqa_bench.models.tiny import tiny_model_dir

    folder = tiny_model_dir(tiny_preset(family))
    layers = read_yaml(tiny_preset(family))["text"]["num_hidden_layers"]
    bound = family_for(folder)
    with torch.device("meta"):
        model = bound.new_model(AutoConfig.from_pretrained(folder, local_files_only=True))
    lm = "model.text_model" if family == "idefics3" else "model.language_model"
    expected = [f"{lm}.layers.{i}.self_attn.{p}" for i in range(layers) for p in ("q_proj", "v_proj")]
    assert bound.lora_matches(model, DEFAULT_TARGETS) == expected
    assert bound.lora_target_modules(model, DEFAULT_TARGETS) == (expected if family == "idefics3" else DEFAULT_TARGETS)
    assert bound.lora_matches(model, r".*text_model.*\.q_proj") == (expected[::2] if family == "idefics3" else [])
