"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: dynamic resolution, flattened patches, a patch merger, M-RoPE.

Inputs (HF ``modeling_qwen2_vl.py`` and kin): the image processor resizes each image to a multiple of
``patch_size * merge_size`` within ``[min_pixels, max_pixels]`` (``smart_resize``) and flattens it into
``pixel_values`` ``[t*h*w patches, 3 * temporal_patch_size * patch_size**2]`` with ``image_grid_thw``
``[t, h, w]``; a batch concatenates the patches of its images. The chat template writes
``<|vision_start|><|image_pad|><|vision_end|>`` and the wrapper repeats ``<|image_pad|>``
``t*h*w // merge_size**2`` times (one token per merged 2x2 patch group). ``mm_token_type_ids`` (1 on image
tokens) drives the 3-D rotary positions and is derived from the padded ids (:meth:`QwenVL.text_inputs`).

Parts: the vision tower is ``visual`` without its merger(s); the projector is ``visual.merger`` (Qwen3-VL:
also the DeepStack mergers, whose outputs are added to the first LM layers); the LM is ``language_model``.

Vision cache: the merger input of each image (the tower's last hidden states, in the image's own patch
order) is what stays fixed while the merger trains, so it is cached and the current merger(s) applied at
each stage. Qwen2.5-VL's tower works in window order and un-permutes after the merger; the merger acts on
groups of ``merge_size**2`` consecutive patches, so the cached input is put back in image order with HF's
own window index and merged directly. Qwen3-VL also caches the DeepStack layers' inputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from cvqa_bench.models.families.base import FamilyParts, ModelFamily, TinyTokens

IMAGE_PAD = "<|image_pad|>"
_QWEN_TURNS = (
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
)
_GENERATION = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
# Qwen2-VL / Qwen2.5-VL Instruct: ChatML with a default system turn.
CHAT_TEMPLATE_QWEN2 = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}" + _QWEN_TURNS + "{% endfor %}" + _GENERATION
)
# Qwen3-VL Instruct: ChatML without a default system turn.
CHAT_TEMPLATE_QWEN3 = "{% for message in messages %}" + _QWEN_TURNS + "{% endfor %}" + _GENERATION


