"""Turn CoIN rows into model inputs with the processor's own chat template.

Training labels cover only the assistant turns (answer tokens and the end-of-turn token); the prompt,
the image tokens and the padding are -100. The prompt used at evaluation is exactly the prefix the
model saw before each answer in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGE_MARKER = "<image>"
IGNORE_INDEX = -100


def strip_image_marker(text: str) -> str:
    """The question text without CoIN's ``<image>`` marker (the chat template places the image)."""
    return "\n".join(line for line in text.replace(IMAGE_MARKER, "\n").split("\n") if line.strip()).strip()


def user_message(text: str, with_image: bool) -> dict[str, Any]:
    """A chat-template user message holding the image (first) and the question text."""
    content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": strip_image_marker(text)})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict[str, Any]:
    """A chat-template assistant message."""
    return {"role": "assistant", "content": [{"type": "text", "text": text.strip()}]}


def generation_prompt(processor: Any, text: str, with_image: bool) -> str:
    """The evaluation prompt for one question, ending where the answer starts."""
    return processor.apply_chat_template([user_message(text, with_image)], add_generation_prompt=True, tokenize=False)


def conversation_segments(processor: Any, row: dict[str, Any]) -> list[tuple[str, bool]]:
    """Split a training conversation into (text, is_target) pieces whose concatenation is the rendered chat."""
    turns = row["conversations"]
    messages: list[dict[str, Any]] = []
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for i in range(0, len(turns) - 1, 2):
        messages.append(user_message(turns[i]["value"], with_image=i == 0 and row.get("image") is not None))
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append(assistant_message(turns[i + 1]["value"]))
        full = processor.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise ValueError("the processor's chat template does not render turns as prefixes of each other")
        segments += [(prompt[len(rendered):], False), (full[len(prompt):], True)]
        rendered = full
    return segments


def _load_image(path: str) -> Image.Image:
    from cvqa_bench.data.image_cache import load_rgb  # bounded by bytes, not by count

    return load_rgb(path)


