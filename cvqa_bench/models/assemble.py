"""Assemble the base model of the published CoIN runs as a llava-hf checkpoint directory.

The continual runs of CoIN and LLaCA do not start from an instruction-tuned LLaVA: they start from
three separately published pieces (docs/protocol.md, "The base model"):

- a Llama-format LLM directory (vicuna-7b-v1.5: ``LlamaForCausalLM`` weights + tokenizer files),
- a CLIP directory (openai/clip-vit-large-patch14-336: ``CLIPModel`` or ``CLIPVisionModel`` weights and
  ``preprocessor_config.json``),
- the LLaVA-1.5 stage-1 projector ``mm_projector.bin``: a torch state dict of a 2-layer GELU MLP with
  the original key names ``model.mm_projector.{0,2}.{weight,bias}``.

:func:`assemble_llava` joins them into one ``LlavaForConditionalGeneration`` + ``LlavaProcessor``
directory (``save_pretrained``), which ``cvqa run --model DIR`` then loads like any llava-hf
checkpoint. As llava-hf does, ``<image>`` is added to the tokenizer as one special token and the
embedding matrices are resized to a multiple of 64; the new rows are set to the mean of the old
ones (deterministic; the ``<image>`` row is never read, image features replace it). When the
tokenizer has no pad token, the unknown token pads, as in LLaVA's own ``v1`` training. A
``cvqa_base.json`` beside the weights records the three sources (paths, and the projector's SHA-256).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvqa_bench.io import atomic_write_json
from cvqa_bench.models.conversation import VICUNA_V1_CHAT_TEMPLATE
from cvqa_bench.models.pieces import (
    LLM_TYPES,
    PROJECTOR_KEYS,
    VISION_TYPES,
    AssembleError,
    check_model_dir,
    check_projector_shapes,
    first_line,
    load_image_processor,
    load_pretrained,
    load_projector,
    load_tokenizer,
)

BASE_RECORD = "cvqa_base.json"
IMAGE_TOKEN = "<image>"
DTYPE_NAMES = ("float16", "bfloat16", "float32")


def assemble_llava(
    llm_dir: str | Path,
    vision_dir: str | Path,
    projector_path: str | Path,
    out_dir: str | Path,
    *,
    vision_feature_layer: int = -2,
    dtype: str = "float16",
    pad_to_multiple_of: int = 64,
) -> Path:
    """Build a llava-hf checkpoint directory from an LLM, a CLIP tower and a stage-1 projector.

    Args:
        llm_dir: local Llama-format LLM directory (config.json, weights, tokenizer files).
        vision_dir: local CLIP directory (config.json, weights, preprocessor_config.json).
        projector_path: LLaVA-1.5 stage-1 ``mm_projector.bin``.
        out_dir: where to write the checkpoint; must not exist or be empty. Written to a temporary
            sibling folder first and renamed into place, so it is complete or absent.
        vision_feature_layer: CLIP hidden state fed to the projector (LLaVA-1.5: -2).
        dtype: dtype of the saved weights (``float16``, ``bfloat16`` or ``float32``); a run casts to its
            own ``model.dtype`` when loading.
        pad_to_multiple_of: embedding rows are padded to a multiple of this (llava-hf: 64).

    Returns:
        ``out_dir``.

    Raises:
        AssembleError: an input lacks what is needed or the projector does not fit the two models.
    """
    llm_dir, vision_dir, projector_path, out_dir = (Path(p).expanduser() for p in
                                                    (llm_dir, vision_dir, projector_path, out_dir))
    if dtype not in DTYPE_NAMES:
        raise AssembleError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_NAMES)}")
    if pad_to_multiple_of < 1:
        raise AssembleError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    check_model_dir(llm_dir, "LLM", LLM_TYPES, extra=("tokenizer.json", "tokenizer.model"))
    check_model_dir(vision_dir, "vision", VISION_TYPES, extra=("preprocessor_config.json",))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AssembleError(f"{out_dir}: output folder exists and is not empty; choose another or remove it")
    projector = load_projector(projector_path)

    import torch

    torch_dtype = getattr(torch, dtype)
    tokenizer = load_tokenizer(llm_dir)
    llm = load_pretrained("LlamaForCausalLM", llm_dir, torch_dtype)
    vision = load_pretrained("CLIPVisionModel", vision_dir, torch_dtype)
    check_projector_shapes(projector, vision.config.hidden_size, llm.config.hidden_size, projector_path)
    layers = vision.config.num_hidden_layers
    if not -(layers + 1) <= vision_feature_layer <= layers:
        raise AssembleError(f"vision_feature_layer {vision_feature_layer} is outside the {layers + 1} hidden "
                            f"states of {vision_dir}")
    image_processor = load_image_processor(vision_dir, vision.config.image_size)

    image_token_id = _add_image_token(tokenizer)
    config = _llava_config(llm, vision, image_token_id, vision_feature_layer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    model = _compose(config, llm, vision, projector, torch_dtype)
    _resize_embeddings(model, len(tokenizer), pad_to_multiple_of)
    processor = _processor(tokenizer, image_processor, vision.config.patch_size)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic_write_json(tmp / BASE_RECORD, _base_record(
            llm_dir, vision_dir, projector_path, dtype=dtype, vision_feature_layer=vision_feature_layer,
            image_token_id=image_token_id, tokenizer_size=len(tokenizer),
            embedding_rows=model.get_input_embeddings().weight.shape[0],
        ))
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); rename cannot replace a folder on every platform
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_base_record(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``cvqa_base.json`` of an assembled checkpoint, or ``None`` for any other directory."""
    path = Path(model_dir) / BASE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AssembleError(f"{path}: unreadable ({first_line(exc)})") from exc


