"""Idefics3 and SmolVLM (HF ``Idefics3ForConditionalGeneration``, ``SmolVLMForConditionalGeneration``, which
shares Idefics3's modeling and image processing): image splitting, pixel-shuffle connector.

Inputs (HF ``processing_idefics3.py``, ``image_processing_pil_idefics3.py``): the image processor resizes
each image so its longest edge is ``size.longest_edge``, then (``do_image_splitting``) to multiples of
``max_image_size`` and cuts it into ``rows x cols`` tiles of that size plus the whole image resized to one
tile (the global image); a small image is one tile with ``rows = cols = 0``. A batch's ``pixel_values``
``[rows, max tiles, 3, H, W]`` is zero-padded (padding tiles are all zero, which the model drops) with
``pixel_attention_mask`` ``[rows, max tiles, H, W]``. The chat template writes ``<image>`` and the wrapper
expands it, per tile, to ``<fake_token_around_image><row_r_col_c>`` + ``<image>`` x ``image_seq_len``, a
newline after each tile row, then ``\\n<fake_token_around_image><global-img>`` + ``<image>`` x
``image_seq_len`` + ``<fake_token_around_image>`` (unsplit: only the global part, without the leading
newline). ``image_seq_len = (image_size / patch_size)**2 / scale_factor**2``.

Parts: ``vision_model`` (SigLIP), ``connector`` (pixel shuffle + linear ``modality_projection``),
``text_model`` (the LM). Vision cache: allowed; the cached features are the connector's input (the
tower's last hidden state), ``[tiles, patches, width]`` per image.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

from cvqa_bench.models.families.base import FamilyParts, ModelFamily, TinyTokens
from cvqa_bench.models.families.llava import find_core

IMAGE = "<image>"
FAKE = "<fake_token_around_image>"
GLOBAL = "<global-img>"
ROW_COL = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))


class Idefics3(ModelFamily):
    """Idefics3 and SmolVLM: SigLIP tower, image splitting into tiles + a global image, pixel-shuffle connector."""

    name = "idefics3"
    model_types = ("idefics3", "smolvlm")
    description = "Idefics3 / SmolVLM: image splitting (tiles + global image), pixel-shuffle connector"
    image_placeholder = IMAGE
    pixel_keys = ("pixel_values", "pixel_attention_mask")
    # No BOS added by the tokenizer: SmolVLM's template starts with "<|im_start|>" itself.
    tiny_tokens = TinyTokens(bos=None, eos="<end_of_utterance>", pad="<|endoftext|>", unk="<|endoftext|>",
                             image=IMAGE, extra=("<|im_start|>", FAKE, GLOBAL) + ROW_COL)
    tiny_chat_template = DEFAULT_CHAT_TEMPLATE  # SmolVLM's ("User:<image>{q}<end_of_utterance>\nAssistant:")

    # ---- inputs ------------------------------------------------------------------------------------------
    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """One image's tiles ``[tiles, 3, H, W]``, their pixel masks and its ``rows``/``cols`` of tiles."""
        out = image_processor(images=[[image]], return_row_col_info=True, return_tensors="pt")
        return {"pixel_values": out["pixel_values"][0], "pixel_attention_mask": out["pixel_attention_mask"][0],
                "rows": torch.tensor(out["rows"][0][0]), "cols": torch.tensor(out["cols"][0][0])}

    @property
    def image_seq_len(self) -> int:
        """Image tokens per tile: ``(image_size / patch_size)**2 / scale_factor**2``."""
        vision = self.config.vision_config
        return int((vision.image_size // vision.patch_size) ** 2 / self.config.scale_factor ** 2)

    def image_token_count(self, image: dict[str, torch.Tensor]) -> int:
        """``<image>`` tokens of one image: ``image_seq_len`` per tile, the global image included."""
        return self.image_seq_len * image["pixel_values"].shape[0]

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """The tile grid's text as ``Idefics3Processor.replace_image_token`` writes it."""
        tile = IMAGE * self.image_seq_len
        rows, cols = int(image["rows"]), int(image["cols"])
        global_image = f"{FAKE}{GLOBAL}{tile}{FAKE}"
        if rows == 0 and cols == 0:
            return global_image
        grid = "".join("".join(f"{FAKE}<row_{r}_col_{c}>{tile}" for c in range(1, cols + 1)) + "\n"
                       for r in range(1, rows + 1))
        return f"{grid}\n{global_image}"

    def collate_images(self, images: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Tiles and masks zero-padded to the batch's most tiles and largest tile, as the image processor pads
        (``rows``/``cols`` only write the prompt; images with cached features keep no pixels: nothing)."""
        if "pixel_values" not in images[0]:
            return {}
        tiles = max(img["pixel_values"].shape[0] for img in images)
        height = max(img["pixel_values"].shape[-2] for img in images)
        width = max(img["pixel_values"].shape[-1] for img in images)
        first = images[0]["pixel_values"]
        pixels = first.new_zeros((len(images), tiles, first.shape[1], height, width))
        masks = images[0]["pixel_attention_mask"].new_zeros((len(images), tiles, height, width))
        for i, img in enumerate(images):
            n, _, h, w = img["pixel_values"].shape
            pixels[i, :n, :, :h, :w] = img["pixel_values"]
            masks[i, :n, :h, :w] = img["pixel_attention_mask"]
        return {"pixel_values": pixels, "pixel_attention_mask": masks}

    # ---- modules and trainables ----------------------------------------------------------------------------
    def modules(self, model: torch.nn.Module) -> FamilyParts:
        """``Idefics3Model``'s ``vision_model``, ``connector`` and ``text_model``."""
        core = find_core(model, "vision_model", "connector", "text_model")
        return FamilyParts(core, core.vision_model, core.connector, core.text_model)

    @property
    def projector_names(self) -> tuple[str, ...]:
        """The pixel-shuffle connector (its one linear layer)."""
        return ("connector",)

    @property
    def language_model_names(self) -> tuple[str, ...]:
        """Idefics3 names its language model ``text_model``."""
        return ("text_model", "lm_head")

    # ---- vision features computed once ---------------------------------------------------------------------
    def vision_features(self, parts: FamilyParts, image_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The connector's input of each row's real tiles (padding tiles, all zero, dropped as HF drops them)."""
        per_tile = super().vision_features(parts, image_inputs)
        pixels = image_inputs["pixel_values"]
        real = (pixels != 0).flatten(2).any(-1).sum(1).tolist()  # HF: a tile is padding when every value is 0
        return [torch.stack(t) for t in _split(per_tile, real)]

    def encoder_outputs(self, parts: FamilyParts, features: list[torch.Tensor],
                        image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The cached tiles through the current connector, one ``[tiles * tokens, hidden]`` per row, as HF."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        projected = parts.projector(torch.cat(features))
        rows = projected.split([f.shape[0] for f in features])
        return {"image": BaseModelOutputWithPooling(pooler_output=[r.reshape(-1, r.shape[-1]) for r in rows])}

    # ---- tiny offline checkpoints ---------------------------------------------------------------------------
    @classmethod
    def tiny_config(cls, spec: dict[str, Any], tokenizer: Any) -> Any:
        """An ``Idefics3Config`` (or ``SmolVLMConfig`` when ``spec['model_type']`` says so): SigLIP-style tower,
        Llama language model."""
        import transformers

        config_class = {"idefics3": "Idefics3Config", "smolvlm": "SmolVLMConfig"}[spec.get("model_type", "idefics3")]
        vision = dict(spec["vision"], image_size=spec["image_size"], patch_size=spec["patch_size"])
        text = dict(spec["text"], model_type="llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        return getattr(transformers, config_class)(
            vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
            scale_factor=spec["scale_factor"], tie_word_embeddings=False,
        )

    @classmethod
    def tiny_image_processor(cls, spec: dict[str, Any]) -> Any:
        """``Idefics3ImageProcessorPil``: tiles of the tiny image size, the longest edge up to ``max_edge``."""
        from transformers import Idefics3ImageProcessorPil

        return Idefics3ImageProcessorPil(size={"longest_edge": spec["max_edge"]},
                                         max_image_size={"longest_edge": spec["image_size"]}, do_image_splitting=True)

    @classmethod
    def tiny_processor(cls, image_processor: Any, tokenizer: Any, chat_template: str, config: Any) -> Any | None:
        """``Idefics3Processor`` loads here (no video processor): the reference of the input test. SmolVLM's
        wrapper needs torchvision."""
        if config.model_type != "idefics3":
            return None
        from transformers import Idefics3Processor

        return Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                 image_seq_len=cls(config).image_seq_len, chat_template=chat_template)


def _split(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, start = [], 0
    for size in sizes:
        out.append(items[start : start + size])
        start += size
    return out
