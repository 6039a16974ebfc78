"""Benchmark driver: measures this project and its peers in one run, on one machine, at matched sizes.

    python -m benchmarks.run --suite cpu-small                 # us vs OpenFlamingo vs flamingo-pytorch
    python -m benchmarks.run --suite smoke --impls ours        # seconds; what the test suite runs

The driver builds the shared backbones, then for each measurement starts one fresh worker process per
implementation (``python -m benchmarks.worker``): ours in this interpreter, the peers in the peer environment's
interpreter (``--peer-python``; built by ``shared/peers/setup-peer-env.sh``). Our side and the peers' alternate for
every measurement (ours first, then theirs, then theirs first for the next one...) so drifting machine load hits
both alike. Results: ``<out>/<suite>-<date>.json``, the markdown tables (printed and ``.md``), and a plot of
per-query time against shots (``.per_query_vs_shots.png``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.assets import build_assets
from benchmarks.report import build_report, matmul_peaks, write_outputs
from benchmarks.suites import MEMORY_KINDS, SUPPORTED, Suite, get_suite, split_slow_bf16, task_key, tasks_for
from flamingo_vlm.training.contention import machine_busy_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("openflamingo", "flamingo_pytorch")


def find_peer_python(explicit: str | None) -> str | None:
    """``--peer-python`` if given, else ``$FLAMINGO_PEER_PYTHON``, ``./.peer-venv`` or ``../peer-venv``."""
    if explicit:
        return explicit if Path(explicit).exists() else None
    candidates = [ os.environ.get("FLAMINGO_PEER_PYTHON"), str(ROOT / ".peer-venv" / "bin" / "python"),
                  str(ROOT.parent / "peer-venv" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    memory_gb = None
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    return {"cpu_model": model, "logical_cores": os.cpu_count(), "memory_gb": memory_gb,
            "platform": platform.platform(), "hostname": platform.node()}


# Memory workers: a fixed mmap threshold (which also turns off glibc's dynamic threshold) returns every freed buffer
# above 64 KiB to the system at once, so resident memory tracks live memory instead of allocator caching.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_worker(python: str, impl: str, suite: Suite, assets: Path, tasks: list[dict[str, Any]], work: Path,
               threads: int | None, timeout: float, log: Any) -> list[dict[str, Any]]:
    """Start one worker process and return its results (failures come back as ``ok: False`` entries)."""
    tag = f"{impl}-{int(time.time() * 1000)}"
    request, result = work / f"{tag}.request.json", work / f"{tag}.result.json"
    request.write_text(json.dumps({"impl": impl, "suite": suite.to_dict(), "assets": str(assets), "tasks": tasks,
                                   "threads": threads}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore")
    if all(task.get("memory") for task in tasks):
        env.update(MEMORY_ENV)
    if impl != "ours":
        env.pop("PYTHONPATH", None)  # the peer interpreter must not see this environment's packages
    started, busy, children = time.perf_counter(), machine_busy_cpu_seconds(), _children_cpu_seconds()
    try:
        process = subprocess.run([python, "-m", "benchmarks.worker", str(request), str(result)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=timeout)
        stderr, code = process.stderr, process.returncode
    except subprocess.TimeoutExpired as error:
        stderr, code = f"timed out after {timeout:.0f} s\n{error.stderr or ''}", -1
    wall = time.perf_counter() - started
    foreign = None
    if busy is not None:  # CPU used by anything but this worker, as a fraction of the machine
        other = (machine_busy_cpu_seconds() or busy) - busy - (_children_cpu_seconds() - children)
        foreign = max(0.0, other / (wall * (os.cpu_count() or 1)))
    names = ", ".join(task_key(t) + (" (memory)" if t.get("memory") else "") for t in tasks)
    log(f"  {impl:<17} {names[:70]:<70} {wall:6.1f} s" + (f"  (other load {foreign:.0%})" if foreign and foreign > 0.1 else ""))
    entries = json.loads(result.read_text()) if result.exists() else []
    done = {json.dumps(e["task"], sort_keys=True) for e in entries}
    for task in tasks:  # tasks the worker never reported (crash, timeout)
        if json.dumps(task, sort_keys=True) not in done:
            entries.append({"impl": impl, "task": task, "key": task_key(task), "ok": False,
                            "error": f"worker exited with code {code}", "stderr_tail": stderr[-3000:]})
    for entry in entries:
        entry["foreign_cpu_fraction"] = foreign
        if not entry.get("ok"):
            log(f"    FAILED {impl} {entry['key']}: {entry.get('error')}")
            if entry.get("traceback"):
                log("    " + entry["traceback"].strip().splitlines()[-1])
    return entries


def measure(suite: Suite, impls: list[str], peer_python: str | None, assets: Path, work: Path,
            threads: int | None, timeout: float, only: str | None, log: Any, max_other_load: float = 0.1,
            retries: int = 2, slow_bf16: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every measurement of the suite for every implementation; returns the workers' raw entries and the
    measurements skipped (``{"key", "reason"}``: bf16 training and queries on a CPU without native bf16, unless
    ``slow_bf16``)."""
    pythons = {impl: sys.executable if impl == "ours" else peer_python for impl in impls}
    # The matmul peak is measured once per interpreter (ours / the peers' shared one), at the start and the end.
    peak_impl = {"ours" if impl == "ours" else "peers": impl for impl in reversed(impls)}
    results: list[dict[str, Any]] = []

    def collect(impl: str, tasks: list[dict[str, Any]], round_index: int | None,
                into: list[dict[str, Any]] | None = None) -> None:
        for entry in run_worker(pythons[impl], impl, suite, assets, tasks, work, threads, timeout, log):
            entry["interpreter"] = "ours" if impl == "ours" else "peers"
            if round_index is not None:
                entry["round"] = round_index
            (results if into is None else into).append(entry)

    def disturbed(entries: list[dict[str, Any]]) -> bool:
        return any((e.get("foreign_cpu_fraction") or 0) > max_other_load for e in entries)

    tasks = [t for t in tasks_for(suite) if only is None or only in task_key(t)]
    if not suite.fresh_process:  # one worker per implementation runs everything (the smoke suite)
        for impl in impls:
            peak = [{"kind": "peak"}] if peak_impl.get("ours" if impl == "ours" else "peers") == impl else []
            collect(impl, peak + [t for t in tasks if t["kind"] in SUPPORTED[impl]], 0)
        return results, []

    log("matmul peak (start)")
    for impl in peak_impl.values():
        collect(impl, [{"kind": "peak"}], None)
    tasks, skipped = split_slow_bf16(tasks, matmul_peaks(results), keep=slow_bf16)
    for entry in skipped:
        log(f"skipping {entry['key']}: {entry['reason']}")
    for round_index in range(suite.rounds):
        log(f"round {round_index + 1}/{suite.rounds}")
        for index, task in enumerate(tasks):
            order = [i for i in impls if task["kind"] in SUPPORTED[i]]
            if (index + round_index) % 2 == 1:
                order.reverse()  # alternate who goes first
            for attempt in range(retries + 1):
                # Ours and the peers back to back; on a shared machine, the pair is measured again when another
                # process took more than `max_other_load` of the CPUs during either side.
                pair: list[dict[str, Any]] = []
                for impl in order:
                    collect(impl, [task], round_index, pair)
                if suite.memory_processes and task["kind"] in MEMORY_KINDS:
                    for impl in reversed(order):
                        collect(impl, [dict(task, memory=True)], round_index, pair)
                if not disturbed(pair) or attempt == retries:
                    for entry in pair:
                        entry["attempt"] = attempt
                    results.extend(pair)
                    break
                log(f"  other processes were busy: measuring {task_key(task)} again")
    log("matmul peak (end)")
    for impl in peak_impl.values():
        collect(impl, [{"kind": "peak"}], None)
    return results, skipped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cpu-small", help="cpu-small (default) or smoke")
    parser.add_argument("--impls", default=None,
                        help="comma-separated subset of ours,openflamingo,flamingo_pytorch (default: the suite's)")
    parser.add_argument("--peer-python", default=None,
                        help="interpreter of the peer environment (default: $FLAMINGO_PEER_PYTHON, ./.peer-venv, "
                             "../peer-venv)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where results are written")
    parser.add_argument("--only", default=None, help="run only measurements whose name contains this text")
    parser.add_argument("--rounds", type=int, default=None, help="override the suite's number of rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: all cores)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a worker is abandoned")
    parser.add_argument("--max-other-load", type=float, default=0.1,
                        help="re-measure a pair when other processes used more than this fraction of the CPUs")
    parser.add_argument("--retries", type=int, default=2, help="how many times a disturbed pair is re-measured")
    parser.add_argument("--slow-bf16", action="store_true",
                        help="measure bf16 training and bf16 queries even where the CPU has no native bf16 "
                             "arithmetic (a bf16 matmul peak under a tenth of fp32's: AVX2-only CPUs), where they are "
                             "skipped by default because each training step takes about a minute")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suite = get_suite(args.suite)
    if args.rounds is not None:
        suite.rounds = args.rounds
    impls = ["ours", *suite.peers] if args.impls is None else [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = [i for i in impls if i not in SUPPORTED]
    if unknown:
        raise SystemExit(f"Unknown implementation(s) {unknown}; choose from {sorted(SUPPORTED)}.")
    peer_python = None
    if any(i != "ours" for i in impls):
        peer_python = find_peer_python(args.peer_python)
        if peer_python is None:
            raise SystemExit("No peer environment found. Build it with `bash ../shared/peers/setup-peer-env.sh "
                             "../peer-venv` (about 5.7 GB), pass --peer-python, or run our side only with "
                             "--impls ours.")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = dt.datetime.now(dt.timezone.utc)
    log(f"suite {suite.name}: {', '.join(impls)}" + (f" (peer interpreter {peer_python})" if peer_python else ""))
    with tempfile.TemporaryDirectory(prefix="flamingo-bench-") as tmp:
        assets, work = Path(tmp) / "assets", Path(tmp) / "work"
        work.mkdir()
        manifest = build_assets(suite, assets)
        results, skipped = measure(suite, impls, peer_python, assets, work, args.threads, args.timeout, args.only,
                                   log, args.max_other_load, args.retries, slow_bf16=args.slow_bf16)
    report = build_report(suite, impls, results, manifest, machine(), started,
                          dt.datetime.now(dt.timezone.utc), peer_python, skipped=skipped)
    paths = write_outputs(report, Path(args.out), plot=not args.no_plot)
    print(paths["markdown_text"])
    log("wrote " + ", ".join(str(p) for k, p in paths.items() if k != "markdown_text"))
    failed = [f"{e['impl']} {e['key']}" for e in results if not e.get("ok")]
    if failed:
        log(f"{len(failed)} measurement(s) failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
