"""A run decodes each image once: the check before the first stage keeps its decode for training and evaluation."""

from __future__ import annotations

from collections import Counter

from PIL import Image


def test_a_run_opens_every_image_file_exactly_once(cvqa, tmp_path, small_config, small_sequence, monkeypatch):
    from cvqa_bench.data.image_cache import IMAGES

    IMAGES.clear()  # earlier tests of this process may have decoded the same files
    opened: Counter[str] = Counter()
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened[str(fp)] += 1
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    out = tmp_path / "run"
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out,
                  "--set", "train.max_steps=2")
    assert result.exit_code == 0, result.output
    images = {p for p in opened if p.endswith(".png")}
    # 3 tasks x (32 train + 8 test) rows, one image each (tests/conftest.py small_sequence_dict)
    assert len(images) == 3 * (32 + 8)
    assert {opened[p] for p in images} == {1}
