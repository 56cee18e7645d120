"""A run killed at random moments (SIGKILL) or stopped by SIGTERM ends, after --resume, bit-identical to an
uninterrupted run (CPU, same seed).

The same check for many iterations: ``.venv/bin/python tests/kill_resume.py --iterations 10``.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from kill_resume import cvqa, fingerprint, killed_run, reference_run, write_inputs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kill_resume")
    env = {**os.environ, "CVQA_CACHE": str(workdir / "cache")}
    _, args = write_inputs(workdir, "llaca")
    expected, seconds = reference_run(workdir, args, env)
    return workdir, env, args, expected, seconds


def test_sigkilled_and_resumed_run_is_bit_identical(reference):
    workdir, env, args, expected, seconds = reference
    out = workdir / "killed"
    iteration = killed_run(out, args, env, budget=seconds * 0.8, rng=random.Random(3), max_attempts=4)

    kills = [a for a in iteration.attempts if a.killed]
    assert len(kills) >= 2, iteration.attempts  # the run really was killed, more than once
    assert iteration.attempts[-1].phase == "finished"
    assert fingerprint(out) == expected


def test_sigterm_saves_and_exits_with_a_resume_hint(reference):
    workdir, env, args, expected, _ = reference
    out = workdir / "terminated"
    proc = cvqa([*args, "--out", str(out)], env)
    deadline = time.monotonic() + 300
    while not (out / "stages" / "1-color" / "DONE.json").exists():  # stop it once stage 2 has begun
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be signalled"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()
    message = err.decode()
    assert "SIGTERM received" in message and "--resume" in message
    assert not (out / "matrix.csv").exists()

    resumed = cvqa([*args, "--out", str(out), "--resume"], env)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()
    assert fingerprint(out) == expected
