"""InternVL (HF ``InternVLForConditionalGeneration``, the ``-hf`` checkpoints of InternVL2.5/3): tiles, pixel
shuffle, MLP projector.

Inputs (HF ``processing_internvl.py``, ``modeling_internvl.py``): the image processor
(``GotOcr2ImageProcessorPil`` with the wrapper's ``crop_to_patches=True``) cuts each image into the tile grid
closest to its aspect ratio (between ``min_patches`` and ``max_patches`` tiles) plus a thumbnail when there
is more than one tile; ``pixel_values`` ``[tiles, 3, H, W]``, a batch concatenates its images' tiles. The chat
template writes ``<IMG_CONTEXT>`` and the wrapper expands it to ``<img>`` + ``<IMG_CONTEXT>`` x
(``image_seq_length`` x tiles) + ``</img>``; each tile gives ``(image_size / patch_size)**2 *
downsample_ratio**2`` tokens after the pixel shuffle.

Parts: ``vision_tower`` (InternViT), ``multi_modal_projector`` (LayerNorm + 2-layer MLP, "mlp1" in the
original code), ``language_model``. Vision cache: off (:attr:`InternVL.no_vision_cache`): the model takes a
batch's tiles concatenated, so the batch's image inputs do not say which tiles belong to which image, and a
per-image cache entry cannot be cut from them.
"""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.models.families.base import FamilyParts, ModelFamily, TinyTokens
from cvqa_bench.models.families.llava import Llava

IMAGE_CONTEXT = "<IMG_CONTEXT>"
IMAGE_START, IMAGE_END = "<img>", "</img>"
# The InternVL -hf chat template: ChatML, the image as "<IMG_CONTEXT>\n" before the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class InternVL(ModelFamily):
    """InternVL2.5/3 (-hf): InternViT, dynamic tiles + thumbnail, pixel shuffle, MLP projector, Qwen2 chat."""

    name = "internvl"
    model_types = ("internvl",)
    description = "InternVL2.5/3 (-hf): InternViT tiles + thumbnail, pixel shuffle, MLP projector"
    image_placeholder = IMAGE_CONTEXT
    no_vision_cache = ("InternVL takes a batch's tiles concatenated ([sum of tiles, 3, H, W]); the batch inputs do not "
                       "say which tiles are whose image, so per-image features cannot be cut from them")
    tiny_tokens = TinyTokens(bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk="<|endoftext|>",
                             image=IMAGE_CONTEXT, extra=("<|im_start|>", IMAGE_START, IMAGE_END, "<video>"))
    tiny_chat_template = CHAT_TEMPLATE

    # ---- inputs ------------------------------------------------------------------------------------------
    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """``pixel_values`` ``[tiles, 3, H, W]`` (``InternVLProcessor`` passes ``crop_to_patches=True``)."""
        out = image_processor(images=[image], crop_to_patches=True, return_tensors="pt")
        return {"pixel_values": out["pixel_values"]}

    def tokens_per_tile(self) -> int:
        """``(image_size / patch_size)**2 * downsample_ratio**2``: the projector's outputs per tile."""
        vision = self.config.vision_config
        side = vision.image_size[0] // vision.patch_size[0]
        return int(side * side * self.config.downsample_ratio ** 2)

    def image_token_count(self, image: dict[str, torch.Tensor]) -> int:
        """``<IMG_CONTEXT>`` tokens of one image: tokens per tile times its tiles."""
        return self.tokens_per_tile() * image["pixel_values"].shape[0]

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """``<img>`` + ``<IMG_CONTEXT>`` per image token + ``</img>`` (``InternVLProcessor.replace_image_token``)."""
        return IMAGE_START + IMAGE_CONTEXT * self.image_token_count(image) + IMAGE_END

    def collate_images(self, images: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Every image's tiles concatenated, in row order (``[sum of tiles, 3, H, W]``); nothing for images
        whose cached features replace their pixels."""
        if "pixel_values" not in images[0]:
            return {}
        return {"pixel_values": torch.cat([img["pixel_values"] for img in images])}

    # ---- modules and trainables: LLaVA's names (vision_tower, multi_modal_projector, language_model) --------
    modules = Llava.modules
    projector_names = Llava.projector_names

    # ---- tiny offline checkpoints ---------------------------------------------------------------------------
    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """An ``InternVLConfig``: InternViT and Qwen2 language model from the tiny spec."""
        from transformers import InternVLConfig

        size, patch = spec["image_size"], spec["patch_size"]
        vision = dict(spec["vision"], image_size=[size, size], patch_size=[patch, patch])
        text = dict(spec["text"], model_type="qwen2", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                    tie_word_embeddings=False)
        ratio = spec["downsample_ratio"]
        return InternVLConfig(
            vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT),
            image_seq_length=int((size // patch) ** 2 * ratio ** 2), downsample_ratio=ratio, tie_word_embeddings=False,
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """``GotOcr2ImageProcessorPil``: tiles of the tiny image size, up to ``max_tiles``."""
        from transformers import GotOcr2ImageProcessorPil

        size = spec["image_size"]
        return GotOcr2ImageProcessorPil(size={"height": size, "width": size}, crop_to_patches=True,
                                        min_patches=1, max_patches=spec["max_tiles"])