def load_image(path: str, pad_to_square: bool = False, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Open an RGB image, optionally padded to a square with ``fill`` (LLaVA-1.5 ``expand2square``)."""
    img = _load_image(path)
    width, height = img.size
    if not pad_to_square or width == height:
        return img
    side = max(width, height)
    square = Image.new("RGB", (side, side), fill)
    square.paste(img, ((side - width) // 2, (side - height) // 2))
    return square


def mean_fill(processor: Any) -> tuple[int, int, int]:
    """The image processor's mean colour as 0–255 RGB, truncated as LLaVA-1.5 pads with it
    (``llava/mm_utils.py``: ``tuple(int(x * 255) for x in image_processor.image_mean)``)."""
    mean = getattr(processor.image_processor, "image_mean", None) or [0.5, 0.5, 0.5]
    return tuple(int(m * 255) for m in mean)  # type: ignore[return-value]


# The batch key (and encoded-row key) of vision features computed once, in place of pixel values; the model
# takes it through models/vision_cache.accept_vision_features.
VISION_FEATURES = "vision_features"
PIXEL_BUDGET_BYTES = 1 << 30  # pre-encoded pixels of one stage's rows kept in memory up to this
ENCODE_CHUNK = 64  # rows per processor call when pre-encoding


class TrainCollator:
    """Batch CoIN training rows into ``input_ids``, ``attention_mask``, ``labels`` and ``pixel_values``.

    Called with raw rows it encodes them (chat template, processor, label masking) and pads; called with
    the items of :meth:`encode_rows` it only pads, so a stage encodes each row once instead of once per
    batch. Both give the same tensors for the same rows.
    """

    def __init__(self, processor: Any, max_length: int, pad_to_square: bool = False) -> None:
        self.processor = processor
        self.max_length = max_length
        self.pad_to_square = pad_to_square
        self.fill = mean_fill(processor)

    def encode_rows(self, rows: list[dict[str, Any]], keep_pixels: bool | None = None) -> list[dict[str, Any]]:
        """Every row encoded once, in order: token ids, labels and (when they fit in memory) pixel values."""
        encoded = [item for start in range(0, len(rows), ENCODE_CHUNK)
                   for item in self._encode(rows[start : start + ENCODE_CHUNK])]
        if keep_pixels is None:
            sizes = [item["pixel_values"].nbytes for item in encoded if item["pixel_values"] is not None]
            keep_pixels = sum(sizes) <= PIXEL_BUDGET_BYTES
        if not keep_pixels:  # recomputed per batch from the image path (decoded images are cached)
            for item in encoded:
                item["pixel_values"] = None
        return encoded

    def _encode(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        segments = [conversation_segments(self.processor, row) for row in rows]
        images = [load_image(r["image"], self.pad_to_square, self.fill) for r in rows if r.get("image")]
        # The first segment of each row holds the image marker: the processor expands it to image tokens.
        first = self.processor(text=[s[0][0] for s in segments], images=images or None, add_special_tokens=True)
        rest = [text for s in segments for text, _ in s[1:]]
        rest_ids = iter(self.processor.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else [])
        pixels = iter(first["pixel_values"] if images else [])
        out = []
        for row, row_segments, first_ids in zip(rows, segments, first["input_ids"]):
            ids, labels = list(first_ids), [IGNORE_INDEX] * len(first_ids)
            for _, is_target in row_segments[1:]:
                piece = next(rest_ids)
                ids += piece
                labels += piece if is_target else [IGNORE_INDEX] * len(piece)
            if len(first_ids) > self.max_length:
                raise ValueError(f"prompt of {len(first_ids)} tokens exceeds train.max_length={self.max_length}")
            out.append({"encoded_row": True, "id": row.get("id"),
                        "input_ids": ids[: self.max_length], "labels": labels[: self.max_length],
                        "image": row.get("image"), "pixel_values": next(pixels) if row.get("image") else None})
        return out

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        items = rows if rows and rows[0].get("encoded_row") else self._encode(rows)
        pad_id = self.processor.tokenizer.pad_token_id
        width = max(len(item["input_ids"]) for item in items)
        batch = {
            "input_ids": torch.tensor([it["input_ids"] + [pad_id] * (width - len(it["input_ids"])) for it in items]),
            "attention_mask": torch.tensor([[1] * len(it["input_ids"]) + [0] * (width - len(it["input_ids"]))
                                            for it in items]),
            "labels": torch.tensor([it["labels"] + [IGNORE_INDEX] * (width - len(it["labels"])) for it in items]),
        }
        with_image = [it for it in items if it["image"]]
        if with_image and all(it.get(VISION_FEATURES) is not None for it in with_image):
            batch[VISION_FEATURES] = torch.stack([it[VISION_FEATURES] for it in with_image])  # train_features.py
        elif with_image:
            batch["pixel_values"] = self.pixel_values(with_image)
        return batch

    def pixel_values(self, items: list[dict[str, Any]]) -> torch.Tensor:
        """The pixel values of encoded rows with an image: those kept by :meth:`encode_rows`, else made again."""
        if any(it["pixel_values"] is None for it in items):
            images = [load_image(it["image"], self.pad_to_square, self.fill) for it in items]
            return self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return torch.as_tensor(np.stack([it["pixel_values"] for it in items]))


def encode_prompts(processor: Any, rows: list[dict[str, Any]], pad_to_square: bool = False) -> Any:
    """Left-padded generation inputs for a batch of CoIN test rows."""
    fill = mean_fill(processor)
    prompts = [generation_prompt(processor, r["text"], r.get("image") is not None) for r in rows]
    images = [load_image(r["image"], pad_to_square, fill) for r in rows if r.get("image")]
    return processor(text=prompts, images=images or None, padding=True, return_tensors="pt")
