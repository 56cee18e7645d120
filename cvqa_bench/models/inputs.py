"""The pipeline's processor: a model family with the checkpoint's tokenizer, image processor and chat template.

HF's processor wrappers of most recent families cannot be instantiated here (their video processor needs
torchvision), but their three pieces load: the tokenizer (with the chat template), the ``*ImageProcessorPil``
and the model config. :class:`ModelInputs` holds them and the family that turns rows into inputs
(``models/families/``); everything after it (padding, batching, generation) is shared.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from cvqa_bench.models.families.base import EncodedRow, ModelFamily

# The files of a checkpoint that make up its processor (tokenizer, image processor, chat template).
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "preprocessor_config.json",
                   "processor_config.json", "chat_template.jinja", "chat_template.json")


class ModelInputs:
    """Rows → model inputs for one checkpoint: ``family`` with ``tokenizer`` and ``image_processor``."""

    def __init__(self, family: ModelFamily, tokenizer: Any, image_processor: Any, source: str | Path) -> None:
        self.family = family
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = Path(source)

    @classmethod
    def from_pretrained(cls, path: str | Path, family: ModelFamily) -> ModelInputs:
        """Tokenizer (left padding, for batched generation), image processor and chat template of a folder."""
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.chat_template is None:
            tokenizer.chat_template = _folder_chat_template(Path(path))
        return cls(family, tokenizer, AutoImageProcessor.from_pretrained(path, local_files_only=True), path)

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """The checkpoint's chat template (the tokenizer's)."""
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def encode(self, rows: list[dict[str, Any]], images: list[Any | None], for_training: bool) -> list[EncodedRow]:
        """The family's ids, labels and per-image tensors of ``rows`` (``images[i]``: row i's PIL image or None)."""
        return self.family.build_inputs(rows, images, self.tokenizer, self.image_processor, for_training)

    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """The batch image kwargs of PIL ``images`` (pixels and the family's sizes, grids or masks)."""
        return self.family.collate_images([self.family.process_image(img, self.image_processor) for img in images])

    def save_pretrained(self, out: str | Path) -> None:
        """Copy the checkpoint's processor files into ``out`` (an export loads the same processor)."""
        for name in PROCESSOR_FILES:
            if (self.source / name).is_file():
                shutil.copyfile(self.source / name, Path(out) / name)


def _folder_chat_template(path: Path) -> str | None:
    """The processor-level chat template of a folder (``chat_template.jinja`` or ``chat_template.json``)."""
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text()).get("chat_template")
    return None


def pad_batch(rows: list[EncodedRow], pad_id: int, side: str, label_pad: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` (and ``labels`` when the rows have them) padded on ``side``."""
    width = max(len(r.input_ids) for r in rows)

    def padded(seq: list[int], value: int) -> list[int]:
        fill = [value] * (width - len(seq))
        return fill + seq if side == "left" else seq + fill

    batch = {"input_ids": torch.tensor([padded(r.input_ids, pad_id) for r in rows]),
             "attention_mask": torch.tensor([padded([1] * len(r.input_ids), 0) for r in rows])}
    if rows[0].labels is not None:
        batch["labels"] = torch.tensor([padded(r.labels or [], label_pad) for r in rows])
    return batch
