"""SIGTERM handled as Ctrl-C is. `kill PID`, a batch scheduler's stop or a container's shutdown would
otherwise end the process on the spot, silently: no word on how to resume, the run directory's lock file
left behind, a tuning trial marked running forever. Inside `terminate_as_interrupt()` SIGTERM raises
`Terminated`, a KeyboardInterrupt, in the main thread, so every clean-up Ctrl-C gets runs for it too.
The command line and its worker processes use it; a notebook keeps its own signal handlers."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """A termination signal arrived (args: its number); handled where Ctrl-C's KeyboardInterrupt is."""

    @property
    def signum(self) -> int:
        return int(self.args[0])

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated; the handler before it comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def call_terminable(fn: Any, *args: Any) -> Any:
    """fn(*args) with SIGTERM raising Terminated (a worker process's job: see _parallel.run_parallel)."""
    with terminate_as_interrupt():
        return fn(*args)
