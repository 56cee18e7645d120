"""Model families: one small module per vision-language family, chosen by ``config.json``'s ``model_type``.

Entries are lazy (``"module:Class"`` strings) so that ``cvqa list models`` never imports torch. A family
module adds one line here: ``_family(name, target, model_types, description)``. The interface every family
implements is :class:`cvqa_bench.models.families.base.ModelFamily`.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from cvqa_bench.registry import Registry, UnknownNameError

families: Registry = Registry("model family")
MODEL_TYPES: dict[str, str] = {}  # config.json model_type -> family name


def _family(name: str, target: str, model_types: tuple[str, ...], description: str) -> None:
    families.add_lazy(name, target, f"{description} (model_type: {', '.join(model_types)})")
    for model_type in model_types:
        if model_type in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is served by {MODEL_TYPES[model_type]!r} already")
        MODEL_TYPES[model_type] = name


_family("llava", "cvqa_bench.models.families.llava:Llava", ("llava",),
        "LLaVA-1.5: CLIP tower, 2-layer MLP projector, one fixed-size image (576 tokens at 336 px)")
_family("llava_next", "cvqa_bench.models.families.llava_next:LlavaNext", ("llava_next",),
        "LLaVA-NeXT (1.6): anyres tiles + base image, image_newline, image_sizes")
_family("llava_onevision", "cvqa_bench.models.families.llava_onevision:LlavaOnevision", ("llava_onevision",),
        "LLaVA-OneVision: SigLIP tower, anyres-max tiles, image_sizes, Qwen2 chat")
_family("qwen2_vl", "cvqa_bench.models.families.qwen_vl:QwenVL", ("qwen2_vl",),
        "Qwen2-VL: dynamic resolution, flattened patches + image_grid_thw, 2x2 patch merger, M-RoPE")
_family("qwen2_5_vl", "cvqa_bench.models.families.qwen_vl:Qwen25VL", ("qwen2_5_vl",),
        "Qwen2.5-VL: Qwen2-VL inputs, window-attention tower, patch merger, M-RoPE")
_family("qwen3_vl", "cvqa_bench.models.families.qwen_vl:Qwen3VL", ("qwen3_vl",),
        "Qwen3-VL: Qwen2-VL inputs, DeepStack mergers into the first LM layers, interleaved M-RoPE")
_family("internvl", "cvqa_bench.models.families.internvl:InternVL", ("internvl",),
        "InternVL2.5/3 (-hf): InternViT tiles + thumbnail, pixel shuffle, MLP projector")
_family("idefics3", "cvqa_bench.models.families.idefics:Idefics3", ("idefics3", "smolvlm"),
        "Idefics3 / SmolVLM: image splitting (tiles + global image), pixel-shuffle connector")


def model_type_of(source: str | Path | Any) -> str:
    """The ``model_type`` of a checkpoint folder (its ``config.json``), a config dict or a ``PretrainedConfig``.

    Raises:
        UnknownNameError: a folder without a readable config.json, or a config without ``model_type``.
    """
    if isinstance(source, (str, Path)):
        path = Path(source) / "config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UnknownNameError(f"{path}: cannot read the model's config.json ({type(exc).__name__})") from None
        model_type = config.get("model_type") if isinstance(config, dict) else None
    else:
        model_type = source.get("model_type") if isinstance(source, dict) else getattr(source, "model_type", None)
    if not isinstance(model_type, str):
        raise UnknownNameError(f"{source}: the model config has no model_type")
    return model_type


def family_name(source: str | Path | Any) -> str:
    """The registered family serving ``source``'s ``model_type`` (a one-line did-you-mean error otherwise)."""
    model_type = model_type_of(source)
    if model_type not in MODEL_TYPES:
        close = difflib.get_close_matches(model_type, list(MODEL_TYPES), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"model_type {model_type!r} has no model family.{hint} "
                               f"Known: {', '.join(sorted(MODEL_TYPES))}")
    return MODEL_TYPES[model_type]


def family_for(source: str | Path | Any) -> Any:
    """The family object bound to a model: from a checkpoint folder, a ``PretrainedConfig`` or a loaded model."""
    config = getattr(source, "config", source) if not isinstance(source, (str, Path, dict)) else source
    cls = families.get(family_name(config))
    if isinstance(config, (str, Path)):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(config, local_files_only=True)
    elif isinstance(config, dict):
        from transformers import AutoConfig

        config = AutoConfig.for_model(**config)
    return cls(config)
