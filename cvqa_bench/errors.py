"""Errors that stop a run after it started, each with what to do next (no heavy imports here)."""


class RunStopped(RuntimeError):
    """A run stopped before its end; what it saved stays, and ``--resume`` continues it."""


class RunInterrupted(RunStopped):
    """The run stopped on SIGINT/SIGTERM after saving a checkpoint."""


class NonFiniteError(RunStopped):
    """A NaN/inf loss, gradient or weight: the stage stopped instead of training on garbage."""
