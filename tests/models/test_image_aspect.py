"""The two image modes of a task's ``image_aspect``, pinned against the official LLaVA/CoIN preprocessing.

``crop`` is the CLIP processor alone (resize of the short side + center crop), as the official
``model_vqa_science.py`` / ``model_vqa_cc_instruction.py`` call ``image_processor.preprocess(image)``.
``pad`` is LLaVA's ``expand2square`` on the processor's mean colour, then the processor, as the
official ``llava/mm_utils.py`` does with ``tuple(int(x * 255) for x in image_processor.image_mean)``.
The reference inputs are built here by hand with PIL, not with the harness's helpers, on a wide
48x24 image whose halves differ, so that cropping (the middle 24x24, widened) and padding (the whole
image between two mean-colour bands) give visibly different pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cvqa_bench.config import ModelSpec, RunConfig
from cvqa_bench.config.sequence import TaskSpec
from cvqa_bench.models.load import model_directory
from cvqa_bench.models.prompting import TrainCollator, encode_prompts, mean_fill
from cvqa_bench.run.prepare import pads_to_square

WIDTH, HEIGHT = 48, 24
LEFT, RIGHT = (220, 30, 30), (30, 60, 200)


@pytest.fixture(scope="module")
def processor() -> Any:
    """The tiny offline model's processor as a run loads it (a CLIP image processor, 32x32 input)."""
    from cvqa_bench.models.families import family_for
    from cvqa_bench.models.inputs import ModelInputs

    folder = model_directory(ModelSpec())
    return ModelInputs.from_pretrained(folder, family_for(folder))


@pytest.fixture
def image(tmp_path: Path) -> tuple[Image.Image, str]:
    """The wide test image and the PNG path the harness reads it from."""
    img = Image.new("RGB", (WIDTH, HEIGHT), LEFT)
    img.paste(Image.new("RGB", (WIDTH // 2, HEIGHT), RIGHT), (WIDTH // 2, 0))
    path = tmp_path / "wide.png"
    img.save(path)
    return img, str(path)


def official_mean_colour(processor: Any) -> tuple[int, ...]:
    """The fill of the official ``expand2square`` call: the processor mean, times 255, truncated."""
    return tuple(int(x * 255) for x in processor.image_processor.image_mean)


def expand2square_by_hand(img: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    """The official ``expand2square`` for a wide image: a width x width canvas, the image pasted at mid-height."""
    width, height = img.size
    assert width > height  # the branch this test image takes
    canvas = Image.new("RGB", (width, width), colour)
    canvas.paste(img, (0, (width - height) // 2))
    return canvas


def processed(processor: Any, img: Image.Image) -> torch.Tensor:
    """What the CLIP processor alone makes of ``img`` (the official ``preprocess`` call)."""
    return processor.image_processor(images=[img], return_tensors="pt")["pixel_values"]


def through_harness(processor: Any, path: str, pad_to_square: bool) -> dict[str, torch.Tensor]:
    """The ``pixel_values`` of the evaluation encoder and of the training collator for one image row."""
    question = "<image>\nWhat colour is the left half?"
    test_row = {"question_id": "q0", "image": path, "text": question, "answers": ["red"]}
    train_row = {"id": "t0", "image": path, "conversations": [
        {"from": "human", "value": question}, {"from": "gpt", "value": "red"}]}
    return {
        "encode_prompts": encode_prompts(processor, [test_row], pad_to_square)["pixel_values"],
        "TrainCollator": TrainCollator(processor, max_length=512, pad_to_square=pad_to_square)([train_row])[
            "pixel_values"],
    }


def test_crop_is_the_processors_own_resize_and_center_crop(processor: Any, image: tuple[Image.Image, str]) -> None:
    img, path = image
    expected = processed(processor, img)
    assert expected.shape == (1, 3, 32, 32)
    for where, pixels in through_harness(processor, path, pad_to_square=False).items():
        assert pixels.dtype == expected.dtype, where
        assert torch.equal(pixels, expected), where


def test_pad_is_expand2square_on_the_official_mean_colour(processor: Any, image: tuple[Image.Image, str]) -> None:
    img, path = image
    expected = processed(processor, expand2square_by_hand(img, official_mean_colour(processor)))
    for where, pixels in through_harness(processor, path, pad_to_square=True).items():
        assert torch.equal(pixels, expected), where


def test_pad_places_the_image_as_expand2square_does(processor: Any, image: tuple[Image.Image, str]) -> None:
    # The canvas geometry on its own, with the harness's own fill colour: this holds whatever the
    # rounding of the mean colour (pinned by the test above).
    img, path = image
    expected = processed(processor, expand2square_by_hand(img, mean_fill(processor)))
    for where, pixels in through_harness(processor, path, pad_to_square=True).items():
        assert torch.equal(pixels, expected), where


def test_official_mean_colour_of_the_clip_processor(processor: Any) -> None:
    # CLIP's mean (0.48145466, 0.4578275, 0.40821073) x 255 = (122.77, 116.75, 104.09)
    assert official_mean_colour(processor) == (122, 116, 104)


def test_harness_fill_is_the_official_mean_colour(processor: Any) -> None:
    assert mean_fill(processor) == official_mean_colour(processor)


def test_pad_and_crop_give_different_pixels(processor: Any, image: tuple[Image.Image, str]) -> None:
    _, path = image
    crop = through_harness(processor, path, pad_to_square=False)
    pad = through_harness(processor, path, pad_to_square=True)
    for where in crop:
        assert crop[where].shape == pad[where].shape == (1, 3, 32, 32)
        assert not torch.equal(crop[where], pad[where]), where
    # The top row: inside the image when cropping, in the mean-colour band when padding.
    mean = torch.tensor(processor.image_processor.image_mean)
    std = torch.tensor(processor.image_processor.image_std)
    fill = (torch.tensor(mean_fill(processor)) / 255 - mean) / std
    assert torch.allclose(pad["encode_prompts"][0, :, 0, 0], fill, atol=1e-5)
    assert not torch.allclose(crop["encode_prompts"][0, :, 0, 0], fill, atol=1e-2)


def test_a_task_pads_for_train_and_crops_for_eval() -> None:
    task = TaskSpec(name="t", train="t/train.json", test="t/test.json", scorer="vqa",
                    image_aspect={"train": "pad", "eval": "crop"})
    assert (task.image_aspect.train, task.image_aspect.eval) == ("pad", "crop")
    for default in (False, True):
        config = RunConfig(model={"pad_to_square": default})
        assert pads_to_square(config, task.image_aspect.train) is True
        assert pads_to_square(config, task.image_aspect.eval) is False
        assert pads_to_square(config, None) is default  # no image_aspect: model.pad_to_square decides
    both = TaskSpec(name="t", train="t/train.json", test="t/test.json", scorer="vqa", image_aspect="pad")
    assert (both.image_aspect.train, both.image_aspect.eval) == ("pad", "pad")
