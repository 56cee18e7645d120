"""Caption references from a COCO-format annotation file, matched to test rows by position (UCIT).

The UCIT caption scripts (``llava/eval/eval_caption.py`` in github Ghy0501/HiDe-LLaVA, the same file under
``*/llava/eval/CoIN/`` in Ghy0501/MCITlib and ``backbone/shared/eval/eval_caption.py`` in LAMDA-CL/Prism)
give the k-th prediction of ``merge.jsonl`` the ``image_id`` k (1-based, file order; ``create_coco_type``)
and score it against the captions of that ``image_id`` in ``val_coco_type_3000.json`` /
``test_coco_type.json`` through pycocotools' ``COCO.loadRes`` and pycocoevalcap's ``COCOEvalCap``. So
test row k of the question file gets the references of ``image_id`` k + 1, whatever its question id.

pycocoevalcap 1.2 scores every image of the annotation file's ``images`` list and asserts at least one
reference and exactly one prediction per image, so the published file must hold one image per test row,
each with a caption: the defects found here are the ones that make the official script crash.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from cvqa_bench.data.rows import Problems


def is_coco_captions(data: Any) -> bool:
    """Whether an annotation document has the COCO caption layout (an object with an ``annotations`` list)."""
    return isinstance(data, dict) and isinstance(data.get("annotations"), list)


def caption_defects(data: dict[str, Any], n_rows: int) -> tuple[dict[int, list[str]], list[str]]:
    """References by ``image_id`` and the defects of a COCO caption file for ``n_rows`` test rows.

    A defect is one phrase (the caller names the file): a malformed annotation, no ``images`` list, an
    ``image_id`` 1..n_rows without a caption, or an image that no test row predicts.
    """
    refs: dict[int, list[str]] = defaultdict(list)
    defects: list[str] = []
    for index, ann in enumerate(data["annotations"]):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        caption = ann.get("caption") if isinstance(ann, dict) else None
        if isinstance(image_id, bool) or not isinstance(image_id, int) or not isinstance(caption, str) \
                or not caption.strip():
            defects.append(f"annotations[{index}]: needs an integer image_id and a non-empty caption, got {ann!r}")
            return refs, defects
        refs[image_id].append(caption)
    images = data.get("images")
    if not isinstance(images, list):
        defects.append("no 'images' list: pycocotools' COCO.loadRes refuses the official results without one "
                       "(HiDe-LLaVA issue 7: VizWiz's file differs from Flickr30k's)")
        image_ids: set[int] = set(refs)
    else:
        image_ids = {img.get("id") for img in images if isinstance(img, dict)}
    missing = [k for k in range(1, n_rows + 1) if k not in refs]
    if missing:
        defects.append(f"captions for {n_rows - len(missing)} of {n_rows} test rows: image_id {missing[0]} (test row "
                       f"{missing[0] - 1}) has none, and the official eval_caption.py crashes on it (pycocoevalcap "
                       "asserts a reference per image; HiDe-LLaVA issue 7, fixed in the re-uploaded UCIT files)")
    unpredicted = sorted(i for i in image_ids if not (isinstance(i, int) and 1 <= i <= n_rows))
    if unpredicted:
        defects.append(f"{len(image_ids)} images for {n_rows} test rows: image {unpredicted[0]!r} gets no prediction "
                       "(the k-th prediction is image_id k), and pycocoevalcap asserts one per image")
    return refs, defects


def apply_caption_refs(test_rows: list[dict[str, Any]], data: dict[str, Any], path: Path, problems: Problems) -> None:
    """Give test row k the captions of ``image_id`` k + 1; report each defect of the file as one line."""
    refs, defects = caption_defects(data, len(test_rows))
    for defect in defects:
        problems.add(f"{path}: {defect}")
    if defects:
        return
    for k, row in enumerate(test_rows, start=1):
        row["answers"] = list(refs[k])
