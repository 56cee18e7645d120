"""How many torch threads ``cvqa run`` uses: never more than the cores other processes leave free.

torch starts one OpenMP thread per core. On a machine whose cores other processes already keep busy those
threads wait for each other in spin loops: `make run` at load 7-11 on 2 cores spent 676 s of CPU on work
that takes 72 s on one thread, and took 25 minutes. The policy (``auto``, the default of ``cvqa run``):
before every stage, count the cores other processes want (the larger of the 1-minute load average less this
run's own threads and the processes runnable right now, ``/proc/loadavg``, less this one) and use the
cores left free, at least 1 and at most torch's default. On an idle machine that is torch's default; under
contention 1 thread, which cannot spin. An explicit ``OMP_NUM_THREADS`` (or ``CVQA_THREADS=N``) wins and is
kept; ``CVQA_THREADS=auto`` or unset: the policy. The thread count changes no number (torch's CPU kernels
split work into the same chunks whatever the thread count: tests/run/test_threads.py compares a run on 1 and
2 threads byte for byte); ``run.log`` and ``manifest.json`` (``threads``) record every choice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOADAVG = Path("/proc/loadavg")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def others_busy(own_threads: int) -> float:
    """How many cores other processes want now: the larger of the 1-minute load average less the threads
    this process ran lately (``own_threads``) and the processes runnable right now (``/proc/loadavg``, an
    instantaneous count) less this one."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    try:
        running = float(LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        running = 0.0
    return max(0.0, load - own_threads, running - 1)


def fair_threads(n_cores: int, busy: float, default: int) -> int:
    """Threads for ``busy`` cores taken by others out of ``n_cores``: the free ones, in 1..``default``."""
    return max(1, min(default, n_cores - math.ceil(busy - 0.25)))  # a quarter core of noise is idle


@dataclass
class ThreadPolicy:
    """``auto``: :func:`fair_threads` before every stage; an explicit count: that count, set once."""

    mode: str = "auto"
    default: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_environment(cls) -> ThreadPolicy:
        """``CVQA_THREADS`` (a count or ``auto``), else ``OMP_NUM_THREADS`` when set (a count), else ``auto``."""
        import torch

        from cvqa_bench.config import ConfigError

        wanted = (os.environ.get("CVQA_THREADS") or "").strip().lower()
        if wanted and wanted != "auto" and not (wanted.isdigit() and int(wanted) >= 1):
            raise ConfigError(f"CVQA_THREADS={wanted!r}: use a thread count (1, 2, ...) or auto")
        if not wanted:
            wanted = "explicit" if os.environ.get("OMP_NUM_THREADS") else "auto"
        return cls(mode=wanted, default=torch.get_num_threads())

    def apply(self, stage: int) -> int:
        """Set torch's thread count for ``stage`` (0: the zero-shot row); returns it and records a change."""
        import torch

        own = torch.get_num_threads()
        if self.mode == "auto":
            busy = others_busy(own if self.history else 1)  # before the first stage: imports, one thread
            threads, reason = fair_threads(cores(), busy, self.default), f"others busy {busy:.2f} of {cores()} cores"
        elif self.mode == "explicit":
            threads, reason = own, "OMP_NUM_THREADS"
        else:
            threads, reason = max(1, int(self.mode)), "CVQA_THREADS"
        if threads != own:
            torch.set_num_threads(threads)
        if not self.history or self.history[-1]["threads"] != threads:
            self.history.append({"stage": stage, "threads": threads, "reason": reason})
        return threads

    def record(self) -> dict[str, Any]:
        """What the manifest keeps: the policy, the cores and every thread count chosen, from which stage."""
        return {"policy": self.mode, "cores": cores(), "torch_default": self.default, "chosen": list(self.history)}
