"""What a predictions record says about its question beyond id, prediction and answers (``eval.log_samples``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cvqa_bench.models.prompting import generation_prompt


def with_sample_fields(records: list[dict[str, Any]], rows: list[dict[str, Any]], processor: Any,
                       log_samples: bool, data_root: Path | None = None) -> list[dict[str, Any]]:
    """Each record with the prompt text the model was given and the image path (relative to ``data_root``
    when inside it, so a run's predictions do not depend on where the data lies); unchanged when
    ``log_samples`` is off (small files: id, prediction, answers, and the score `cvqa score` adds)."""
    if not log_samples:
        return records
    by_id = {row["question_id"]: row for row in rows}
    out = []
    for record in records:
        row = by_id[record["id"]]
        prompt = generation_prompt(processor, row["text"], row.get("image") is not None)
        out.append({**record, "prompt": prompt, "image": _relative(row.get("image"), data_root)})
    return out


def _relative(image: str | None, root: Path | None) -> str | None:
    if image is None or root is None:
        return image
    rel = os.path.relpath(image, root)
    return image if rel.startswith("..") else Path(rel).as_posix()
