"""What LLaVA-NeXT and LLaVA-OneVision share: anyres tiles, ``image_sizes`` and packed features with newlines.

An image is resized to the best of ``image_grid_pinpoints`` and cut into tiles of the tower's input size,
after a base tile of the whole image (``pixel_values`` ``[tiles, 3, H, W]`` per image, zero-padded to the
batch's largest tile count; ``image_sizes`` ``[2]`` = original (height, width)). The modeling code projects
every tile, unpads the tile grid to the image's aspect ratio, adds ``image_newline`` after each row and
puts the base tile first (``pack_image_features``); the prompt holds one ``<image>`` per packed feature.
The cached vision features are the projector's input per image (``[tiles, patches, width]``); a stage
projects them with its projector, splits per image and packs them with HF's own ``pack_image_features``.
"""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.models.families.llava import Llava


class AnyresFamily(Llava):
    """LLaVA-style family with anyres tiles (subclasses set the token count of one image)."""

    def process_image(self, image: Any, image_processor: Any) -> dict[str, torch.Tensor]:
        """``pixel_values`` ``[tiles, 3, H, W]`` and ``image_sizes`` ``[2]`` of one image."""
        out = image_processor(image, return_tensors="pt")
        return {"pixel_values": out["pixel_values"][0], "image_sizes": out["image_sizes"][0]}

    def collate_images(self, images: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Tiles zero-padded to the batch's largest count (as the image processor pads a batch); sizes stacked."""
        batch: dict[str, torch.Tensor] = {"image_sizes": torch.stack([img["image_sizes"] for img in images])}
        if "pixel_values" in images[0]:
            most = max(len(img["pixel_values"]) for img in images)
            batch["pixel_values"] = torch.stack([torch.cat([img["pixel_values"], img["pixel_values"].new_zeros(
                (most - len(img["pixel_values"]), *img["pixel_values"].shape[1:]))]) for img in images])
        return batch

    def image_text(self, image: dict[str, torch.Tensor]) -> str:
        """``<image>`` once per packed feature: base tile, unpadded tile grid and one newline per grid row."""
        from transformers.image_processing_utils import select_best_resolution

        height, width = (int(v) for v in image["image_sizes"])
        tile = image["pixel_values"].shape[-1]
        best_height, best_width = select_best_resolution([height, width], self.config.image_grid_pinpoints)
        side = tile // self.config.vision_config.patch_size
        rows, cols = unpadded_grid(height, width, side * (best_height // tile), side * (best_width // tile))
        unpadded, newlines = self.limit_grid(rows, cols, side)
        base = side * side + self.cls_tokens()
        if self.config.vision_feature_select_strategy == "default":
            base -= 1
        return self.image_token * (unpadded + newlines + base)

    def limit_grid(self, rows: int, cols: int, side: int) -> tuple[int, int]:
        """The packed grid's features and newlines (OneVision shrinks a grid beyond ``anyres_max_N``)."""
        return rows * cols, rows

    def tiles_per_image(self, image_inputs: dict[str, torch.Tensor]) -> list[int]:
        """How many tiles of each image's ``pixel_values`` the model uses (the rest is batch padding)."""
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        return [image_size_to_num_patches(size, self.config.image_grid_pinpoints, self.config.vision_config.image_size)
                for size in image_inputs["image_sizes"]]

    def vision_features(self, parts: Any, image_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The projector's input of every used tile, split per image: ``[tiles, patches, width]`` each."""
        captured = super().vision_features(parts, image_inputs)
        return list(torch.stack(captured).split(self.tiles_per_image(image_inputs)))

    def encoder_outputs(self, parts: Any, features: list[torch.Tensor],
                        image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The batch's tiles through the current projector (all at once, as HF does), packed per image."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        projected = parts.projector(torch.cat(features)).split([len(f) for f in features])
        packed = self.pack(parts.core, list(projected), image_inputs["image_sizes"])
        return {"image": BaseModelOutputWithPooling(pooler_output=packed)}

    def pack(self, core: Any, projected: list[torch.Tensor], image_sizes: torch.Tensor) -> list[torch.Tensor]:
        """HF's ``pack_image_features`` of the family's core (its signature differs per family)."""
        raise NotImplementedError

    @classmethod
    def tiny_pinpoints(cls, spec: dict[str, Any]) -> list[list[int]]:
        """The tiny model's grid: one tile, or two side by side either way (few tiles keep it fast)."""
        size = spec["image_size"]
        return spec.get("grid_pinpoints", [[size, size], [size, 2 * size], [2 * size, size]])


def unpadded_grid(height: int, width: int, grid_rows: int, grid_cols: int) -> tuple[int, int]:
    """Rows and columns of a ``grid_rows x grid_cols`` feature grid left after removing the padding of an
    image of ``height x width`` (HF's ``unpad_image`` on the packed grid, as the processors count it)."""
    if width / height > grid_cols / grid_rows:
        padding = (grid_rows - int(round(height * (grid_cols / width), 7))) // 2
        return grid_rows - 2 * padding, grid_cols
    padding = (grid_cols - int(round(width * (grid_rows / height), 7))) // 2
    return grid_rows, grid_cols - 2 * padding
