"""One worker process: builds one implementation and runs the measurements it is asked for.

    python -m benchmarks.worker REQUEST.json RESULT.json

The driver (``benchmarks.run``) starts workers in the project interpreter (``ours``) or in the peer environment
(``openflamingo``, ``flamingo_pytorch``). The request names the implementation, the suite, the folder of shared
backbones and the tasks; the result is a JSON list with one entry per task. Each implementation module provides
*closures* (a training step, a generation call, a module forward+backward) built outside the timed region; this file
times them the same way for everyone.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.measure import MemoryProbe, inverse_summary, matmul_peak, summary, time_calls
from benchmarks.suites import Suite, task_key

IMPLEMENTATIONS = {
    "ours": "benchmarks.impl_ours",
    "openflamingo": "benchmarks.impl_openflamingo",
    "flamingo_pytorch": "benchmarks.impl_flamingo_pytorch",
}


def environment(impl: Any) -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "executable": sys.executable, **impl.versions()}


def memory_task(impl: Any, suite: Suite, task: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of one workload, in a process of its own (started with a fixed malloc mmap threshold, so large
    freed buffers go back to the system and resident memory follows live memory).

    ``peak_delta_mb``: high-water mark over a first (warm-up) call and a second call, above the resident size
    before the first: everything the workload brings into being (activations, gradients, optimiser state, caches).
    ``transient_mb``: the same over the second call alone, above the resident size before it."""
    kind = task["kind"]
    if kind == "train":
        fn = impl.train_step(task["precision"])[0]
    elif kind == "generate":
        fn = impl.generate(task["shots"], task["num_beams"], suite.new_tokens, task.get("dtype", "fp32"))[1]
    else:
        fn = getattr(impl, kind)()[0]
    first, second = MemoryProbe(), MemoryProbe()
    first.start()
    fn()
    result = first.stop()
    second.start()  # resets the high-water mark: read the first window before
    fn()
    transient = second.stop()
    result["peak_rss_mb"] = max(result["peak_rss_mb"], transient["peak_rss_mb"])
    result["peak_delta_mb"] = max(0.0, result["peak_rss_mb"] - result["baseline_rss_mb"])
    result["transient_mb"] = transient["peak_delta_mb"]
    return result


def run_task(impl: Any, suite: Suite, task: dict[str, Any]) -> dict[str, Any]:
    kind = task["kind"]
    if task.get("memory"):
        return memory_task(impl, suite, task)
    probe = MemoryProbe()
    result: dict[str, Any] = {}
    if kind == "peak":
        return {"matmul_peak": {dtype: matmul_peak(dtype, suite.matmul_size) for dtype in ("fp32", "bf16")}}
    if kind == "train":
        step, info = impl.train_step(task["precision"])
        probe.start()
        seconds, losses = time_calls(step, suite.train_warmup, suite.train_reps)
        result.update(probe.stop())
        result["seconds"] = summary(seconds)
        result["tokens_per_s"] = inverse_summary(result["seconds"], info["tokens"])
        result["loss"] = losses[-1]
        result.update(info)
    elif kind == "generate":
        first, full, info = impl.generate(task["shots"], task["num_beams"], suite.new_tokens,
                                          task.get("dtype", "fp32"))
        probe.start()
        time_calls(full, suite.gen_warmup, 0)
        ttft, _ = time_calls(first, 0, suite.gen_reps)
        total, counts = time_calls(full, 0, suite.gen_reps)
        result.update(probe.stop())
        result["ttft_s"] = summary(ttft)
        result["total_s"] = summary(total)
        result["new_tokens_generated"] = counts
        if any(count != suite.new_tokens for count in counts):
            raise RuntimeError(f"generated {counts} tokens, expected exactly {suite.new_tokens} every time")
        result["tokens_per_s"] = inverse_summary(result["total_s"], suite.new_tokens)
        decode = result["total_s"]["median"] - result["ttft_s"]["median"]
        result["decode_tokens_per_s"] = (suite.new_tokens - 1) / decode if decode > 0 else None
        result.update(info)
    elif kind in ("resampler", "xattn_block"):
        fn, info = getattr(impl, kind)()
        probe.start()
        seconds, _ = time_calls(fn, suite.module_warmup, suite.module_reps)
        result.update(probe.stop())
        result["seconds"] = summary(seconds)
        result.update(info)
    elif kind == "xattn_sweep":
        probe.start()
        points = []
        for images in suite.sweep_images:
            point: dict[str, Any] = {"images": images}
            for mode in ("prefill", "decode"):
                built = impl.xattn_sweep(images, mode)
                if built is None:
                    continue  # not expressible by this implementation (flamingo-pytorch has no cached decoding)
                fn, tokens = built
                seconds, _ = time_calls(fn, suite.module_warmup, suite.module_reps)
                point[mode] = {"seconds": summary(seconds), "tokens": tokens,
                               "us_per_token": summary([1e6 * s / tokens for s in seconds])}
            points.append(point)
        result.update(probe.stop())
        result["points"] = points
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(int(request.get("threads") or os.cpu_count() or 1))
    suite = Suite.from_dict(request["suite"])
    module = importlib.import_module(IMPLEMENTATIONS[request["impl"]])
    impl = module.Implementation(suite, Path(request["assets"]))
    env = environment(impl)
    results = []
    for task in request["tasks"]:
        started = time.perf_counter()
        entry: dict[str, Any] = {"impl": request["impl"], "task": task, "key": task_key(task), "env": env}
        try:
            torch.manual_seed(suite.seed)
            entry.update(run_task(impl, suite, task))
            entry["ok"] = True
        except Exception as error:  # reported, not raised: one failing measurement must not lose the others
            entry["ok"] = False
            entry["error"] = f"{type(error).__name__}: {error}"
            entry["traceback"] = traceback.format_exc()
        entry["wall_s"] = time.perf_counter() - started
        results.append(entry)
        Path(argv[1]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
