"""Score a run's stored predictions into the accuracy matrix (never touches a model).

Under the run's own protocol (``config.yaml`` ``protocol``) the scores go into the run folder; under
the other one they go into ``protocols/<protocol>/`` beside it, so one run can be shown both ways
without mixing them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvqa_bench.config import SequenceSpec, read_yaml, validate_model
from cvqa_bench.io import atomic_write_json, atomic_write_jsonl, read_jsonl, read_numbered_jsonl
from cvqa_bench.rundir import RunDir
from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.protocol import scorer_for
from cvqa_bench.scoring.seals import seal_predictions, seal_scores, verify_predictions


class MissingPredictionsError(FileNotFoundError):
    """A matrix cell has no predictions file (the run did not finish)."""


def score_predictions(path: Path, scorer_name: str, protocol: str = "corrected") -> dict[str, float | int | str]:
    """Mean score (in [0, 1]) of one predictions JSONL under ``scorer_name``, labelled with its ``protocol``.

    Raises:
        ValueError: ``<path>:<line>: ...`` for a line that is not JSON or lacks ``prediction``/``answers``.
    """
    predictions, answers, contexts = [], [], []
    for line, record in read_numbered_jsonl(path):
        for key in ("prediction", "answers"):
            if key not in record:
                raise ValueError(f"{path}:{line}: missing field {key!r}")
        if not isinstance(record["prediction"], str) or not isinstance(record["answers"], list):
            raise ValueError(f"{path}:{line}: 'prediction' must be a string and 'answers' a list, got "
                             f"{type(record['prediction']).__name__} and {type(record['answers']).__name__}")
        predictions.append(record["prediction"])
        answers.append(record["answers"])
        contexts.append(record.get("context"))  # the task's score_context fields, when it names any
    if not predictions:
        raise ValueError(f"{path}: no predictions")
    scorer = get_scorer(scorer_name)
    try:
        score, scores = scorer.score_corpus(predictions, answers, contexts)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return {"scorer": scorer_name, "protocol": protocol, "n": len(scores), "score": float(score),
            "scores": [float(s) for s in scores]}  # per sample, in file order (results.json intervals)


def load_run_sequence(run: RunDir) -> SequenceSpec:
    """The resolved sequence a run was made with."""
    return validate_model(SequenceSpec, read_yaml(run.sequence), str(run.sequence))


def score_run(run_dir: Path, scorer_override: str | None = None, protocol: str = "corrected",
              out_dir: Path | None = None) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Score every cell; returns the (T+1)×T matrix in percent, the task names and each task's scorer.

    Each task's scorer is ``scorer_override`` or the one ``protocol`` picks for it
    (:func:`cvqa_bench.scoring.protocol.scorer_for`). Writes ``scores/<k>-<stage_task>/<eval_task>.json``
    (scorer, protocol, n, score, per-sample scores) for every cell under ``out_dir`` (default: the run
    folder); scored by the run's own protocol and scorers, each predictions record also gets its ``score``.
    Every predictions file must carry its seal in cells.json (``scoring/seals.py``); the files written
    are sealed there.

    Raises:
        SealBroken: a predictions file is unsealed or changed since the run wrote it (nothing is written).
    """
    run = RunDir(Path(run_dir))
    target = RunDir(Path(out_dir)) if out_dir is not None else run
    seq = load_run_sequence(run)
    tasks = seq.task_names()
    scorers = {t.name: scorer_override or scorer_for(protocol, t.name, t.scorer) for t in seq.tasks}
    matrix = np.full((len(tasks) + 1, len(tasks)), np.nan)
    cells = {}
    for stage in range(len(tasks) + 1):  # every cell scored before anything is written
        stage_task = tasks[stage - 1] if stage else None
        for col, eval_task in enumerate(tasks):
            path = run.predictions(stage, stage_task, eval_task)
            if not path.is_file():
                raise MissingPredictionsError(f"{path}: missing; resume the run with `cvqa run ... --resume`")
            cells[stage, stage_task, eval_task] = cell = score_predictions(path, scorers[eval_task], protocol)
            matrix[stage, col] = 100.0 * float(cell["score"])
    verify_predictions(run.root, [run.predictions(*cell) for cell in cells])  # none changed since the run wrote it
    for (stage, stage_task, eval_task), cell in cells.items():
        atomic_write_json(target.scores(stage, stage_task, eval_task), cell)
        if target == run and scorer_override is None:  # the run's own scorers only: a record's score never flips
            _store_sample_scores(run.root, run.predictions(stage, stage_task, eval_task), cell["scores"])
    seal_scores(run.root, [(run.predictions(*cell), target.scores(*cell)) for cell in cells])
    return matrix, tasks, scorers


def _store_sample_scores(root: Path, path: Path, scores: list[float]) -> None:
    """Write each record's ``score`` into the predictions file (only when one changed) and seal it again."""
    records = read_jsonl(path)
    if [r.get("score") for r in records] != scores:
        atomic_write_jsonl(path, [{**r, "score": s} for r, s in zip(records, scores)])
        seal_predictions(root, [path])