def _add_image_token(tokenizer: Any) -> int:
    """Add ``<image>`` as one special token (llava-hf) and a pad token (<unk>) if there is none."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None and tokenizer.unk_token is not None:
        # LLaVA's v1 training pads with <unk>; padded positions are masked and never labelled.
        tokenizer.pad_token = tokenizer.unk_token
    elif tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def _llava_config(llm: Any, vision: Any, image_token_id: int, vision_feature_layer: int) -> Any:
    from transformers import LlavaConfig

    patches = (vision.config.image_size // vision.config.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision.config.to_dict(),
        text_config=llm.config.to_dict(),
        image_token_index=image_token_id,
        image_seq_length=patches,  # "default" strategy drops CLS: one token per patch
        vision_feature_select_strategy="default",
        vision_feature_layer=vision_feature_layer,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
    )


def _compose(config: Any, llm: Any, vision: Any, projector: dict[str, Any], torch_dtype: Any) -> Any:
    """A LlavaForConditionalGeneration whose parts are the loaded modules (no 7B random init)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.vision_tower = vision
    mapped = {new: projector[old].to(torch_dtype) for old, new in PROJECTOR_KEYS.items()}
    model.model.multi_modal_projector.load_state_dict(mapped, assign=True, strict=True)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    assert not meta, f"assembled model still has uninitialised tensors: {meta[:3]}"
    from transformers import GenerationConfig

    # A clean generation config: vicuna's own asks for sampling (temperature 0.9, top_p 0.6).
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id, eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
    )
    return model.to(torch_dtype).eval()


def _resize_embeddings(model: Any, vocab: int, multiple: int) -> None:
    """Grow input/output embeddings to ``vocab`` rounded up to ``multiple``; new rows = mean of the old."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab, pad_to_multiple_of=multiple, mean_resizing=False)
    with torch.no_grad():
        for weight in {id(w): w for w in (model.get_input_embeddings().weight,
                                           model.get_output_embeddings().weight)}.values():
            if weight.shape[0] > old:
                weight[old:] = weight[:old].float().mean(dim=0).to(weight.dtype)


def _processor(tokenizer: Any, image_processor: Any, patch_size: int) -> Any:
    from transformers import LlavaProcessor

    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=VICUNA_V1_CHAT_TEMPLATE,
    )
    return processor


def _base_record(llm_dir: Path, vision_dir: Path, projector_path: Path, **facts: Any) -> dict[str, Any]:
    import transformers

    from cvqa_bench.data.coin import file_sha256

    def source(path: Path) -> dict[str, str]:
        return {"path": str(path.resolve()), "config_sha256": file_sha256(path / "config.json")}

    return {
        "kind": "assembled",
        "llm": source(llm_dir),
        "vision": source(vision_dir),
        "projector": {"path": str(projector_path.resolve()), "sha256": file_sha256(projector_path)},
        "chat_template": "vicuna_v1",
        "vision_feature_select_strategy": "default",
        **facts,
        "transformers": transformers.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
