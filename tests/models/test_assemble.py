"""``assemble_llava`` on tiny stand-ins saved in the original layouts (vicuna .bin shards, CLIPModel, mm_projector.bin).

Expected values are written by hand: the vicuna_v1 prompt text, the vocabulary arithmetic
(400 pieces + ``<image>`` = 401 rows, padded to 7 x 64 = 448), the image-token count
((32 / 8)^2 = 16 patches) and the projector key mapping of llava-hf.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import coin_standins as standins
from cvqa_bench.models.assemble import AssembleError, assemble_llava, read_base_record

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLM_VOCAB = 400  # the stand-in tokenizer's size (coin_standins.llama_tokenizer)
VISION_HIDDEN, TEXT_HIDDEN = 24, 32


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Stand-ins of vicuna-7b-v1.5 (.bin shards), clip-vit-large-patch14-336 (CLIPModel) and mm_projector.bin."""
    root = tmp_path_factory.mktemp("sources")
    llm = standins.build_llm_standin(root / "vicuna-7b-v1.5", layout="bin")
    tower = standins.build_clip_standin(root / "clip-vit-large-patch14-336", full=True, hidden_size=VISION_HIDDEN)
    projector = standins.write_projector(root / "pretrain" / "mm_projector.bin", VISION_HIDDEN, TEXT_HIDDEN)
    return {"root": root, "llm_dir": root / "vicuna-7b-v1.5", "vision_dir": root / "clip-vit-large-patch14-336",
            "projector_path": root / "pretrain" / "mm_projector.bin", "llm": llm.state_dict(),
            "tower": tower.state_dict(), "projector": projector}


@pytest.fixture(scope="module")
def assembled(sources: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Assemble once and reload offline through the Auto classes, as ``cvqa run --model`` does."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out = tmp_path_factory.mktemp("assembled") / "llava-coin-base"
    returned = assemble_llava(sources["llm_dir"], sources["vision_dir"], sources["projector_path"], out,
                              dtype="float32")
    model = LlavaForConditionalGeneration.from_pretrained(out, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    return {"out": out, "returned": returned, "model": model, "processor": processor}


def test_language_model_weights_are_the_llm_standins(sources: dict[str, Any], assembled: dict[str, Any]) -> None:
    state = assembled["model"].state_dict()
    for key, tensor in sources["llm"].items():
        if key == "model.embed_tokens.weight":
            continue
        new_key = key if key == "lm_head.weight" else "model.language_model." + key.removeprefix("model.")
        if key == "lm_head.weight":
            assert torch.equal(state[new_key][:LLM_VOCAB], tensor)
        else:
            assert torch.equal(state[new_key], tensor), key
    embed = state["model.language_model.embed_tokens.weight"]
    old = sources["llm"]["model.embed_tokens.weight"]
    # 400 pieces + <image> = 401 ids, padded to a multiple of 64: 448 rows
    assert embed.shape == (448, TEXT_HIDDEN) and state["lm_head.weight"].shape == (448, TEXT_HIDDEN)
    assert torch.equal(embed[:LLM_VOCAB], old)
    # every added row is the mean of the original rows (input and output embeddings)
    assert torch.allclose(embed[LLM_VOCAB:], old.mean(dim=0).expand(48, -1), atol=1e-7)
    head_mean = sources["llm"]["lm_head.weight"].mean(dim=0)
    assert torch.allclose(state["lm_head.weight"][LLM_VOCAB:], head_mean.expand(48, -1), atol=1e-7)
    assert assembled["model"].config.text_config.vocab_size == 448


def test_projector_weights_are_the_bin_under_llava_hf_names(sources: dict[str, Any], assembled: dict[str, Any]) -> None:
    state = assembled["model"].state_dict()
    original = sources["projector"]
    pairs = {"linear_1.weight": "model.mm_projector.0.weight", "linear_1.bias": "model.mm_projector.0.bias",
             "linear_2.weight": "model.mm_projector.2.weight", "linear_2.bias": "model.mm_projector.2.bias"}
    for new, old in pairs.items():
        assert torch.equal(state[f"model.multi_modal_projector.{new}"], original[old]), new
    assert assembled["model"].config.projector_hidden_act == "gelu"


def test_vision_tower_is_the_clip_standin(sources: dict[str, Any], assembled: dict[str, Any]) -> None:
    tower = assembled["model"].model.vision_tower.state_dict()
    assert set(tower) == set(sources["tower"])
    for key, tensor in sources["tower"].items():
        assert torch.equal(tower[key], tensor), key


def test_config_and_processor_follow_llava_1_5(assembled: dict[str, Any]) -> None:
    config, processor = assembled["model"].config, assembled["processor"]
    tokenizer = processor.tokenizer
    assert assembled["returned"] == assembled["out"]
    assert config.vision_feature_layer == -2
    assert config.vision_feature_select_strategy == "default"
    assert config.image_token_index == tokenizer.convert_tokens_to_ids("<image>") == LLM_VOCAB
    assert config.image_seq_length == 16  # (32 / 8)^2 patches, CLS dropped
    assert processor.patch_size == 8 and processor.num_additional_image_tokens == 1
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<unk>" and tokenizer.pad_token_id == 0  # LLaVA v1 pads with <unk>
    assert tokenizer.tokenize("a <image> b").count("<image>") == 1  # one special token
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    generation = assembled["model"].generation_config
    # vicuna's generation_config.json samples (temperature 0.9); the assembled base must not
    assert not generation.do_sample and (generation.bos_token_id, generation.eos_token_id) == (1, 2)


def test_chat_template_renders_the_vicuna_v1_prompt(assembled: dict[str, Any]) -> None:
    from cvqa_bench.models.prompting import conversation_segments, generation_prompt

    processor = assembled["processor"]
    prompt = generation_prompt(processor, "<image>\nWhat is the object in the image?\nAnswer briefly.", True)
    assert prompt == (f"{SYSTEM} USER: <image>\nWhat is the object in the image?\nAnswer briefly. ASSISTANT:")
    row = {"image": "x.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWho wrote this book?"}, {"from": "gpt", "value": "Jane Austen"},
        {"from": "human", "value": "Is it a novel?"}, {"from": "gpt", "value": "Yes"}]}
    assert conversation_segments(processor, row) == [
        (f"{SYSTEM} USER: <image>\nWho wrote this book? ASSISTANT:", False),
        (" Jane Austen</s>", True),
        ("USER: Is it a novel? ASSISTANT:", False),
        (" Yes</s>", True),
    ]


