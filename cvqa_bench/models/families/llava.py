"""LLaVA-1.5 (HF ``LlavaForConditionalGeneration``): CLIP tower, MLP projector, one fixed-size image per row.

Prompt: the checkpoint's chat template (``cvqa assemble`` writes the official ``vicuna_v1`` one,
``models/conversation.py``; the tiny checkpoint the same turns without the system line). Image: one
``<image>`` placeholder expanded to ``(size / patch)^2`` image tokens (+1 for CLIP's CLS under the
``full`` selection), as ``LlavaProcessor.replace_image_token`` counts them; ``pixel_values`` ``[3, H, W]``
per image, stacked per batch. Trainables: LoRA on the language model, the ``multi_modal_projector``
as LLaVA's recipe trains it. Vision cache: allowed; the cached features are the projector's input (the
tower's output at ``vision_feature_layer``, CLS dropped under ``default``), one ``[patches, width]``
tensor per image.
"""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.models.families.base import FamilyParts, ModelFamily, TinyTokens

# The LLaVA-1.5 conversation ("USER: <image>\n{q} ASSISTANT: {a}</s>") without the system line, the tiny
# checkpoint's template. A rendered assistant turn extends the generation prompt exactly.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def find_core(model: torch.nn.Module, *children: str) -> torch.nn.Module:
    """The module of ``model`` (peft-wrapped or not) that holds every one of ``children`` as direct children."""
    for module in model.modules():
        names = dict(module.named_children())
        if all(child in names for child in children):
            return module
    raise ValueError(f"{type(model).__name__}: no module holds {', '.join(children)}")


class Llava(ModelFamily):
    """LLaVA-1.5: CLIP tower, 2-layer MLP projector, one fixed-size image (576 tokens at 336 px)."""

    name = "llava"
    model_types = ("llava",)
    model_class = "LlavaForConditionalGeneration"  # the class of every llava-hf folder (auto class maps it too)
    tiny_tokens = TinyTokens(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", image="<image>")
    tiny_chat_template = TINY_CHAT_TEMPLATE
    tiny_processor_class = "LlavaProcessor"

    def modules(self, model: torch.nn.Module) -> FamilyParts:
        """``LlavaModel``'s ``vision_tower``, ``multi_modal_projector`` and ``language_model``."""
        core = find_core(model, "vision_tower", "multi_modal_projector", "language_model")
        return FamilyParts(core, core.vision_tower, core.multi_modal_projector, core.language_model)

    @property
    def projector_names(self) -> tuple[str, ...]:
        """The MLP projector."""
        return ("multi_modal_projector",)

    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """``pixel_values`` ``[3, H, W]`` (CLIP resize + centre crop + normalise)."""
        return {"pixel_values": image_processor(image, return_tensors="pt")["pixel_values"][0]}

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """``<image>`` once per image token, counted as ``LlavaProcessor`` counts them."""
        height, width = image["pixel_values"].shape[-2:]
        patch = self.config.vision_config.patch_size
        extra = 0 if self.config.vision_feature_select_strategy == "default" else self.cls_tokens()
        return self.image_token * ((height // patch) * (width // patch) + extra)

    @property
    def image_token(self) -> str:
        """The image token the chat template writes and the model fills."""
        return self.image_placeholder

    def cls_tokens(self) -> int:
        """1 for a CLIP tower (its CLS token), 0 for a tower without one (SigLIP)."""
        return int(self.config.vision_config.model_type == "clip_vision_model")

    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """A ``LlavaConfig``: CLIP tower and Llama language model from the tiny spec."""
        from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

        size, patch = spec["image_size"], spec["patch_size"]
        text = LlamaConfig(
            vocab_size=len(tokenizer), num_key_value_heads=spec["text"]["num_attention_heads"],
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, **spec["text"],
        )
        return LlavaConfig(
            vision_config=CLIPVisionConfig(image_size=size, patch_size=patch, **spec["vision"]), text_config=text,
            image_token_index=tokenizer.convert_tokens_to_ids(cls.tiny_tokens.image),
            image_seq_length=(size // patch) ** 2, vision_feature_select_strategy="default", vision_feature_layer=-1,
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """CLIP's image processor at the tiny size (shortest edge, then centre crop)."""
        from transformers import CLIPImageProcessorPil

        size = spec["image_size"]
        return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})

    @classmethod
    def tiny_processor(cls, image_processor: Any, tokenizer: Any, chat_template: str, config: Any) -> Any:
        """HF's processor wrapper (``LlavaProcessor``, ``LlavaNextProcessor``: they load here): saved with the
        checkpoint, and the reference of the input test."""
        import transformers

        return getattr(transformers, cls.tiny_processor_class)(
            image_processor=image_processor, tokenizer=tokenizer, patch_size=config.vision_config.patch_size,
            vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1,
            chat_template=chat_template,
        )
