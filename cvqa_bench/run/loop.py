"""One continual run: zero-shot row, then train → save → evaluate every task, stage by stage; then score.

Everything a run writes goes through ``cvqa_bench.io`` (atomic). A stage whose DONE.json carries the
same stage hash is not retrained on ``--resume``; a predictions file whose ids match the test split is
not regenerated (``cvqa_bench.run.resume``). Every input is validated before the model is loaded
(``cvqa_bench.run.prepare``).

Launched as several processes (``torchrun`` / ``accelerate launch``), every process runs the same
stages; the main process alone creates, checks and writes the run folder (``cvqa_bench.run.distributed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cvqa_bench.report.summary import write_run_summary
from cvqa_bench.run import distributed
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.prepare import PreparedRun
from cvqa_bench.run.resume import init_run_dir
from cvqa_bench.run.signals import InterruptFlag
from cvqa_bench.scoring.cells import score_run


def execute(prepared: PreparedRun, out: Path, *, resume: bool = False, console: Any = None) -> dict[str, float]:
    """Run every stage of ``prepared`` into ``out`` and return the metrics."""
    from cvqa_bench.run.stage import StageRunner  # torch and transformers: not for `cvqa score`

    distributed.init()
    run = RunDir(Path(out))
    distributed.run_on_main(init_run_dir, run, prepared, resume)
    with InterruptFlag() as interrupt:
        stages = StageRunner(prepared, run, console=console, interrupt=interrupt)
        stages.write_manifest()
        stages.evaluate(0)
        for stage in range(1, len(prepared.tasks) + 1):
            stages.train_or_restore(stage)
            stages.evaluate(stage)
    metrics = distributed.run_on_main(summarize, run.root, meta=_meta(prepared, run))
    stages.finish_manifest()
    return metrics


def _meta(prepared: PreparedRun, run: RunDir) -> dict[str, Any]:
    return {
        "name": run.root.name,
        "sequence": prepared.sequence.name,
        "method": prepared.config.method.name,
        "seed": prepared.config.seed,
    }


def summarize(run_dir: Path, scorer_override: str | None = None, meta: dict[str, Any] | None = None,
              protocol: str | None = None) -> dict[str, float]:
    """Score the stored predictions and write matrix.csv, metrics.json, report.md and the heatmap.

    ``protocol`` defaults to the run's own (config.yaml); another one writes its summary into
    ``protocols/<protocol>/`` and leaves the run's own untouched.
    """
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    own = cfg.get("protocol", "corrected") if isinstance(cfg, dict) else "corrected"
    protocol = protocol or own
    target = run_dir if protocol == own else RunDir(run_dir).protocol_dir(protocol)
    matrix, tasks, scorers = score_run(run_dir, scorer_override, protocol, target)
    if meta is None:
        meta = {"name": run_dir.name, "sequence": cfg["sequence"], "method": cfg["method"]["name"], "seed": cfg["seed"]}
    return write_run_summary(target, matrix, tasks, scorers, {**meta, "protocol": protocol})
