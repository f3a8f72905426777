"""How many CPU threads cifarlab's own computing uses, and how idle OpenMP threads wait: set once per
process, early, by `configure` (the CLI calls it before any command runs; notebooks call
`cifarlab.set_threads`). No torch at import time: the wait policy must be in the environment before
torch loads its OpenMP runtime (GNU libgomp here reads OMP_WAIT_POLICY once, when it is loaded).

Why: two cifarlab processes with torch's default threads on a 2-core machine did 0.58x the work of one
(threads that spin-wait for a core another process holds); one thread each did 1.02x (BENCHMARKS.md).

- The default thread count is the CPUs this process may use: the physical cores of its affinity mask,
  capped by its cgroup CPU quota (v2 cpu.max, v1 cfs_quota_us / cfs_period_us), not the host's count.
- `--threads auto` (the default) also adapts while training: every CHECK_SECONDS the training loop asks
  `adapt()`, which measures how many of this process's cores other processes keep busy (/proc/stat
  minus this process's own CPU time) and uses the cores they leave free (at least 1). A fixed
  `--threads N` (or OMP_NUM_THREADS in the environment) turns that off: N threads, bit-for-bit
  repeatable results.
- `--thread-wait auto` sleeps idle OpenMP threads (OMP_WAIT_POLICY=PASSIVE) when other processes are
  busy on this process's cores at start, and leaves OpenMP's default (spin a while, then sleep) otherwise;
  `default` always leaves OpenMP's, `active` / `passive` set it. OMP_WAIT_POLICY in the environment wins.
"""
from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CifarlabError

WAIT_POLICIES = ("auto", "default", "active", "passive")
CHECK_SECONDS = 2.0  # how often `adapt` measures the other processes' load (a /proc read: microseconds)
BUSY_THRESHOLD = 0.5  # cores of other processes' work that count as "something else holds a core"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSFS_CPU = Path("/sys/devices/system/cpu")


# --- What this process may use ---------------------------------------------------------------------

def affinity_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cgroup_cpu_limit(root: Path | None = None) -> float | None:
    """The cgroup CPU quota in CPUs (1.5 = one and a half), or None when there is none.
    cgroup v2: cpu.max "QUOTA PERIOD" or "max PERIOD"; v1: cpu.cfs_quota_us (-1: none) / cpu.cfs_period_us.
    Inside a container these files are the container's own."""
    root = CGROUP_ROOT if root is None else root
    text = _read(root / "cpu.max")
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and period:
            return _ratio(quota, period)
        return None
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota and period and not quota.startswith("-"):
            return _ratio(quota, period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def physical_cores(cpus: list[int], root: Path | None = None) -> int:
    """How many physical cores these logical CPUs are on (hyperthread siblings count once), from sysfs
    topology; the number of CPUs where it cannot be read."""
    root = SYSFS_CPU if root is None else root
    cores = set()
    for cpu in cpus:
        package = _read(root / f"cpu{cpu}" / "topology" / "physical_package_id")
        core = _read(root / f"cpu{cpu}" / "topology" / "core_id")
        if package is None or core is None:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def available_cpus() -> int:
    """Threads this process should use at most: the physical cores of its affinity mask (torch's own
    default counts physical cores too: a hyperthread sibling adds little to oneDNN's arithmetic), capped
    by the cgroup quota rounded down (a thread beyond the quota gets throttled; uber-go/automaxprocs
    rounds down for the same reason), at least 1."""
    n = physical_cores(affinity_cpus())
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.floor(limit)))
    return max(1, n)


# --- The setting -------------------------------------------------------------------------------------

