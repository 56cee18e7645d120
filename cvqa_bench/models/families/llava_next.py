"""LLaVA-NeXT / LLaVA-1.6 (HF ``LlavaNextForConditionalGeneration``): CLIP tower, anyres tiles (``anyres.py``).

Prompt: the checkpoint's chat template (llava-hf's 1.6 checkpoints ship one per base LLM: vicuna, mistral,
hermes-yi); the tiny checkpoint uses LLaVA-1.5's turns. Image: one ``<image>`` expanded to the packed
feature count, as ``LlavaNextProcessor`` counts it (base tile + unpadded grid + a newline per grid row, CLS
dropped under ``default``); ``pixel_values`` ``[tiles, 3, H, W]`` + ``image_sizes``. Trainables: LoRA on the
language model and the ``multi_modal_projector``; ``image_newline`` (a bare parameter LLaVA-NeXT's recipe
trains with the projector) stays frozen here: peft's ``modules_to_save`` takes modules only. Vision cache:
allowed (the tower is frozen; features are per tile, packed at each stage with the current projector).
"""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.models.families.anyres import AnyresFamily
from cvqa_bench.models.families.llava import TINY_CHAT_TEMPLATE


class LlavaNext(AnyresFamily):
    """LLaVA-NeXT (1.6): anyres tiles + base image, image_newline, image_sizes."""

    name = "llava_next"
    model_types = ("llava_next",)
    model_class = "AutoModelForImageTextToText"
    tiny_chat_template = TINY_CHAT_TEMPLATE
    tiny_processor_class = "LlavaNextProcessor"

    def pack(self, core: Any, projected: list[torch.Tensor], image_sizes: torch.Tensor) -> list[torch.Tensor]:
        """``LlavaNextModel.pack_image_features`` with the config's selection strategy and the newline."""
        packed, _ = core.pack_image_features(projected, image_sizes, self.config.vision_feature_select_strategy,
                                             image_newline=core.image_newline)
        return packed

    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """A ``LlavaNextConfig``: the tiny LLaVA's CLIP tower and Llama with the tiny anyres grid."""
        from transformers import LlavaNextConfig

        llava = super().tiny_config(spec, tokenizer)
        return LlavaNextConfig(
            vision_config=llava.vision_config, text_config=llava.text_config,
            image_token_index=llava.image_token_index, image_grid_pinpoints=cls.tiny_pinpoints(spec),
            vision_feature_select_strategy="default", vision_feature_layer=-1,
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """``LlavaNextImageProcessorPil`` at the tiny tile size with the tiny grid."""
        from transformers import LlavaNextImageProcessorPil

        size = spec["image_size"]
        return LlavaNextImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                          image_grid_pinpoints=cls.tiny_pinpoints(spec))