def _core(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        children = dict(module.named_children())
        if "visual" in children and "language_model" in children:
            return module
    raise ValueError("not a Qwen-VL model: no module holds both visual and language_model")


class QwenVL(ModelFamily):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``)."""

    name = "qwen2_vl"
    model_types = ("qwen2_vl",)
    description = "Qwen2-VL: dynamic resolution, flattened patches + image_grid_thw, 2x2 patch merger, M-RoPE"
    merger_names: ClassVar[tuple[str, ...]] = ("merger",)
    tiny_tokens = TinyTokens(bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk="<|endoftext|>", image=IMAGE_PAD,
                             extra=("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"))
    tiny_chat_template = CHAT_TEMPLATE_QWEN2

    @property
    def merge_unit(self) -> int:
        return self.config.vision_config.spatial_merge_size ** 2

    # ---- inputs ------------------------------------------------------------------------------------------
    image_placeholder = IMAGE_PAD  # inside <|vision_start|>...<|vision_end|>, as the chat template writes it

    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """``pixel_values`` ``[t*h*w, 3*temporal*patch**2]`` and ``image_grid_thw`` ``[1, 3]`` of one image."""
        return dict(image_processor(images=[image], return_tensors="pt"))

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """``<|image_pad|>`` once per merged patch group (``Qwen2VLProcessor.replace_image_token``)."""
        return IMAGE_PAD * self.image_token_count(image)

    def collate_images(self, images: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The batch's patches concatenated (``[sum of patches, dim]``) and one grid row per image."""
        return {key: torch.cat([torch.as_tensor(img[key]) for img in images]) for key in images[0]}

    def image_token_count(self, image: dict[str, torch.Tensor]) -> int:
        """``t*h*w // spatial_merge_size**2`` of the image's grid."""
        return int(torch.as_tensor(image["image_grid_thw"]).prod()) // self.merge_unit

    def text_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``mm_token_type_ids``: 1 on image tokens, 0 elsewhere (the wrapper's ``create_mm_token_type_ids``)."""
        return {"mm_token_type_ids": (input_ids == self.config.image_token_id).long()}

    # ---- modules and trainables ----------------------------------------------------------------------------
    def modules(self, model: torch.nn.Module) -> FamilyParts:
        """``visual`` without its merger(s), the merger(s), ``language_model``."""
        core = _core(model)
        children = dict(core.visual.named_children())
        tower = torch.nn.ModuleDict({n: m for n, m in children.items() if n not in self.merger_names})
        mergers = [children[n] for n in self.merger_names]
        projector = mergers[0] if len(mergers) == 1 else torch.nn.ModuleList(mergers)
        return FamilyParts(core=core, vision_tower=tower, projector=projector, language_model=core.language_model)

    @property
    def projector_names(self) -> tuple[str, ...]:
        return self.merger_names

    # ---- vision features computed once ---------------------------------------------------------------------
    def _image_order(self, grid_thw: torch.Tensor) -> torch.Tensor | None:
        """Where each merged patch group of the tower's output sits in image order; None: already there."""
        return None

    def vision_features(self, parts: FamilyParts, image_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each image's merger input(s) in image order: ``[patches, width]`` (Qwen3-VL: ``[1 + deepstack, ...]``)."""
        captured: list[torch.Tensor] = []
        visual = parts.core.visual
        hooks = [getattr(visual, "merger")] + list(getattr(visual, "deepstack_merger_list", []))
        handles = [m.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach())) for m in hooks]
        try:
            pixels = image_inputs["pixel_values"].to(next(parts.vision_tower.parameters()).dtype)
            parts.core.get_image_features(pixel_values=pixels, image_grid_thw=image_inputs["image_grid_thw"])
        finally:
            for handle in handles:
                handle.remove()
        # capture order: deepstack mergers run during the blocks, the final merger last
        states = captured[-1:] + captured[:-1]
        grid = image_inputs["image_grid_thw"]
        order = self._image_order(grid)
        if order is not None:
            states = [s.view(-1, self.merge_unit, s.shape[-1])[order].view(-1, s.shape[-1]) for s in states]
        sizes = grid.prod(-1).tolist()
        per_image = [torch.stack(parts_) for parts_ in zip(*(s.split(sizes) for s in states))]
        return [f if len(states) > 1 else f[0] for f in per_image]

    def encoder_outputs(self, parts: FamilyParts, features: list[torch.Tensor],
                        image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The cached merger inputs through the current merger, one tensor per image, as ``get_image_features``."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        sizes = (image_inputs["image_grid_thw"].prod(-1) // self.merge_unit).tolist()
        merged = parts.core.visual.merger(torch.cat(features))
        return {"image": BaseModelOutputWithPooling(pooler_output=merged.split(sizes))}

    def cache_settings(self) -> dict[str, Any]:
        return {"merger_input": "image order"}

    # ---- tiny offline checkpoints ---------------------------------------------------------------------------
    config_class: ClassVar[str] = "Qwen2VLConfig"

    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """``spec['vision']`` and ``spec['text']`` (with ``rope_parameters.mrope_section``) as the family's config."""
        import transformers

        vision = dict(spec["vision"], patch_size=spec["patch_size"], spatial_merge_size=spec["merge_size"],
                      temporal_patch_size=2)
        text = dict(spec["text"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        if cls.config_class != "Qwen2VLConfig":  # Qwen2.5-VL and Qwen3-VL: the merger's output width
            vision["out_hidden_size"] = text["hidden_size"]
        token = tokenizer.convert_tokens_to_ids
        return getattr(transformers, cls.config_class)(
            vision_config=vision, text_config=text, image_token_id=token(IMAGE_PAD),
            video_token_id=token("<|video_pad|>"), vision_start_token_id=token("<|vision_start|>"),
            vision_end_token_id=token("<|vision_end|>"), tie_word_embeddings=False,
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """``Qwen2VLImageProcessorPil`` with the tiny patch and merge sizes and pixel bounds."""
        from transformers import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(size={"shortest_edge": spec["min_pixels"], "longest_edge": spec["max_pixels"]},
                                        patch_size=spec["patch_size"], merge_size=spec["merge_size"],
                                        temporal_patch_size=2)


class Qwen25VL(QwenVL):
    """Qwen2.5-VL: Qwen2-VL's inputs; a windowed-attention tower with an RMSNorm/SwiGLU merger."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    description = "Qwen2.5-VL: Qwen2-VL inputs, window-attention tower, patch merger, M-RoPE"
    config_class = "Qwen2_5_VLConfig"

    def _image_order(self, grid_thw: torch.Tensor) -> torch.Tensor | None:
        from transformers.vision_utils import get_vision_window_index

        vision = self.config.vision_config
        window_index, _ = get_vision_window_index(grid_thw.cpu(), spatial_merge_size=vision.spatial_merge_size,
                                                  window_size=vision.window_size, patch_size=vision.patch_size)
        return torch.argsort(window_index).to(grid_thw.device)


class Qwen3VL(QwenVL):
    """Qwen3-VL: Qwen2-VL's inputs; learned position grid, DeepStack mergers feeding the first LM layers."""

    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    description = "Qwen3-VL: Qwen2-VL inputs, DeepStack mergers into the first LM layers, interleaved M-RoPE"
    merger_names = ("merger", "deepstack_merger_list")
    tiny_chat_template = CHAT_TEMPLATE_QWEN3
    config_class = "Qwen3VLConfig"

    @property
    def projector_names(self) -> tuple[str, ...]:
        # each DeepStack merger by name: peft's modules_to_save cannot wrap the ModuleList the tower indexes
        count = len(self.config.vision_config.deepstack_visual_indexes)
        return ("merger",) + tuple(f"deepstack_merger_list.{i}" for i in range(count))

    def encoder_outputs(self, parts: FamilyParts, features: list[torch.Tensor],
                        image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The main and DeepStack merger outputs of the cached inputs, as ``Qwen3VLModel.get_image_features``."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        visual = parts.core.visual
        sizes = (image_inputs["image_grid_thw"].prod(-1) // self.merge_unit).tolist()
        merged = visual.merger(torch.cat([f[0] for f in features])).split(sizes)
        deepstack = [merger(torch.cat([f[1 + i] for f in features])).split(sizes)
                     for i, merger in enumerate(visual.deepstack_merger_list)]
        return {"image": BaseModelOutputWithDeepstackFeatures(pooler_output=merged, deepstack_features=deepstack)}