def parse_threads(value: str | int | None) -> int | None:
    """`--threads` text -> a count, or None for auto. Raises CifarlabError with one line."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CifarlabError(f"--threads takes a whole number >= 1 or auto, got {value!r}") from None
    if n < 1:
        raise CifarlabError(f"--threads must be >= 1 (or auto: the CPUs this process may use), got {n}")
    return n


@dataclass
class ThreadPlan:
    """What `configure` chose, for the run's summary (versions)."""
    threads: int  # threads at start
    setting: str  # "auto", "N" (--threads) or "OMP_NUM_THREADS=N"
    cpus: int  # CPUs this process may use
    adaptive: bool  # threads follow the other processes' load (auto only)
    wait: str  # the OpenMP wait policy in force and why
    used: list[int] = field(default_factory=list)  # every thread count used so far (adaptive changes)
    wait_setting: str = "auto"  # --thread-wait as asked for

    def settings(self) -> dict[str, str]:
        """--threads and --thread-wait as a run records them for --resume: "auto", or the fixed count
        (--threads N, OMP_NUM_THREADS=N or torchrun's share)."""
        return {"threads": "auto" if self.setting == "auto" else str(self.threads), "thread_wait": self.wait_setting}

    def describe(self) -> dict[str, str]:
        lo, hi = min(self.used or [self.threads]), max(self.used or [self.threads])
        return {"threads": f"{self.setting}: {self.threads} of {self.cpus} CPUs"
                           + (f", adapting to other load (used {lo}-{hi})" if self.adaptive else ""),
                "omp_wait_policy": self.wait}


_plan: ThreadPlan | None = None
_governor: _Governor | None = None


def configure(threads: str | int | None = None, wait: str = "auto") -> ThreadPlan:
    """Set this process's thread count and OpenMP wait policy (call once, before heavy work)."""
    global _plan, _governor
    count = parse_threads(threads)
    if wait not in WAIT_POLICIES:
        raise CifarlabError(f"unknown --thread-wait {wait!r}; choose one of: {', '.join(WAIT_POLICIES)}")
    cpus = available_cpus()
    setting = "auto" if count is None else str(count)
    env_threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if count is None and env_threads:  # the environment asked for a fixed count: respect it
        try:  # "4,2" (nested levels) is valid OpenMP: the first level is ours
            count, setting = parse_threads(env_threads.split(",")[0]), f"OMP_NUM_THREADS={env_threads}"
        except CifarlabError:
            warnings.warn(f"ignoring OMP_NUM_THREADS={env_threads!r}: not a thread count (a whole number >= 1)",
                          stacklevel=2)
    if count is not None and count > cpus:
        warnings.warn(f"--threads {count} is more than the {cpus} CPU(s) this process may use: the threads will "
                      "take turns on the cores, which is usually slower", stacklevel=2)
    wait_text = _set_wait_policy(wait, count if count is not None else cpus)
    import torch  # after the wait policy: the OpenMP runtime reads it when torch loads it

    n = count if count is not None else cpus
    torch.set_num_threads(n)
    # Inter-op threads run only torch.jit.fork work, which cifarlab does not use: left at torch's default.
    _plan = ThreadPlan(n, setting, cpus, adaptive=count is None and cpus > 1, wait=wait_text, used=[n],
                       wait_setting=wait)
    _governor = _Governor(_plan) if _plan.adaptive and _Governor.supported() else None
    if _plan.adaptive and _governor is None:
        _plan.adaptive = False
    return _plan


def current_plan() -> ThreadPlan | None:
    return _plan


def explicit_threads() -> bool:
    """Whether --threads N fixed the count (OMP_NUM_THREADS alone does not: torchrun sets it to 1 per rank)."""
    return _plan is not None and _plan.setting.isdigit()


def fix_threads(n: int, why: str) -> None:
    """A fixed count chosen by cifarlab itself (torchrun's ranks share the cores): no adapting."""
    global _plan, _governor
    import torch

    torch.set_num_threads(n)
    _governor = None
    if _plan is None:
        _plan = ThreadPlan(n, why, available_cpus(), adaptive=False, wait="default (not set by cifarlab)", used=[n])
    else:
        _plan.threads, _plan.setting, _plan.adaptive, _plan.used = n, why, False, [n]


