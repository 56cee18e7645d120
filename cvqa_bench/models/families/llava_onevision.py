"""LLaVA-OneVision (HF ``LlavaOnevisionForConditionalGeneration``): SigLIP tower, anyres-max tiles, Qwen2 chat.

Prompt: the checkpoint's chat template (ChatML: ``<|im_start|>user\\n<image>\\n...<|im_end|>``); the tiny
checkpoint writes the same turns. Image: one ``<image>`` expanded to the packed feature count as
``LlavaOnevisionProcessor`` counts it for a single-image row (base tile, unpadded grid shrunk to at most
``anyres_max_N`` tiles' worth, a newline per grid row; SigLIP has no CLS); ``pixel_values`` ``[tiles, 3, H, W]``
+ ``image_sizes``. That processor cannot be instantiated here (its video processor needs torchvision):
inputs come from ``LlavaOnevisionImageProcessorPil``, the tokenizer and the chat template, and the tests
check the token count against the model's own feature count. Trainables: LoRA on the language model and
the ``multi_modal_projector`` (OneVision's recipe also trains the tower in its later stages and
``image_newline``; both stay frozen here). Vision cache: allowed, as for LLaVA-NeXT.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cvqa_bench.models.families.anyres import AnyresFamily
from cvqa_bench.models.families.base import TinyTokens

# Qwen2's ChatML with llava-hf's system line; a rendered assistant turn extends the generation prompt exactly.
TINY_CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LlavaOnevision(AnyresFamily):
    """LLaVA-OneVision: SigLIP tower, anyres-max tiles, image_sizes, Qwen2 chat."""

    name = "llava_onevision"
    model_types = ("llava_onevision",)
    model_class = "AutoModelForImageTextToText"
    tiny_tokens = TinyTokens(bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk="<|endoftext|>", image="<image>",
                             extra=("<|im_start|>", "<video>"))
    tiny_chat_template = TINY_CHAT_TEMPLATE

    @classmethod
    def tiny_processor(cls, image_processor: Any, tokenizer: Any, chat_template: str, config: Any) -> None:
        """None: ``LlavaOnevisionProcessor`` needs a video processor, which needs torchvision."""
        return None

    def limit_grid(self, rows: int, cols: int, side: int) -> tuple[int, int]:
        """A grid of more than ``anyres_max_N`` tiles' features (by 10%) is shrunk, as the processor counts it."""
        most = int(self.config.vision_aspect_ratio.removeprefix("anyres_max_"))
        ratio = math.sqrt(rows * cols / (most * side**2))
        if ratio > 1.1:
            return int(rows // ratio) * int(cols // ratio), int(rows // ratio)
        return rows * cols, rows

    def pack(self, core: Any, projected: list[torch.Tensor], image_sizes: torch.Tensor) -> list[torch.Tensor]:
        """``LlavaOnevisionModel.pack_image_features`` with the newline and the config's ``vision_aspect_ratio``."""
        packed, _ = core.pack_image_features(projected, image_sizes, image_newline=core.image_newline,
                                             vision_aspect_ratio=self.config.vision_aspect_ratio)
        return packed

    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """A ``LlavaOnevisionConfig``: SigLIP tower and Qwen2 language model from the tiny spec."""
        from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

        text = Qwen2Config(
            vocab_size=len(tokenizer), num_key_value_heads=spec["text"]["num_attention_heads"],
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
            **spec["text"],
        )
        vision = SiglipVisionConfig(image_size=spec["image_size"], patch_size=spec["patch_size"], **spec["vision"])
        return LlavaOnevisionConfig(
            vision_config=vision, text_config=text, image_grid_pinpoints=cls.tiny_pinpoints(spec),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
            vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """``LlavaOnevisionImageProcessorPil`` at the tiny tile size with the tiny grid."""
        from transformers import LlavaOnevisionImageProcessorPil

        size = spec["image_size"]
        return LlavaOnevisionImageProcessorPil(size={"height": size, "width": size},
                                               image_grid_pinpoints=cls.tiny_pinpoints(spec))
