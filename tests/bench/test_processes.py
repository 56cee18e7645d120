"""Benchmark processes (cvqa_bench/bench/processes.py): CPU time is user plus system time, a child that spins
shows its spin in user time, one that touches memory shows page faults, a failure raises; synthetic load in
a session of its own spins there and is gone after."""

from __future__ import annotations

import os
import sys

import pytest

from cvqa_bench.bench.processes import proc_stat, timed

SPIN = "import os\nend = os.times().user + 0.3\nwhile os.times().user < end: pass"  # 0.3 s of user time
TOUCH = "import mmap\nm = mmap.mmap(-1, 8 << 20)\nfor i in range(0, 8 << 20, 4096): m[i] = 1"


def test_a_spinning_child_counts_its_spin_as_user_time_and_cpu_is_user_plus_system(tmp_path):
    seconds = timed([sys.executable, "-c", SPIN], tmp_path, dict(os.environ))
    assert seconds["user"] >= 0.3
    assert seconds["cpu"] == pytest.approx(seconds["user"] + seconds["sys"], abs=0.002)
    assert seconds["wall"] >= seconds["user"] - 0.05  # one thread: no more CPU than wall time


def test_a_child_that_touches_8_mib_page_by_page_faults_at_least_once_per_page_it_touched(tmp_path):
    quiet = timed([sys.executable, "-c", "pass"], tmp_path, dict(os.environ))
    touching = timed([sys.executable, "-c", TOUCH], tmp_path, dict(os.environ))
    assert touching["minor_faults"] - quiet["minor_faults"] >= 0.9 * (8 << 20) // 4096  # 2048 pages of 4 KiB


def test_a_failing_child_raises_with_the_end_of_its_stderr(tmp_path):
    with pytest.raises(RuntimeError, match="exited 3: boom"):
        timed([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], tmp_path, dict(os.environ))


@pytest.mark.parametrize("own_session", [True, False])
def test_spinners_spin_in_the_session_asked_for_and_are_gone_after(own_session):
    import time

    from cvqa_bench.bench.processes import busy_processes

    with busy_processes(2, own_session=own_session) as pids:
        assert len(pids) == 2
        sessions = {os.getsid(p) for p in pids}
        assert len(sessions) == 1 and (sessions != {os.getsid(0)}) == own_session
        start = [_cpu_ticks(p) for p in pids]
        time.sleep(0.5)
        assert all(_cpu_ticks(p) > t for p, t in zip(pids, start))  # spinning
    assert all(_state(p) in "ZX" for p in pids)  # dead (X: reaped, Z: not yet)


def _cpu_ticks(pid: int) -> int | None:
    fields = proc_stat(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])  # utime + stime


def _state(pid: int) -> str:
    fields = proc_stat(pid)
    return "X" if fields is None else fields[0]
