"""Image-token counts of the Qwen-VL, InternVL and Idefics3 families on images that tile or resize, checked
against counts worked out by hand from each family's image processor and modeling code (the wrappers of
Qwen-VL and InternVL need torchvision; Idefics3's loads and is compared too)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from cvqa_bench.config import read_yaml
from cvqa_bench.config.base import resolve_path
from cvqa_bench.models.families import families
from cvqa_bench.models.tiny import _tokenizer_corpus, train_tokenizer


def _family(name: str) -> tuple[Any, Any, Any]:
    spec = read_yaml(resolve_path(f"configs/models/tiny-{name}.yaml"))
    cls = families.get(name)
    tokenizer = train_tokenizer(cls.tiny_tokens, spec["tokenizer"]["vocab_size"], _tokenizer_corpus())
    return cls(cls.tiny_config(spec, tokenizer)), cls.tiny_image_processor(spec), tokenizer


def _image(height: int, width: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_counts_one_token_per_merged_patch_group(name: str) -> None:
    family, processor, _ = _family(name)
    # smart_resize(40, 72, factor 4*2=8, 256..4096 px) keeps 40x72: a 10x18 patch grid, 180 patches, 45 groups
    image = family.process_image(_image(40, 72), processor)
    assert image["image_grid_thw"].tolist() == [[1, 10, 18]]
    assert tuple(image["pixel_values"].shape) == (180, 3 * 2 * 4 * 4)
    assert family.image_text(image) == "<|image_pad|>" * 45
    # 100x100 = 10000 px > 4096: beta = sqrt(10000/4096), floor(100/beta/8)*8 = 64 per side, 8x8 groups
    big = family.process_image(_image(100, 100), processor)
    assert big["image_grid_thw"].tolist() == [[1, 16, 16]] and family.image_token_count(big) == 64
    batch = family.collate_images([image, big])
    assert tuple(batch["pixel_values"].shape) == (180 + 256, 96) and batch["image_grid_thw"].tolist()[1] == [1, 16, 16]


def test_internvl_counts_tiles_and_the_thumbnail() -> None:
    family, processor, _ = _family("internvl")
    # 32x96 with 32 px tiles, at most 4: the 3x1 grid matches the aspect ratio, + a thumbnail = 4 tiles
    image = family.process_image(_image(32, 96), processor)
    assert tuple(image["pixel_values"].shape) == (4, 3, 32, 32)
    assert family.image_text(image) == "<img>" + "<IMG_CONTEXT>" * (4 * 16) + "</img>"  # (32/4)^2 * 0.5^2 = 16
    single = family.process_image(_image(32, 32), processor)  # one tile, no thumbnail
    assert family.image_token_count(single) == 16


def test_idefics3_splitting_equals_the_wrapper() -> None:
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    family, _, tokenizer = _family("idefics3")
    processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    image = _image(48, 64)  # longest edge 64 → 48x64 → multiples of 32: 64x64 → 2x2 tiles + the global image
    encoded = family.process_image(image, processor)
    assert (int(encoded["rows"]), int(encoded["cols"])) == (2, 2) and encoded["pixel_values"].shape[0] == 5
    text = family.image_text(encoded)
    assert text.count("<image>") == 5 * 16 and text.count("<fake_token_around_image>") == 4 + 2
    wrapper = Idefics3Processor(image_processor=processor, tokenizer=tokenizer, image_seq_len=family.image_seq_len)
    ours = tokenizer("User:" + text + "what", add_special_tokens=True)["input_ids"]
    theirs = wrapper(text=["User:<image>what"], images=[[image]])
    assert ours == list(theirs["input_ids"][0])
    assert np.array_equal(np.asarray(theirs["pixel_values"][0]), encoded["pixel_values"].numpy())
