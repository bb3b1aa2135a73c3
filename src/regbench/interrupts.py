"""SIGTERM and SIGINT end a run as ``interrupted``, with its step, and a non-zero exit status.

Without this, SIGTERM ended a run with exit status 0 and ``status: running`` (Lightning turns it
into ``SIGTERMException``, a ``SystemExit`` without a code) and SIGINT left ``running`` too. While
a run is active (:func:`handle_interrupts`):

- inside Lightning's ``fit``/``validate``, Lightning's own SIGTERM handler is installed (it chains
  to ours) and stops the loop at the next batch boundary; under DDP rank 0 broadcasts the stop so
  every rank stops at the same batch. SIGINT (Ctrl+C) is routed to that same graceful path. A
  second SIGINT stops at once.
- outside them (reading data, building the model, after training) the signal raises
  :class:`RunInterrupted` immediately.

``train.run`` records ``status: interrupted`` with the signal and the step, and then raises
:class:`RunInterrupted` (a ``SystemExit`` with status 128 + signal number, the shell convention),
so a sweep of several jobs in one process stops too. Python handlers can only be installed in the
main thread; elsewhere the process keeps its handlers (and Lightning's behaviour).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(SystemExit):
    """The run was stopped by a signal; ``code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class InterruptState:
    """The first signal received while a run was active (None if none)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None


@contextlib.contextmanager
def handle_interrupts() -> Iterator[InterruptState]:
    """Install the run's SIGTERM/SIGINT handlers (main thread only); previous ones are restored on exit."""
    state = InterruptState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_signal(signum: int, frame: Any) -> None:
        state.count += 1
        if state.signum is None:
            state.signum = signum
        lightning_active = signal.getsignal(signal.SIGTERM) is not on_signal
        if signum == signal.SIGTERM:
            if lightning_active:
                return  # called from Lightning's handler chain: it stops at the next batch boundary
            raise RunInterrupted(signum)
        # SIGINT
        if lightning_active and state.count == 1:
            handler = signal.getsignal(signal.SIGTERM)
            if callable(handler):
                handler(signal.SIGTERM, frame)  # the same graceful stop as SIGTERM
                return
        raise RunInterrupted(state.signum)

    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, on_signal)
    try:
        yield state
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
