"""``cvqa validate``: every check a run makes before training, collected instead of stopping at the first."""

from __future__ import annotations

from pathlib import Path

from cvqa_bench.config import load_sequence


def validate_sequence(sequence: str, data_root: str | None = None) -> tuple[list[str], list[str]]:
    """Problems (one line each, naming file and row) and a per-task summary of a sequence's data."""
    from cvqa_bench.data.sources import resolve_data_root, validate_sequence_data

    seq, seq_path = load_sequence(sequence)
    root = resolve_data_root(seq, seq_path, data_root)
    per_task = validate_sequence_data(seq, Path(seq_path), data_root)
    summary = [f"sequence {seq.name} ({seq_path}), data root {root}"]
    problems: list[str] = []
    for task in seq.tasks:
        found = per_task.get(task.name, [])
        summary.append(f"  {task.name:<12} scorer {task.scorer:<11} {'ok' if not found else f'{len(found)} problem(s)'}")
        problems += found
    return problems, summary
