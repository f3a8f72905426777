"""Run jobs in K worker processes that divide this process's cores among them: each worker has
threads = CPUs // K (and, with `pin`, CPUs of its own) fixed before its torch loads. Used by
`tune --workers`, `compare --parallel` and `ablate --parallel`. No torch here: the workers import it."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from ._signals import call_terminable
from ._threads import divide_cores, enter_slot, worker_environment
from .errors import speak_flags, speaking_flags


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Children started inside inherit `values` (spawned processes copy os.environ when they start)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _enter_worker(slots, wait: str, flags: bool) -> None:
    enter_slot(slots.get(), wait)
    speak_flags(flags)  # started by a command: its workers' messages name --flags too (a table row quotes them)


def run_parallel(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, *, pin: bool = False,
                 wait: str = "auto") -> Iterator[Future]:
    """Submit fn(*job) for every job to `workers` processes and yield the futures in job order (so the
    caller's table keeps its order whichever job ends first). `fn` must be importable (module level)."""
    workers = max(1, min(workers, len(jobs)))
    slots = divide_cores(workers, pin)
    # spawn, not fork: the parent may hold torch's thread pools, which a forked child cannot use.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    for slot in slots:
        queue.put(slot)
    with _environment(worker_environment(slots[0])):  # every slot has the same thread count
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_enter_worker,
                                   initargs=(queue, wait, speaking_flags()))
        try:
            # The workers start here, inside the environment. A job stopped by _stop's SIGTERM ends as Ctrl-C
            # would end it (its run's lock released, its tuning trial marked failed); an idle worker just ends.
            futures = [pool.submit(call_terminable, fn, *job) for job in jobs]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    try:
        yield from futures
    except BaseException:  # also GeneratorExit: the caller stopped early (an error, Ctrl-C)
        _stop(pool)
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now, rather than wait for their jobs (hours)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)  # (this forgets the processes: taken above)
    for process in processes:
        process.terminate()
