"""Whole processes for the benchmarks: CPU and wall time of one child, and synthetic load beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
def busy_processes(count: int, *, own_session: bool = False) -> Iterator[list[int]]:
    """``count`` Python processes spinning (``while True: pass``) for the block; their ids.

    ``own_session``: all of them in one session of their own, as the jobs of another terminal or user are;
    Linux's autogroup scheduler (``/proc/sys/kernel/sched_autogroup_enabled``) then shares the cores between
    sessions before it shares them between processes. Otherwise they share the caller's session. Either
    way a leader process starts them in a process group of its own, which ends them all at once.
    """
    leader_code = (f"import subprocess, sys\nps = [subprocess.Popen([sys.executable, '-c', {BUSY_LOOP!r}]) "
                   f"for _ in range({count})]\nprint(' '.join(str(p.pid) for p in ps), flush=True)\n"
                   "for p in ps: p.wait()")
    group: dict[str, Any] = {"start_new_session": True} if own_session else {"process_group": 0}
    leader = subprocess.Popen([sys.executable, "-c", leader_code], stdout=subprocess.PIPE, text=True, **group)
    assert leader.stdout is not None
    spinners = [int(pid) for pid in leader.stdout.readline().split()]
    try:
        yield spinners
    finally:
        os.killpg(leader.pid, signal.SIGKILL)  # the leader's group: the leader and its spinners
        leader.wait()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_running(pid) for pid in spinners):
            time.sleep(0.05)  # orphaned by the leader's death: gone once init reaps them


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, utime and stime at 11 and 12);
    None once the process is reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _running(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")