def describe() -> dict[str, str]:
    """The thread setting for a run's versions: {} until `configure` has run (torch's own default)."""
    return _plan.describe() if _plan else {}


def settings() -> dict[str, str]:
    """This process's --threads and --thread-wait, for a run's config.json ({} until `configure` has run)."""
    return _plan.settings() if _plan else {}


def recorded_settings(info: dict) -> dict[str, str]:
    """The --threads and --thread-wait a run was trained with, from its config.json: its "threads" record,
    else (runs from before it) what its versions describe; {} where neither says."""
    record = info.get("threads")
    if isinstance(record, dict):
        threads, wait = str(record.get("threads")), str(record.get("thread_wait"))
        valid = re.fullmatch(r"auto|[1-9][0-9]*", threads) is not None and wait in WAIT_POLICIES
        return {"threads": threads, "thread_wait": wait} if valid else {}  # a hand-edited record: none
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    described = re.match(r"(.+?): ([1-9]\d*) of \d+ CPUs", str(versions.get("threads", "")))  # ThreadPlan.describe
    if described is None:
        return {}
    wait = re.search(r"--thread-wait (\w+)", str(versions.get("omp_wait_policy", "")))
    return {"threads": "auto" if described[1] == "auto" else described[2],
            "thread_wait": wait[1] if wait and wait[1] in WAIT_POLICIES else "auto"}


def resume_settings(info: dict, run_dir: str, threads: str | None, wait: str | None) -> tuple[str | None, str]:
    """The --threads and --thread-wait that `train --resume` runs with: the run's own. A different --threads
    is refused, like the run's other settings (the thread count changes how sums are split, so the last
    digits of the results); a different --thread-wait, which only changes how idle threads wait, is used,
    with a notice. `threads` / `wait`: the flags as given (None: not given)."""
    recorded = recorded_settings(info)
    own = recorded.get("threads")
    if threads is not None and own is not None and parse_threads(threads) != parse_threads(own):
        raise CifarlabError(f"--resume continues {run_dir} with its recorded --threads {own} (another thread count "
                            f"changes its results); got --threads {threads}")
    own_wait = recorded.get("thread_wait", "auto")
    if wait is not None and wait != own_wait:
        warnings.warn(f"--thread-wait {wait} instead of the run's {own_wait}: idle threads wait differently, the "
                      "results stay the same", stacklevel=2)
    return (threads if threads is not None else own), wait or own_wait


def _set_wait_policy(wait: str, threads: int) -> str:
    if "OMP_WAIT_POLICY" in os.environ:
        return f"{os.environ['OMP_WAIT_POLICY']} (from the environment)"
    if wait == "default":
        return "default (--thread-wait default: OpenMP's own, spin a while then sleep)"
    if wait == "auto":
        if threads == 1:
            return "default (one thread: nothing waits)"
        busy = others_busy_cores(affinity_cpus(), seconds=0.1)
        if busy is None or busy < BUSY_THRESHOLD:
            return "default (auto: no other load on this process's cores at start)"
        policy, why = "PASSIVE", f"auto: other processes kept {busy:.1f} core(s) busy at start"
    else:
        policy, why = wait.upper(), f"--thread-wait {wait}"
    if "torch" in sys.modules:  # too late: the runtime has read its environment already
        return f"default ({why}, but torch was loaded before cifarlab could set OMP_WAIT_POLICY)"
    os.environ["OMP_WAIT_POLICY"] = policy
    return f"{policy} ({why})"


# --- Adapting to the other processes' load -------------------------------------------------------------