def test_a_forward_pass_with_an_image_matches_the_image_token_count(assembled: dict[str, Any]) -> None:
    model, processor = assembled["model"], assembled["processor"]
    prompt = f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    enc = processor(text=[prompt], images=[Image.new("RGB", (48, 32), (200, 30, 30))], return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    assert ids[0] == 1  # <s>
    assert ids.count(LLM_VOCAB) == 16
    assert tuple(enc["pixel_values"].shape) == (1, 3, 32, 32)
    with torch.no_grad():
        logits = model(**enc).logits
        out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert logits.shape == (1, len(ids), 448)
    assert out.shape[1] > len(ids)


def test_training_labels_are_exactly_the_answers_with_the_llama_tokenizer(
    assembled: dict[str, Any], tmp_path: Path
) -> None:
    from cvqa_bench.models.families import family_for
    from cvqa_bench.models.inputs import ModelInputs
    from cvqa_bench.models.prompting import IGNORE_INDEX, TrainCollator

    processor = ModelInputs.from_pretrained(assembled["out"], family_for(assembled["out"]))  # as a run loads it
    image = tmp_path / "cover.jpg"
    Image.new("RGB", (40, 30), (10, 120, 30)).save(image)
    rows = [
        {"image": str(image), "conversations": [
            {"from": "human", "value": "<image>\nWho wrote this book?"}, {"from": "gpt", "value": "Jane Austen"},
            {"from": "human", "value": "Is it a novel?"}, {"from": "gpt", "value": "Yes"}]},
        {"image": None, "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]},
    ]
    batch = TrainCollator(processor, max_length=512, pad_to_square=True)(rows)
    answers = []
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        assert ids[0] == 1  # <s>
        spans, current = [], []
        for token, label in zip(ids, labels):
            if label != IGNORE_INDEX:
                assert label == token
                current.append(label)
            elif current:
                spans.append(current)
                current = []
        spans += [current] if current else []
        answers.append([processor.tokenizer.decode(span) for span in spans])
    assert answers == [["Jane Austen</s>", "Yes</s>"], ["hi</s>"]]
    assert [ids.count(LLM_VOCAB) for ids in batch["input_ids"].tolist()] == [16, 0]
    assert tuple(batch["pixel_values"].shape) == (1, 3, 32, 32)


def test_base_record_names_the_three_sources(sources: dict[str, Any], assembled: dict[str, Any]) -> None:
    record = read_base_record(assembled["out"])
    assert record is not None and record["kind"] == "assembled"
    assert record["llm"]["path"] == str(sources["llm_dir"].resolve())
    assert record["vision"]["path"] == str(sources["vision_dir"].resolve())
    assert record["projector"]["path"] == str(sources["projector_path"].resolve())
    assert record["projector"]["sha256"] == hashlib.sha256(sources["projector_path"].read_bytes()).hexdigest()
    assert record["vision_feature_layer"] == -2 and record["chat_template"] == "vicuna_v1"
    assert (record["tokenizer_size"], record["embedding_rows"], record["image_token_id"]) == (401, 448, 400)
    assert read_base_record(sources["llm_dir"]) is None


def test_vision_only_clip_and_safetensors_llm_also_assemble(tmp_path: Path) -> None:
    from transformers import LlavaForConditionalGeneration

    llm = standins.build_llm_standin(tmp_path / "llm", layout="safetensors", seed=5)
    tower = standins.build_clip_standin(tmp_path / "clip", full=False, hidden_size=16, seed=6)
    standins.write_projector(tmp_path / "mm_projector.bin", 16, TEXT_HIDDEN)
    out = assemble_llava(tmp_path / "llm", tmp_path / "clip", tmp_path / "mm_projector.bin", tmp_path / "out",
                         dtype="bfloat16")
    model = LlavaForConditionalGeneration.from_pretrained(out, local_files_only=True)
    assert model.dtype == torch.bfloat16
    q_proj = "model.language_model.layers.1.self_attn.q_proj.weight"
    original = llm.state_dict()["model.layers.1.self_attn.q_proj.weight"]
    assert torch.equal(model.state_dict()[q_proj], original.bfloat16())
    patch = model.model.vision_tower.state_dict()["embeddings.patch_embedding.weight"]
    assert torch.equal(patch, tower.state_dict()["embeddings.patch_embedding.weight"].bfloat16())


# ---------------------------------------------------------------- refusals


def _copy(sources: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    paths = {"llm": tmp_path / "llm", "vision": tmp_path / "clip", "projector": tmp_path / "mm_projector.bin"}
    shutil.copytree(sources["llm_dir"], paths["llm"])
    shutil.copytree(sources["vision_dir"], paths["vision"])
    shutil.copy(sources["projector_path"], paths["projector"])
    return paths


def _edit_json(path: Path, **changes: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _save_projector(path: Path, state: dict[str, Any]) -> None:
    torch.save(state, path)


def _drop_weight(folder: Path, key: str) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    del state[key]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


class NotATensor:
    """Pickled into a projector file: ``weights_only`` loading must refuse it."""


BAD_INPUTS = {
    "llm folder missing": (lambda p: shutil.rmtree(p["llm"]), "llm", "LLM folder not found"),
    "llm without config.json": (lambda p: (p["llm"] / "config.json").unlink(), "llm/config.json", "missing"),
    "llm of another type": (lambda p: _edit_json(p["llm"] / "config.json", model_type="mistral"),
                            "llm/config.json", "model_type 'mistral', expected 'llama' for the LLM folder"),
    "llm without weights": (lambda p: [f.unlink() for f in p["llm"].glob("pytorch_model*")], "llm",
                            "no weights"),
    "llm with a corrupt shard": (lambda p: (p["llm"] / "pytorch_model-00001-of-00002.bin").write_bytes(b"junk"),
                                 "llm", "cannot load as LlamaForCausalLM"),
    "llm without tokenizer": (lambda p: [(p["llm"] / f).unlink() for f in ("tokenizer.json",)], "llm",
                              "needs tokenizer.json or tokenizer.model"),
    "tokenizer.model without sentencepiece": (
        lambda p: ((p["llm"] / "tokenizer.json").unlink(), (p["llm"] / "tokenizer.model").write_bytes(b"junk")),
        "llm", "cannot load the tokenizer"),
    "a vision folder that is the llm": (
        lambda p: (shutil.rmtree(p["vision"]), shutil.copytree(p["llm"], p["vision"])),
        "clip/config.json", "model_type 'llama', expected 'clip' or 'clip_vision_model'"),
    "vision without preprocessor config": (lambda p: (p["vision"] / "preprocessor_config.json").unlink(), "clip",
                                           "needs preprocessor_config.json"),
    "vision weights with a tensor missing": (
        lambda p: _drop_weight(p["vision"], "vision_model.post_layernorm.weight"), "clip",
        "1 CLIPVisionModel weights missing or of the wrong shape, e.g. 'post_layernorm.weight'"),
    "processor crop for another tower": (lambda p: _edit_json(p["vision"] / "preprocessor_config.json",
                                                              crop_size=224, size=224),
                                         "clip/preprocessor_config.json", "crop_size 224x224 does not match"),
    "projector missing": (lambda p: p["projector"].unlink(), "mm_projector.bin", "projector file not found"),
    "projector not a torch file": (lambda p: p["projector"].write_text("not a pickle"), "mm_projector.bin",
                                   "cannot be read as a torch state dict"),
    "projector with an unsafe pickle": (lambda p: _save_projector(p["projector"], {"x": NotATensor()}),
                                        "mm_projector.bin", "cannot be read as a torch state dict"),
    "projector under llava-hf names": (
        lambda p: _save_projector(p["projector"], {"linear_1.weight": torch.zeros(32, 24)}), "mm_projector.bin",
        "missing ['model.mm_projector.0.bias'"),
    "projector for another vision tower": (
        lambda p: standins.write_projector(p["projector"], 16, TEXT_HIDDEN), "mm_projector.bin",
        "model.mm_projector.0.weight has shape [32, 16], expected [32, 24]"),
    "projector for another llm": (
        lambda p: standins.write_projector(p["projector"], VISION_HIDDEN, 64), "mm_projector.bin",
        "model.mm_projector.0.weight has shape [64, 24], expected [32, 24]"),
    "output folder not empty": (lambda p: ((p["out"]).mkdir(), (p["out"] / "keep.txt").write_text("x")), "out",
                                "not empty"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_refused_with_one_line_naming_the_file(
    case: str, sources: dict[str, Any], tmp_path: Path
) -> None:
    break_it, where, message = BAD_INPUTS[case]
    paths = _copy(sources, tmp_path)
    paths["out"] = tmp_path / "out"
    break_it(paths)
    with pytest.raises(AssembleError) as caught:
        assemble_llava(paths["llm"], paths["vision"], paths["projector"], paths["out"], dtype="float32")
    text = str(caught.value)
    assert "\n" not in text
    assert str(tmp_path / where) in text, text
    assert message in text, text
    if case != "output folder not empty":
        assert not paths["out"].exists()
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left behind


def test_unknown_dtype_is_refused(sources: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(AssembleError, match="dtype 'int8' is not one of float16, bfloat16, float32"):
        assemble_llava(sources["llm_dir"], sources["vision_dir"], sources["projector_path"], tmp_path / "o",
                       dtype="int8")


def test_cli_assemble_writes_a_loadable_checkpoint_and_refuses_bad_input(sources: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cvqa_bench.cli import app
    from cvqa_bench.models.assemble import read_base_record

    out = tmp_path / "base"
    args = ["assemble", "--llm", str(sources["llm_dir"]), "--vision", str(sources["vision_dir"]),
            "--projector", str(sources["projector_path"]), "--dtype", "float32"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and read_base_record(out)["projector"]["path"].endswith("mm_projector.bin")

    missing = tmp_path / "nope"
    result = CliRunner().invoke(app, [*args[:1], "--llm", str(missing), *args[3:], "--out", str(tmp_path / "b2")])
    assert result.exit_code == 2 and str(missing) in result.output
    assert not (tmp_path / "b2").exists()
