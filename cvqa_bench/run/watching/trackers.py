"""Experiment trackers through Hugging Face: ``train.report_to`` and ``train.logging_dir``.

The Trainer logs loss, learning rate and gradient norm to every tracker in ``report_to`` itself
(its integration callbacks). Each stage is one Trainer, so file-based trackers get one folder per
stage (``<logging_dir>/<k>-<task>``), and the accuracy matrix goes in as scalars too, one row per
stage (``<logging_dir>/matrix``: tag ``accuracy/<task>``, step = the stage). wandb and mlflow get the
same scalars in the run their Trainer callback left active, when there is one (tested offline: tensorboard).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, TrainSpec

# The package each tracker needs (checked before a model is loaded); others are left to transformers.
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "neptune": "neptune", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab"}


def trackers(spec: TrainSpec) -> list[str]:
    """The trackers of ``spec`` (``none`` dropped)."""
    return [t for t in spec.report_to if t != "none"]


def check_trackers(spec: TrainSpec) -> None:
    """Refuse a tracker whose package is not installed (before anything is trained)."""
    for name in trackers(spec):
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            # the extra's form works for an installed wheel and a checkout alike
            extra = " (pip install 'cvqa-bench[tensorboard]')" if name == "tensorboard" else ""
            raise ConfigError(f"train.report_to: {name!r} needs the {package!r} package, which is not "
                              f"installed{extra}; install it or drop {name!r}")


def logging_dir(spec: TrainSpec, run_root: Path) -> Path:
    """Where file-based trackers write: ``train.logging_dir``, else ``<run>/logs/tensorboard``."""
    return Path(spec.logging_dir) if spec.logging_dir else run_root / "logs" / "tensorboard"


@contextmanager
def tensorboard_dir(folder: Path | None) -> Iterator[None]:
    """Point transformers' TensorBoardCallback at ``folder`` while a Trainer is built (its documented
    ``TENSORBOARD_LOGGING_DIR``; the Trainer's own default lies in the stage's temporary ``trainer/``)."""
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if folder is not None:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
    try:
        yield
    finally:
        if folder is not None:
            if before is None:
                os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
            else:
                os.environ["TENSORBOARD_LOGGING_DIR"] = before


class MatrixScalars:
    """Logs each stage's row of the accuracy matrix (percent) to the run's trackers."""

    def __init__(self, spec: TrainSpec, run_root: Path) -> None:
        self.names = trackers(spec)
        self.folder = logging_dir(spec, run_root) / "matrix"
        self._writer: Any = None

    def log_row(self, stage: int, row: dict[str, float]) -> None:
        """``accuracy/<task>`` = ``row[task]`` at step ``stage``."""
        wanted = set(self.names) | ({"tensorboard", "wandb", "mlflow"} if "all" in self.names else set())
        if "tensorboard" in wanted and importlib.util.find_spec("tensorboard") is not None:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.folder))
            for task, value in row.items():
                self._writer.add_scalar(f"accuracy/{task}", value, stage)
            self._writer.flush()
        scalars = {f"accuracy/{task}": value for task, value in row.items()}
        if "wandb" in wanted and importlib.util.find_spec("wandb") is not None:
            import wandb

            if wandb.run is not None:  # the run the Trainer's WandbCallback started
                wandb.log({**scalars, "stage": stage})
        if "mlflow" in wanted and importlib.util.find_spec("mlflow") is not None:
            import mlflow

            if mlflow.active_run() is not None:  # the run the Trainer's MLflowCallback started
                mlflow.log_metrics(scalars, step=stage)

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
