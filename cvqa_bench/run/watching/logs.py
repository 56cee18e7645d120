"""A run's logs: ``run.log`` (every message, timestamped) and ``logs/train.jsonl`` (every Trainer log dict).

While a run is logged, what transformers, peft, accelerate and Python's ``warnings`` say goes to
``run.log`` and not to the console, and the Hugging Face progress bars ("Loading weights", "Writing
model shards") are off; ``--verbose`` shows those messages on the console too. Both files are
append-only logs (a resumed run adds to them), not results: they are not written atomically.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("cvqa_bench")
# The loggers of the libraries a run drives; "py.warnings" carries warnings.warn once captureWarnings is on.
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "huggingface_hub", "torch", "py.warnings")
RUN_LOG, TRAIN_LOG = "run.log", "logs/train.jsonl"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def run_logging(root: Path | None, verbose: bool = False) -> Iterator[None]:
    """Route the run's and the libraries' messages to ``root/run.log`` (none when ``root`` is None, as on
    a non-main process), silence them and the HF progress bars on the console; restore everything after."""
    import transformers.utils.logging as hf_logging
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    handlers: list[logging.Handler] = []
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(root / RUN_LOG, encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter(FORMAT))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers[-1].addFilter(lambda record: not getattr(record, "shown", False))  # printed already
    if not handlers:
        handlers.append(logging.NullHandler())
    saved = [(log, log.propagate, log.level, list(log.handlers))
             for log in map(logging.getLogger, ("cvqa_bench", *LIBRARY_LOGGERS))]
    bars_were_on = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    hf_logging.disable_default_handler()  # transformers' own stderr handler
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    logging.captureWarnings(True)
    for log, *_ in saved:
        log.handlers = list(handlers)
        log.propagate = False
        if log.name in ("cvqa_bench", "py.warnings") or verbose:
            log.setLevel(logging.DEBUG if log.name == "cvqa_bench" else logging.INFO)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for log, propagate, level, old in saved:
            log.handlers, log.propagate = old, propagate
            log.setLevel(level)
        for handler in handlers:
            handler.close()
        hf_logging.enable_default_handler()
        if bars_were_on[0]:
            hf_logging.enable_progress_bar()
        if bars_were_on[1]:
            enable_progress_bars()


class TrainLog:
    """Appends one JSON line per Trainer log dict to ``logs/train.jsonl`` (main process only)."""

    def __init__(self, root: Path | None) -> None:
        self.path = None if root is None else root / TRAIN_LOG

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line (a no-op without a run folder)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=float) + "\n")
