"""Score a run's stored predictions into the accuracy matrix (never touches a model).

Under the run's own protocol (``config.yaml`` ``protocol``) the scores go into the run folder; under
the other one they go into ``protocols/<protocol>/`` beside it, so one run can be shown both ways
without mixing them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cvqa_bench.config import SequenceSpec, read_yaml, validate_model
from cvqa_bench.io import atomic_write_json, read_jsonl
from cvqa_bench.rundir import RunDir
from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.protocol import scorer_for


class MissingPredictionsError(FileNotFoundError):
    """A matrix cell has no predictions file (the run did not finish)."""


def score_predictions(path: Path, scorer_name: str, protocol: str = "corrected") -> dict[str, float | int | str]:
    """Mean score (in [0, 1]) of one predictions JSONL under ``scorer_name``, labelled with its ``protocol``."""
    try:
        records = read_jsonl(path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSONL ({exc.msg})") from exc
    if not records:
        raise ValueError(f"{path}: no predictions")
    scorer = get_scorer(scorer_name)
    scores = scorer.score_many([r["prediction"] for r in records], [r["answers"] for r in records])
    return {"scorer": scorer_name, "protocol": protocol, "n": len(scores), "score": float(np.mean(scores))}


def load_run_sequence(run: RunDir) -> SequenceSpec:
    """The resolved sequence a run was made with."""
    return validate_model(SequenceSpec, read_yaml(run.sequence), str(run.sequence))


def score_run(run_dir: Path, scorer_override: str | None = None, protocol: str = "corrected",
              out_dir: Path | None = None) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Score every cell; returns the (T+1)×T matrix in percent, the task names and each task's scorer.

    Each task's scorer is ``scorer_override`` or the one ``protocol`` picks for it
    (:func:`cvqa_bench.scoring.protocol.scorer_for`). Writes ``scores/<k>-<stage_task>/<eval_task>.json``
    (scorer, protocol, n, score) for every cell under ``out_dir`` (default: the run folder).
    """
    run = RunDir(Path(run_dir))
    target = RunDir(Path(out_dir)) if out_dir is not None else run
    seq = load_run_sequence(run)
    tasks = seq.task_names()
    scorers = {t.name: scorer_override or scorer_for(protocol, t.name, t.scorer) for t in seq.tasks}
    matrix = np.full((len(tasks) + 1, len(tasks)), np.nan)
    for stage in range(len(tasks) + 1):
        stage_task = tasks[stage - 1] if stage else None
        for col, eval_task in enumerate(tasks):
            path = run.predictions(stage, stage_task, eval_task)
            if not path.is_file():
                raise MissingPredictionsError(f"{path}: missing; resume the run with `cvqa run ... --resume`")
            cell = score_predictions(path, scorers[eval_task], protocol)
            atomic_write_json(target.scores(stage, stage_task, eval_task), cell)
            matrix[stage, col] = 100.0 * float(cell["score"])
    return matrix, tasks, scorers
