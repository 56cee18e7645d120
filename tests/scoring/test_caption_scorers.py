"""Caption scorers against the official UCIT path run here: pycocotools + pycocoevalcap's own classes.

The reference follows eval_caption.py (github Ghy0501/HiDe-LLaVA llava/eval/, MCITlib, Prism) step by
step: the annotation file and the predictions file with image_id k for the k-th prediction
(``create_coco_type``), ``COCO(annotation)``, ``coco.loadRes(predictions)``, then what
``COCOEvalCap.evaluate`` does (every image of the annotation file, PTBTokenizer on each side, Bleu(4),
Meteor, Rouge, Cider) without SPICE, which the script computes but does not print.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.captions import OFFICIAL_METRICS, caption_metrics

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer and METEOR run Java")
N = 200
WORDS = ("a", "A", "man", "dog", "red", "Red", "car", "on", "the", "street", "two", "people", "walking", "near",
         "blue", "house", "is", "sitting", ",", ".", "!", "-", "its", "dog's", "grass", "with", "ball")


def cases(seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
    predictions = [sentence(1, 10) for _ in range(N)]
    predictions[3] = predictions[4] = ""  # empty predictions happen
    references = [[sentence(3, 12) for _ in range(rng.randint(1, 5))] for _ in range(N)]
    return predictions, references


def official_scores(tmp: Path, predictions: list[str], references: list[list[str]]) -> dict[str, tuple]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    annotation = tmp / "val_coco_type.json"
    annotation.write_text(json.dumps({
        "images": [{"id": k} for k in range(1, N + 1)],
        "annotations": [{"image_id": k, "id": 10 * k + j, "caption": c}
                        for k, refs in enumerate(references, start=1) for j, c in enumerate(refs)]}))
    results = tmp / "pred_coco_type.json"
    results.write_text(json.dumps([{"image_id": k, "caption": p} for k, p in enumerate(predictions, start=1)]))
    coco = COCO(str(annotation))
    coco_res = coco.loadRes(str(results))
    image_ids = coco.getImgIds()
    gts = {i: coco.imgToAnns[i] for i in image_ids}
    res = {i: coco_res.imgToAnns[i] for i in image_ids}
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    out: dict[str, tuple] = {}
    corpus, per_image = Bleu(4).compute_score(gts, res)
    out.update({f"Bleu_{n + 1}": (corpus[n], per_image[n]) for n in range(4)})
    for name, scorer in (("METEOR", Meteor()), ("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        out[name] = scorer.compute_score(gts, res)
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, list, list]:
    predictions, references = cases()
    official = official_scores(tmp_path_factory.mktemp("captions"), predictions, references)
    return official, caption_metrics(predictions, references), predictions, references


def test_every_metric_agrees_with_the_official_path(both: tuple) -> None:
    official, ours, _, _ = both
    for metric in OFFICIAL_METRICS:
        assert ours[metric][0] == pytest.approx(official[metric][0], abs=1e-9), metric
        agree = sum(abs(a - b) <= 1e-9 for a, b in zip(ours[metric][1], official[metric][1]))
        assert agree == N, f"{metric}: {agree}/{N} images agree to 1e-9"


def test_the_official_average_is_the_plain_mean_of_the_seven(both: tuple) -> None:
    official, _, predictions, references = both
    average = sum(official[m][0] for m in OFFICIAL_METRICS) / 7  # eval_caption.py: sum(results) / len(results)
    assert get_scorer("caption_official").score_corpus(predictions, references)[0] == pytest.approx(average, abs=1e-9)
    cider = get_scorer("cider").score_corpus(predictions, references)
    assert cider[0] == pytest.approx(official["CIDEr"][0], abs=1e-9)
    assert sum(cider[1]) / N == pytest.approx(cider[0])  # CIDEr is the mean of its per-image values


def test_hand_computed_cider_of_an_exact_copy() -> None:
    # Two images, each prediction a copy of its only reference, no word shared between the images: every
    # n-gram has df = 1 of 2 images (idf log 2), candidate and reference vectors are equal, the length
    # penalty is exp(0) = 1, so each n with n-grams has cosine 1 and an n without any scores 0.
    # Four words: n = 1..4 all present, CIDEr-D = 10 * mean(1, 1, 1, 1) = 10. Two words: only n = 1, 2,
    # 10 * mean(1, 1, 0, 0) = 5.
    four = ["red car on street", "blue house near grass"]
    value, per_image = get_scorer("cider").score_corpus(four, [[c] for c in four])
    assert per_image == pytest.approx([10.0, 10.0]) and value == pytest.approx(10.0)
    two = ["red car", "blue house"]
    assert get_scorer("cider").score_corpus(two, [[c] for c in two])[0] == pytest.approx(5.0)


def test_no_java_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="no `java` is on PATH"):
        get_scorer("cider")
