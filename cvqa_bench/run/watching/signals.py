"""Graceful SIGINT/SIGTERM: the first signal asks the run to checkpoint and stop; a second one kills."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

from cvqa_bench.errors import RunInterrupted


class InterruptFlag:
    """Installs handlers for SIGINT/SIGTERM while active (main thread only); ``requested`` says a signal came."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def check(self, where: str) -> None:
        """Raise :class:`RunInterrupted` if a signal came (called where stopping is safe)."""
        if self.requested is not None:
            raise RunInterrupted(f"{self.requested} received; stopped {where}")


NO_INTERRUPT = InterruptFlag()  # never entered: requested stays None
