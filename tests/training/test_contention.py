"""Other programs' CPU use is measured apart from this process's own (and its children's), and warned about."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from flamingo_vlm.training.contention import (
    CpuContention,
    machine_busy_cpu_seconds,
    oversubscription_message,
    process_tree_cpu_seconds,
)

pytestmark = pytest.mark.skipif(machine_busy_cpu_seconds() is None, reason="needs Linux /proc")

BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_message_only_when_threads_and_other_load_exceed_the_cores() -> None:
    assert oversubscription_message(0.1, threads=2, cores=2) is None  # background noise
    assert oversubscription_message(1.0, threads=1, cores=4) is None  # room for both
    message = oversubscription_message(1.0, threads=2, cores=2)
    assert message is not None and "1.0 of the 2 CPU cores this run may use" in message
    assert "torch.set_num_threads(1)" in message


def test_a_busy_child_counts_as_ours_not_as_other_load() -> None:
    monitor = CpuContention(threads=1, min_interval_s=0.0)
    before = process_tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=1.0)])
    time.sleep(1.3)  # it runs, then lingers unreaped: a descendant either way
    assert monitor.sample() < 0.5
    child.wait()  # reaped: its time moves to our children's times, and stays in the tree
    assert process_tree_cpu_seconds() - before >= 0.8
    # An interval of a few milliseconds would read one stray 10-ms tick of /proc as most of a core: wait a second,
    # long enough that losing the reaped child's ~1 s from our tree would read as a whole core of other load.
    time.sleep(1.0)
    assert monitor.sample() < 0.5


def test_an_unrelated_busy_process_is_other_load_and_warned_about() -> None:
    monitor = CpuContention(threads=1, min_interval_s=0.0, warn_every_s=3600)
    monitor.threads = monitor.cores  # this run claims every core it may use
    # The shell starts the busy loop in the background and exits, so the loop is no descendant of ours.
    subprocess.run(["sh", "-c", f"{sys.executable} -c '{BUSY.format(seconds=1.5)}' >/dev/null 2>&1 &"], check=True)
    time.sleep(1.5)
    message = monitor.check()
    assert monitor.last_other_cores is not None and monitor.last_other_cores >= 0.6
    assert message is not None and monitor.warnings == 1
    time.sleep(0.2)
    assert monitor.check() is None  # rate-limited: one warning per warn_every_s
