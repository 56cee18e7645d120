"""The model-family interface: everything the pipeline asks of a vision-language model family.

A family serves one or more ``config.json`` ``model_type`` values. It turns CoIN rows into token ids,
answer-only labels and the image tensors its HF modeling code expects; it names the vision tower, the
projector (merger, connector) and the language model; it says what LoRA targets, what else trains, whether
frozen vision features can be cached and how; and it builds a tiny offline checkpoint for tests. Nothing
outside ``models/families/`` asks which family a model is.

A family object is bound to one model config (``Family(config)``; :func:`cvqa_bench.models.families.family_for`
builds it). Subclasses set the class attributes and implement the members marked "must implement".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

# The projector's module name in LLaVA-style models (``multi_modal_projector``): what a method that splits
# trainable tensors by name assumes before it has seen a model.
DEFAULT_PROJECTOR_NAMES = ("multi_modal_projector",)
# What a LoRA target regex calls the language model on every family (HF v5's name in most of them).
LANGUAGE_MODEL = "language_model"
IGNORE_INDEX = -100  # label of every token that is not an answer token (HF's CrossEntropyLoss ignore_index)


@dataclass(frozen=True)
class FamilyParts:
    """The three parts of a loaded (possibly peft-wrapped) model, and the module that holds them."""

    core: torch.nn.Module  # HF's inner ``*Model`` (e.g. ``LlavaModel``): ``get_image_features``, forward hooks
    vision_tower: torch.nn.Module
    projector: torch.nn.Module  # projector / merger / connector: what ``train_projector`` trains
    language_model: torch.nn.Module


@dataclass
class EncodedRow:
    """One CoIN row as model inputs, before padding.

    ``labels`` (training only) has ``IGNORE_INDEX`` everywhere but the answer tokens and each answer's
    end-of-turn token(s). ``image`` holds the row's image tensors as the family's processor gives them for
    ONE image (no batch axis added or removed: exactly the processor's output for that image, e.g.
    ``pixel_values`` ``[3, H, W]`` for LLaVA-1.5, ``[tiles, 3, H, W]`` + ``image_sizes`` ``[2]`` for anyres,
    ``[patches, dim]`` + ``image_grid_thw`` ``[1, 3]`` for Qwen-VL); None for a row without an image.
    """

    input_ids: list[int]
    labels: list[int] | None = None
    image: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class TinyTokens:
    """The special tokens a tiny checkpoint's locally trained tokenizer needs for this family's chat template."""

    bos: str | None
    eos: str
    pad: str
    unk: str
    image: str  # the image placeholder token the modeling code looks for (``config.image_token_id``)
    extra: tuple[str, ...] = field(default=())  # further special tokens (turn markers, image start/end ...)


class ModelFamily:
    """Base class of a model family. Class attributes describe it; methods act on one model config."""

    name: ClassVar[str]  # registry name, shown by ``cvqa list models`` (e.g. "qwen2_5_vl")
    model_types: ClassVar[tuple[str, ...]]  # config.json ``model_type`` values served (e.g. ("qwen2_5_vl",))
    description: ClassVar[str] = ""  # one line for ``cvqa list models``
    # The HF class loaded with ``from_pretrained``: "AutoModelForImageTextToText" unless that auto class does
    # not map the model_type (then the family's own class name, importable from ``transformers``).
    model_class: ClassVar[str] = "AutoModelForImageTextToText"
    # Why frozen vision features cannot be cached for this family; None when they can (then
    # :meth:`vision_features` and :meth:`encoder_outputs` must work). Logged and written to the manifest.
    no_vision_cache: ClassVar[str | None] = None
    # The keys of :meth:`collate_images` that carry pixels: left out when cached vision features replace them
    # (the other keys, sizes and grids, still go to the model: Qwen's rope needs ``image_grid_thw``).
    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values",)

    def __init__(self, config: Any) -> None:
        self.config = config  # the model's ``PretrainedConfig`` (composite: ``vision_config``, ``text_config``)

    @classmethod
    def new_model(cls, config: Any) -> torch.nn.Module:
        """A randomly initialised model of :attr:`model_class` from ``config`` (tiny builds, meta-device checks)."""
        import transformers

        model_class = getattr(transformers, cls.model_class)
        return model_class.from_config(config) if cls.model_class.startswith("Auto") else model_class(config)

    # ---- inputs ------------------------------------------------------------------------------------------
    # The image placeholder as the checkpoint's chat template writes it for ``{"type": "image"}`` (LLaVA:
    # "<image>"); :meth:`image_text` replaces it.
    image_placeholder: ClassVar[str] = "<image>"

    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """Must implement: one PIL image through the family's image processor, as :attr:`EncodedRow.image`."""
        raise NotImplementedError

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """Must implement: the text that replaces :attr:`image_placeholder` for this processed image (the
        image tokens the modeling code fills, with the family's start/end/newline tokens), as HF's processor
        wrapper expands it."""
        raise NotImplementedError

    def build_inputs(self, rows: list[dict[str, Any]], images: list[Any | None], tokenizer: Any,
                     image_processor: Any, for_training: bool) -> list[EncodedRow]:
        """CoIN rows → ids, labels masked to the answer, and each row's image tensors.

        ``rows`` are CoIN rows (``conversations`` when ``for_training``, else ``text``); ``images[i]`` is row
        i's PIL image (already padded/cropped as the task asks) or None. The chat is rendered with the
        tokenizer's chat template (:func:`cvqa_bench.models.chat.conversation_segments`); the placeholder in
        the first user turn becomes :meth:`image_text`; the first piece is tokenized with the tokenizer's
        special tokens, the others without. ``for_training`` False: the generation prompt, ``labels`` None.
        Where HF's processor wrapper loads here, the ids and tensors equal the wrapper's (a test checks it).
        A family overrides only what differs (e.g. several placeholders per image).
        """
        from cvqa_bench.models.chat import conversation_segments, generation_prompt

        out = []
        for row, image in zip(rows, images):
            processed = self.process_image(image, image_processor) if image is not None else None
            if for_training:
                segments = conversation_segments(tokenizer, row, with_image=image is not None)
            else:
                segments = [(generation_prompt(tokenizer, row["text"], image is not None), False)]
            first = segments[0][0]
            if processed is not None:
                first = first.replace(self.image_placeholder, self.image_text(processed), 1)
            ids = list(tokenizer(first, add_special_tokens=True)["input_ids"])
            labels = [IGNORE_INDEX] * len(ids)
            for text, is_answer in segments[1:]:
                piece = list(tokenizer(text, add_special_tokens=False)["input_ids"])
                ids += piece
                labels += piece if is_answer else [IGNORE_INDEX] * len(piece)
            out.append(EncodedRow(ids, labels if for_training else None, processed))
        return out

    def collate_images(self, images: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The batch's image kwargs for the model's forward/generate from per-image :attr:`EncodedRow.image`
        dicts, in row order. Default: stack each key (fixed-shape images). Families with variable-size images
        (tiles, patches) concatenate or pad as their processor does for a batch."""
        return {key: torch.stack([torch.as_tensor(img[key]) for img in images]) for key in images[0]}

    def text_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs derived from the batch's padded token ids (Qwen-VL's ``mm_token_type_ids``, which its
        3-D rotary positions need). Default: none."""
        return {}

    # ---- modules and trainables ----------------------------------------------------------------------------
    def modules(self, model: torch.nn.Module) -> FamilyParts:
        """Must implement: the vision tower, projector and language model of ``model`` (peft-wrapped or not)."""
        raise NotImplementedError

    @property
    def projector_names(self) -> tuple[str, ...]:
        """Must implement: dotted module names (relative to any prefix) that contain the projector's
        parameters, e.g. ("multi_modal_projector",): peft's ``modules_to_save`` when ``train_projector`` is
        on, and what EProj copies per task (a parameter is the projector's when its name contains one)."""
        raise NotImplementedError

    @property
    def language_model_names(self) -> tuple[str, ...]:
        """Module-name fragments of the language model's parameters (full training trains them and the
        LM head). Default: HF v5's ``language_model`` and ``lm_head``."""
        return ("language_model", "lm_head")

    def lora_targets(self, model: torch.nn.Module) -> list[str]:
        """LoRA's default targets (``model.lora.target_modules: null``): every ``nn.Linear`` of the language
        model, by full module name (the LM head excluded, as LLaVA's ``find_all_linear_names``)."""
        lm = self.modules(model).language_model
        prefix = {id(m): n for n, m in model.named_modules()}[id(lm)]
        return [f"{prefix}.{n}" for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear)]

    def lora_matches(self, model: torch.nn.Module, pattern: str) -> list[str]:
        """Full names of the modules that the ``model.lora.target_modules`` regex selects (``re.fullmatch``, as
        peft), where the family's language model is also called :data:`LANGUAGE_MODEL` whatever its class
        names it: the default ``.*language_model.*\\.(q_proj|v_proj)`` means the LLM's q/v projections on every
        family (Idefics3's ``text_model`` included), and a regex on the real names works as well."""
        import re

        regex = re.compile(pattern)
        lm = self.modules(model).language_model
        names = {id(m): n for n, m in model.named_modules()}
        prefix = names[id(lm)]
        alias = ".".join([*prefix.split(".")[:-1], LANGUAGE_MODEL])
        inside = {names[id(m)] for m in lm.modules()}
        return [n for n, _ in model.named_modules() if n and (
            regex.fullmatch(n) or (n in inside and regex.fullmatch(alias + n[len(prefix):])))]

    def lora_target_modules(self, model: torch.nn.Module, pattern: str | None) -> str | list[str]:
        """peft's ``target_modules`` for the config's regex (None: :meth:`lora_targets`): the regex itself where
        it selects on the real names what :meth:`lora_matches` selects (LLaVA-style names: the adapter and its
        config stay as they were), else the selected names."""
        if pattern is None:
            return self.lora_targets(model)
        import re

        matched = self.lora_matches(model, pattern)
        regex = re.compile(pattern)
        direct = [n for n, _ in model.named_modules() if n and regex.fullmatch(n)]
        return pattern if direct == matched else matched

    # ---- vision features computed once ---------------------------------------------------------------------
    def vision_features(self, parts: FamilyParts, image_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The projector's input for each image of a batch (``image_inputs`` from :meth:`collate_images`),
        one tensor per image. Default: capture the projector's input while HF's ``get_image_features`` runs,
        one row of axis 0 per image (fixed-size images). Families whose projector input is not split per
        image along axis 0 (tiles, flattened patches) override; a family with ``no_vision_cache`` need not."""
        captured: list[torch.Tensor] = []
        handle = parts.projector.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            dtype = next(parts.vision_tower.parameters()).dtype
            parts.core.get_image_features(**{k: v.to(dtype) if v.is_floating_point() else v
                                             for k, v in image_inputs.items()})
        finally:
            handle.remove()
        return list(captured[0].detach())

    def encoder_outputs(self, parts: FamilyParts, features: list[torch.Tensor],
                        image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """HF's ``mm_encoder_outputs`` (``{"image": BaseModelOutputWithPooling(pooler_output=...)}``) for the
        cached ``features`` through the CURRENT projector, as ``get_image_features`` would give them.
        ``image_inputs`` is the batch's image kwargs without the pixel tensors (sizes, grids). Default: the
        projector per image (LLaVA-1.5)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        projected = parts.projector(torch.stack(features))
        return {"image": BaseModelOutputWithPooling(pooler_output=list(projected))}

    def cache_settings(self) -> dict[str, Any]:
        """What besides the tower's weights and the image processor decides the cached features (hashed into
        the cache key). Default: the vision feature layer and selection strategy when the config has them."""
        return {"layer": getattr(self.config, "vision_feature_layer", None),
                "select": getattr(self.config, "vision_feature_select_strategy", None)}

    # ---- tiny offline checkpoints ---------------------------------------------------------------------------
    tiny_tokens: ClassVar[TinyTokens]  # must set: the special tokens of a tiny checkpoint's tokenizer
    tiny_chat_template: ClassVar[str]  # must set: the chat template written into a tiny checkpoint

    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """Must implement: the tiny model's ``PretrainedConfig`` from a ``configs/models/tiny*.yaml`` spec
        (``image_size``, ``patch_size``, ``vision``, ``text`` …) and the trained tokenizer (vocab size,
        special-token ids, the image token id)."""
        raise NotImplementedError

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """Must implement: the family's ``*ImageProcessorPil`` sized for the tiny spec."""
        raise NotImplementedError

    @classmethod
    def tiny_processor(cls, image_processor: Any, tokenizer: Any, chat_template: str, config: Any) -> Any | None:
        """The family's HF processor wrapper for a tiny checkpoint (saved beside it, and the reference
        :meth:`build_inputs` is tested against), or None where it cannot be instantiated here (needs
        torchvision). Default None."""
        return None
