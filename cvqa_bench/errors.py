"""Errors that stop a run after it started, each with what to do next (no heavy imports here)."""


class RunStopped(RuntimeError):
    """A run stopped before its end; what it saved stays, and ``--resume`` continues it."""


class RunInterrupted(RunStopped):
    """The run stopped on SIGINT/SIGTERM after saving a checkpoint."""


class NonFiniteError(RunStopped):
    """A NaN/inf loss, gradient or weight: the stage stopped instead of training on garbage."""


def describe_user_error(exc: BaseException) -> str:
    """One line for an error the CLI reports with exit code 2; an OSError (full disk, read-only folder,
    no permission) names its path and says that what was written is kept."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.strerror:
        where = exc.filename or "a file of the run"
        return (f"{where}: {exc.strerror}; files already written are kept: fix the folder (space, "
                "permissions) and run the same command again (with --resume for a run)")
    if isinstance(exc, RecursionError):
        return "input nested too deeply (recursion limit)"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