def _cpu_busy_seconds(cpus: list[int]) -> float | None:
    """Busy time (everything but idle and iowait) of these CPUs since boot, from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in wanted:
            values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(values) - values[3] - values[4]
    return busy / ticks


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def others_busy_cores(cpus: list[int], seconds: float) -> float | None:
    """How many of these CPUs other processes kept busy over a short sample (None where unknown)."""
    start = _sample(cpus)
    if start is None:
        return None
    time.sleep(seconds)
    return _others_between(start, _sample(cpus))


def _sample(cpus: list[int]) -> tuple[float, float, float] | None:
    busy = _cpu_busy_seconds(cpus)
    return None if busy is None else (time.monotonic(), busy, _own_cpu_seconds())


def _others_between(a, b) -> float | None:
    if a is None or b is None or b[0] - a[0] <= 0:
        return None
    return max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0])


class _Governor:
    """Every CHECK_SECONDS: threads = the cores of this process's CPUs the other processes leave free,
    rounded, between 1 and the CPUs it may use. Beside one busy process on 2 cores that is 1 thread
    (measured 1.8x slower than alone, against 3.1x with 2 spinning threads); when it ends, 2 again."""

    def __init__(self, plan: ThreadPlan):
        self.plan = plan
        self.cpus = affinity_cpus()
        self.threads = plan.threads
        self.last = _sample(self.cpus)

    @staticmethod
    def supported() -> bool:
        return Path("/proc/stat").is_file()

    def adapt(self) -> None:
        if self.last is None or time.monotonic() - self.last[0] < CHECK_SECONDS:
            return
        if threading.current_thread() is not threading.main_thread():
            return  # torch's thread count is per OpenMP thread: change it where training runs
        now = _sample(self.cpus)
        others = _others_between(self.last, now)
        self.last = now
        if others is None:
            return
        free = len(self.cpus) - others
        wanted = max(1, min(self.plan.cpus, int(free + 0.5)))
        if wanted != self.threads:
            import torch

            torch.set_num_threads(wanted)
            self.threads = wanted
            if wanted not in self.plan.used:
                self.plan.used.append(wanted)


def adapt() -> None:
    """Called often from compute loops (one clock read unless CHECK_SECONDS have passed); a no-op unless
    the thread count is auto."""
    if _governor is not None:
        _governor.adapt()


# --- Dividing the cores among worker processes ------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    threads: int
    cpus: tuple[int, ...] | None  # pinned to these CPUs, or None


def divide_cores(workers: int, pin: bool = False) -> list[Slot]:
    """One slot per worker: threads = CPUs // workers (at least 1); with `pin`, disjoint CPU sets
    (round-robin when there are more workers than CPUs)."""
    if workers < 1:
        raise CifarlabError(f"the number of worker processes must be >= 1, got {workers}")
    cpus = affinity_cpus()[:available_cpus()] if pin else affinity_cpus()
    total = available_cpus()
    if workers > total:
        warnings.warn(f"{workers} worker processes on {total} CPU(s): they will take turns on the cores",
                      stacklevel=2)
    threads = max(1, total // workers)
    slots = []
    for i in range(workers):
        chosen = tuple(cpus[(i * threads + j) % len(cpus)] for j in range(threads)) if pin else None
        slots.append(Slot(threads, chosen))
    return slots


def worker_environment(slot: Slot) -> dict[str, str]:
    """Environment for a worker process: its thread count fixed before its torch loads."""
    return {"OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads)}


def enter_slot(slot: Slot, wait: str = "auto") -> ThreadPlan:
    """First thing in a worker process: its CPUs (when pinned), then its threads."""
    if slot.cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, slot.cpus)
    return configure(slot.threads, wait)


def set_threads(threads: str | int | None = "auto", wait: str = "auto") -> ThreadPlan:
    """The Python API's `--threads`: `cifarlab.set_threads(1)` in a notebook beside a training terminal.
    The wait policy only takes effect before torch is imported (else set OMP_WAIT_POLICY yourself)."""
    return configure(threads, wait)


def configured_threads() -> int | None:
    """The thread count `configure` set (for libraries with pools of their own, e.g. ONNX Runtime)."""
    return _plan.threads if _plan else None
