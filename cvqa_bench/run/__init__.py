"""The run: prepare (check every input), then stage by stage train → save → evaluate, then score and report.

``prepare`` / ``preflight`` check, ``loop`` orchestrates, ``stage`` holds the model and method across
stages, ``plan``, ``export`` and ``experiment`` are commands of their own. Sub-packages by concept:
``training`` (one stage's Trainer and its hooks), ``evaluation`` (generation, the matrix's cells and
their reuse), ``state`` (the run folder: checkpoints, seals, lock, manifest, resume, status) and
``watching`` (progress, logs, trackers, signals). Import the submodules directly; this package imports
nothing heavy on its own.
"""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """This package, callable: ``cvqa_bench.run(config, ...)`` is :func:`cvqa_bench.api.run` (a subpackage
    and a function cannot share the name ``cvqa_bench.run`` otherwise)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cvqa_bench.api import run

        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
