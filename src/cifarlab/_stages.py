"""Stage lines for the long jobs (`cifarlab analyze`, `cifarlab run`): each stage says what it starts
("[2/6] predictions ...") and, when it ends, how long it took; the seconds are kept for the result.
No torch: the lines are printed through the job's own `log` (print, or nothing when quiet)."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


def stage_timer(stages: list[str], log: Callable[..., None], timings: dict[str, float],
                indent: str = "  ") -> Callable[..., contextlib.AbstractContextManager[None]]:
    """A context manager factory: `with stage(name, "what it does"):` announces stage k of n, runs the block
    and records its seconds in `timings`, printed when it ends."""
    @contextlib.contextmanager
    def stage(name: str, what: str = "") -> Iterator[None]:
        detail = f": {what}" if what else ""
        log(f"{indent}[{stages.index(name) + 1}/{len(stages)}] {name.replace('_', ' ')}{detail} ...", flush=True)
        start = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - start
        log(f"{indent}{name}: {timings[name]:.1f} s", flush=True)
    return stage
