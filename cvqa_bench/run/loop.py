"""One continual run: zero-shot row, then train → save → evaluate every task, stage by stage; then score.

Everything a run writes goes through ``cvqa_bench.io`` (atomic). A stage whose DONE.json carries the
same stage hash is not retrained on ``--resume``; a predictions file whose ids match the test split is
not regenerated (``cvqa_bench.run.state.resume``). Every input is validated before the model is loaded
(``cvqa_bench.run.prepare``).

Launched as several processes (``torchrun`` / ``accelerate launch``), every process runs the same
stages; the main process alone creates, checks and writes the run folder (``cvqa_bench.run.training.distributed``).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


from cvqa_bench.config import read_yaml
from cvqa_bench.errors import RunStopped
from cvqa_bench.report.summary import write_run_summary
from cvqa_bench.report.results import run_shortened, write_results
from cvqa_bench.run.training import distributed
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.prepare import PreparedRun
from cvqa_bench.run.state.lock import RunLock
from cvqa_bench.run.state.resume import clean_debris, discard_unstarted, init_run_dir
from cvqa_bench.run.threads import ThreadPolicy
from cvqa_bench.run.watching.signals import InterruptFlag
from cvqa_bench.scoring.cells import load_run_sequence, score_run


def execute(prepared: PreparedRun, out: Path, *, resume: bool = False, console: Any = None, quiet: bool = False,
            verbose: bool = False, plots: bool = True, threads: ThreadPolicy | None = None) -> dict[str, float]:
    """Run every stage of ``prepared`` into ``out`` and return the metrics.

    ``quiet``: no progress lines (errors still show); ``verbose``: the libraries' messages and every Trainer
    log dict on the console too (they always go to ``run.log`` / ``logs/train.jsonl``); ``plots=False``: the
    PNG plots are left to the caller (``report.summary.write_run_plots``), e.g. after its final table;
    ``threads``: torch's thread count, set once before the zero-shot row (``run/threads.py``; None: left as it is).
    """
    from rich.console import Console

    from cvqa_bench.run.watching.logs import run_logging
    from cvqa_bench.run.watching.progress import RunProgress
    from cvqa_bench.run.stage import StageRunner  # torch and transformers: not for `cvqa score`

    distributed.init()
    run = RunDir(Path(out))
    lock = RunLock(run.root)
    created = distributed.run_on_main(_lock_run_dir, lock, run, prepared, resume)
    try:
        main, console = distributed.is_main(), console or Console(stderr=True)
        with run_logging(run.root if main else None, verbose), \
                RunProgress(prepared, run, console, quiet=quiet, main=main) as progress:
            with InterruptFlag() as interrupt:
                stages = StageRunner(prepared, run, console=console, interrupt=interrupt, progress=progress)
                with long_lived_objects_frozen():
                    stages.write_manifest()
                    _set_threads(threads, run)
                    stages.evaluate(0)
                    progress.row(0)
                    for stage in range(1, len(prepared.tasks) + 1):
                        stages.train_or_restore(stage)
                        stages.evaluate(stage)
                        progress.row(stage)
            stages.finish_manifest()  # before summarize: results.json carries the finish time
            metrics = distributed.run_on_main(summarize, run.root, meta=_meta(prepared, run), plots=plots)
            progress.finished(metrics or {})
    except Exception as exc:
        if created is not None and distributed.is_main() and not isinstance(exc, RunStopped):
            discard_unstarted(run, created)  # a fresh folder that got no stage done: nothing worth keeping
        raise
    finally:
        lock.release()
    return metrics


def _set_threads(threads: ThreadPolicy | None, run: RunDir) -> None:
    """Set the run's torch thread count once, before any compute; run.log and the manifest name it."""
    if threads is None:
        return
    from cvqa_bench.run.watching.logs import LOGGER

    count = threads.apply()
    LOGGER.info(f"torch threads: {count} ({threads.source}; OpenMP wait {threads.record()['openmp_wait'] or 'default'})")
    distributed.run_on_main(_record_threads, run, threads)


def _record_threads(run: RunDir, threads: ThreadPolicy) -> None:
    from cvqa_bench.io import atomic_write_json
    from cvqa_bench.run.state.manifest import read_manifest

    if run.manifest.is_file():
        manifest = read_manifest(run.manifest)
        manifest["threads"] = threads.record()
        atomic_write_json(run.manifest, manifest)


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Keep what lives for the whole run (libraries, data, the model) out of the garbage collector's scans.

    The Trainer calls ``gc.collect()`` at the end of every stage and Python's full collections walk every
    tracked object: on the default run that was about 3 s of scanning the same objects. ``gc.freeze`` moves
    them to a generation the collector skips; ``gc.unfreeze`` at the end hands them back, so nothing the
    run dropped stays uncollected after it.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _lock_run_dir(lock: RunLock, run: RunDir, prepared: PreparedRun, resume: bool) -> Path | None:
    """Lock the run folder, clean a killed run's debris and check or write its config; for a new folder,
    the topmost folder this call created (the run folder or a parent)."""
    created = not run.config.is_file()
    fresh = not run.root.exists()
    made = next((p for p in reversed([run.root.absolute(), *run.root.absolute().parents]) if not p.exists()), None)
    lock.acquire()  # RunLocked: the folder is another run's, nothing here is ours to remove
    try:
        clean_debris(run)
        init_run_dir(run, prepared, resume)
    except BaseException:
        if made is not None:  # made by this call (with its parents): leave nothing behind, removed while locked
            shutil.rmtree(made, ignore_errors=True)
        lock.release()
        raise
    return made if created and fresh else None


def _meta(prepared: PreparedRun, run: RunDir) -> dict[str, Any]:
    return {
        "name": run.root.name,
        "sequence": prepared.sequence.name,
        "method": prepared.config.method.name,
        "seed": prepared.config.seed,
    }


def summarize(run_dir: Path, scorer_override: str | None = None, meta: dict[str, Any] | None = None,
              protocol: str | None = None, plots: bool = True) -> dict[str, float]:
    """Score the stored predictions and write matrix.csv, metrics.json, report.md and the heatmap.

    ``protocol`` defaults to the run's own (config.yaml); another one writes its summary into
    ``protocols/<protocol>/`` and leaves the run's own untouched.
    """
    run_dir = Path(run_dir)
    cfg = read_yaml(run_dir / "config.yaml")  # a damaged or non-UTF-8 config.yaml: one line naming it
    own = cfg.get("protocol", "corrected") if isinstance(cfg, dict) else "corrected"
    protocol = protocol or own
    target = run_dir if protocol == own else RunDir(run_dir).protocol_dir(protocol)
    matrix, tasks, scorers = score_run(run_dir, scorer_override, protocol, target)
    if meta is None:
        meta = {"name": run_dir.name, "sequence": load_run_sequence(RunDir(run_dir)).name,  # as the run wrote it
                "method": cfg["method"]["name"], "seed": cfg["seed"]}
    shortened = run_shortened(run_dir)  # flagged in report.md, metrics.json and results.json
    meta = {**meta, "protocol": protocol, **({"shortened": "; ".join(shortened)} if shortened else {})}
    metrics = write_run_summary(target, matrix, tasks, scorers, meta, plots=plots)
    write_results(run_dir, target, matrix, tasks, scorers, metrics, protocol)
    return metrics
