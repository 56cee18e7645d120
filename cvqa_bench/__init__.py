"""cvqa-bench: a benchmark harness for continual visual instruction tuning.

For a notebook or a script (``cvqa_bench/api.py``)::

    import cvqa_bench
    results = cvqa_bench.load_run("results/default")     # .matrix, .matrix_long, .metrics, .predictions, .config
    results = cvqa_bench.run("default", overrides={"eval.limit": 8})

``import cvqa_bench`` stays light (no torch, no pandas): these names load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RunResults", "__version__", "load_run", "run"]


def __getattr__(name: str) -> Any:
    if name in ("load_run", "RunResults"):
        from cvqa_bench import api

        return getattr(api, name)
    if name == "run":  # the run/ subpackage, callable as ``cvqa_bench.run(config)`` (run/__init__.py)
        import importlib

        return importlib.import_module("cvqa_bench.run")
    raise AttributeError(f"module 'cvqa_bench' has no attribute {name!r}")
