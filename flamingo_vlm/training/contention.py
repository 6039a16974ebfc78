"""Notice other programs competing for this machine's CPU cores while a CPU run trains or is timed.

PyTorch splits each CPU op over ``torch.get_num_threads()`` threads and waits for the slowest. When another busy
process holds some of those cores, every op waits for a thread the kernel has descheduled, so the slowdown is far
worse than a fair share: on a 2-core machine, two PyTorch jobs of 2 threads each ran about ten times slower, not
two (measured in this project: the tiny-world recipe's pairs phase fell from 2.7 to 0.34 steps/s while a 14-second
evaluation ran beside it, and was back at 2.7 the moment it ended). A slow progress bar does not say why; this
module does, from ``/proc`` (Linux; elsewhere it stays silent).

The measure: the CPU time used over an interval on the cores this process may run on (``/proc/stat``), minus
what this process and its children (data-loader workers) used, in cores. Other ranks of a torchrun job on the
same machine count as other load, rightly: their threads compete for the same cores.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def machine_busy_cpu_seconds(cpus: set[int] | None = None) -> float | None:
    """CPU seconds used since boot on ``cpus`` (default: all), from ``/proc/stat`` (all but idle and iowait).

    None where ``/proc/stat`` cannot be read (not Linux).
    """
    try:
        lines = (_PROC / "stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *values = line.split()
        if not name.startswith("cpu"):
            break  # the cpu lines come first
        if (cpus is None and name == "cpu") or (cpus is not None and name[3:].isdigit() and int(name[3:]) in cpus):
            fields = [int(v) for v in values[:8]]
            busy += sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def usable_cpus() -> set[int] | None:
    """The CPUs this process may run on (its affinity), or None where the platform does not say."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces and parentheses)."""
    try:
        text = (_PROC / pid / "stat").read_text()
    except OSError:  # the process ended while we looked
        return None
    return text[text.rindex(")") + 2:].split()


def process_tree_cpu_seconds(root: int | None = None) -> float | None:
    """CPU seconds used so far by process ``root`` (default: this one) and its living descendants."""
    root_pid = str(root if root is not None else os.getpid())
    ticks, parents = {}, {}
    try:
        pids = [entry.name for entry in _PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) (man 5 proc, fields 3,
        # 4, 14-17); the children's times keep the CPU of a data-loader worker that has ended in the tree.
        parents[pid] = fields[1]
        ticks[pid] = sum(int(value) for value in fields[11:15])
    if root_pid not in ticks:
        return None
    tree, frontier = {root_pid}, [root_pid]
    children: dict[str, list[str]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(ticks[pid] for pid in tree) / os.sysconf("SC_CLK_TCK")


def oversubscription_message(other_cores: float, threads: int, cores: int, *, margin: float = 0.5) -> str | None:
    """A warning when ``threads`` of ours plus ``other_cores`` of other load exceed ``cores`` by ``margin``.

    ``margin`` lets background noise (a shell, the kernel's own threads) pass; a second job of even one busy thread
    does not.
    """
    if other_cores <= margin or other_cores + threads <= cores + margin:
        return None
    free = max(cores - round(other_cores), 1)
    return (f"other processes kept {other_cores:.1f} of the {cores} CPU cores this run may use busy while it used "
            f"{threads} threads: threads that share cores slow each other far more than their share (two 2-thread "
            f"PyTorch jobs on 2 cores each run ~10x slower). Stop the other work, or give each job its own cores "
            f"(here: torch.set_num_threads({free}) or OMP_NUM_THREADS={free}).")


class CpuContention:
    """Measures other processes' CPU use between calls and warns when it leaves this run's threads short of cores.

    Call :meth:`check` now and then (every few steps); it samples at most every ``min_interval_s`` seconds and
    warns at most every ``warn_every_s`` seconds. :attr:`last_other_cores` holds the latest measure (for metrics).
    """

    def __init__(self, threads: int, *, min_interval_s: float = 2.0, warn_every_s: float = 300.0) -> None:
        self.threads = threads
        # Only the cores this process may use matter: load on other cores does not slow it.
        self.cpus = usable_cpus()
        self.cores = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        self.min_interval_s = min_interval_s
        self.warn_every_s = warn_every_s
        self.last_other_cores: float | None = None
        self.warnings = 0
        self._last_warning = -float("inf")
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float | None, float | None]:
        return time.monotonic(), machine_busy_cpu_seconds(self.cpus), process_tree_cpu_seconds()

    def sample(self) -> float | None:
        """Other processes' CPU use since the last sample, in cores; None when too soon or not measurable."""
        if time.monotonic() - self._start[0] < self.min_interval_s:
            return None  # too short an interval for /proc's 10-ms ticks (and no need to scan /proc again)
        now = self._snapshot()
        wall = now[0] - self._start[0]
        if None in (now[1], now[2], self._start[1], self._start[2]):
            self._start = now
            return None
        other = ((now[1] - self._start[1]) - (now[2] - self._start[2])) / wall
        self._start = now
        self.last_other_cores = max(other, 0.0)
        return self.last_other_cores

    def check(self) -> str | None:
        """Sample; log and return a warning when this run's threads are short of cores (rate-limited)."""
        other = self.sample()
        if other is None:
            return None
        message = oversubscription_message(other, self.threads, self.cores)
        if message is None or time.monotonic() - self._last_warning < self.warn_every_s:
            return None
        self._last_warning = time.monotonic()
        self.warnings += 1
        log.warning(message)
        return message
