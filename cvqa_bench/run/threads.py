"""How many torch threads ``cvqa run`` uses, and how its OpenMP threads wait: one count per run, never spinning.

The count is fixed for the whole run and never follows the machine's load: ``CVQA_THREADS=N``, else an
explicit ``OMP_NUM_THREADS``, else 1 for a tiny model built from a config (the embedded default), else torch's
default (one per core). It has to be fixed because it is an input at real sizes: a 10M-element sum or a
512x4096 @ 4096x4096 float32 matmul differ in the last bits between 1 and 2 threads (the tiny default's tensors
are small enough to give the same bytes, tests/run/test_threads.py). ``manifest.json`` (``threads``) records it.

A tiny model gets one thread because its operations are too small for a second thread to pay for the
hand-overs, and on a shared machine a second thread can cost far more than it gives (the whole default job
57 s on 1 thread, 97 s on 2, one day on a 2-core machine). On one thread the embedded default is never slower
than its single-thread self, idle or loaded, and its numbers are those of 2 threads.

A run on more than one thread (a real checkpoint, or a count the user set) meets a busy machine by how its
threads wait. libgomp, torch's OpenMP on Linux, spins 300,000 times before a waiting thread sleeps: beside
other busy processes those spins take the time slices the working thread needs (the 60-step default beside
2 spinning processes on 2 cores: 247.6 s with 2 threads, 44.5 s with 1). :func:`short_openmp_waits` lowers
that to ``GOMP_SPINCOUNT=1000`` before torch is imported, unless the user set ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY``: 2 threads then take 45.7 s loaded, as 1 thread does. Waiting changes no number. The
measurements, idle and loaded: docs/reproducibility.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cvqa_bench.config import ModelSpec

SPINCOUNT = "1000"  # libgomp's own choice when threads outnumber cores; its default is 300,000


def short_openmp_waits() -> str:
    """Make OpenMP's idle threads sleep after a short spin (``GOMP_SPINCOUNT``) unless the user chose a wait
    policy; returns what is in effect. Only works before torch is imported (libgomp reads it on load)."""
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]} (set by the user)"
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return f"GOMP_SPINCOUNT={SPINCOUNT}"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class ThreadPolicy:
    """The run's torch thread count (``count``; 0: torch's default) and where it came from (``source``)."""

    source: str = "torch default"
    count: int = 0

    @classmethod
    def for_run(cls, model: ModelSpec) -> ThreadPolicy:
        """``CVQA_THREADS`` (a count), else ``OMP_NUM_THREADS`` when set, else 1 thread for a tiny model built
        from a config (``model.tiny``), else torch's default."""
        from cvqa_bench.config import ConfigError

        wanted = (os.environ.get("CVQA_THREADS") or "").strip()
        if wanted:
            if not (wanted.isdigit() and int(wanted) >= 1):
                raise ConfigError(f"CVQA_THREADS={wanted!r}: use a thread count (1, 2, ...)")
            return cls("CVQA_THREADS", int(wanted))
        if os.environ.get("OMP_NUM_THREADS"):
            return cls("OMP_NUM_THREADS")
        return cls("tiny model", 1) if model.tiny is not None else cls()

    def apply(self) -> int:
        """Set torch's thread count for the run; returns it."""
        import torch

        if self.count and self.count != torch.get_num_threads():
            torch.set_num_threads(self.count)
        return torch.get_num_threads()

    def record(self) -> dict[str, Any]:
        """What the manifest keeps: the count, its source, the cores and the OpenMP wait in effect."""
        import torch

        wait = {name: os.environ[name] for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if os.environ.get(name)}
        return {"threads": torch.get_num_threads(), "source": self.source, "cores": cores(), "openmp_wait": wait}
