"""SIGKILL at random moments + --resume ends with the same matrix and predictions as an uninterrupted run.

The same check for many iterations: ``.venv/bin/python tests/kill_resume.py --iterations 10``.
"""

from __future__ import annotations

import os
import random

from kill_resume import fingerprint, killed_run, reference_run, write_inputs


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    env = {**os.environ, "CVQA_CACHE": str(tmp_path / "cache")}
    _, args = write_inputs(tmp_path, "llaca")
    expected, seconds = reference_run(tmp_path, args, env)

    out = tmp_path / "killed"
    iteration = killed_run(out, args, env, budget=seconds * 0.8, rng=random.Random(3), max_attempts=4)

    kills = [a for a in iteration.attempts if a.killed]
    assert len(kills) >= 2, iteration.attempts  # the run really was killed, more than once
    assert iteration.attempts[-1].phase == "finished"
    assert fingerprint(out) == expected
