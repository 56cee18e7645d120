"""Whole processes for the benchmarks: CPU and wall time of one child, and synthetic load beside it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

BUSY_LOOP = "while True: pass"


def timed(command: Sequence[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``command`` as a child process: its CPU seconds (user + system, its own children's included,
    from ``wait4``; also apart, with its minor page faults, which set most of its system time) and wall
    seconds. RuntimeError with the end of its stderr when it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {child.returncode}: {err.decode()[-2000:]}")
    return {"cpu": round(usage.ru_utime + usage.ru_stime, 3), "wall": round(wall, 3),
            "user": round(usage.ru_utime, 3), "sys": round(usage.ru_stime, 3), "minor_faults": usage.ru_minflt}


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[int]]:
    """``count`` Python processes spinning (``while True: pass``) for the block; their ids. Ended by id."""
    children = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield [c.pid for c in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
