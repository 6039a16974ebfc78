"""Where the time goes in one measurement: torch.profiler operator table and a cProfile of the Python side.

    python -m benchmarks.profile --suite cpu-small --task train/fp32
    python -m benchmarks.profile --suite cpu-small --task generate/shots=32/beams=3 --impl openflamingo \
        --python ../peer-venv/bin/python

Builds the same closure the benchmark times (``benchmarks.impl_*``), warms it up, then profiles ``--reps`` calls.
Prints the top operators by self CPU time and the top Python functions by cumulative and internal time (file:line).

    python -m benchmarks.profile --suite cpu-small --task generate/shots=32/beams=1 --phases

splits one of our greedy queries into its phases (medians over ``--reps``, at least 5): encoding the media (vision
tower + resampler), the prompt's prefill through the fused LM, and one decoding step; the query can be no faster
than their sum, whatever the decoding loop does.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.suites import get_suite, task_key, tasks_for

ROOT = Path(__file__).resolve().parents[1]


def _closure(impl: object, task: dict) -> object:
    if task["kind"] == "train":
        return impl.train_step(task["precision"])[0]
    if task["kind"] == "generate":
        return impl.generate(task["shots"], task["num_beams"], impl.suite.new_tokens)[1]
    return getattr(impl, task["kind"])()[0]


def profile_here(suite_name: str, impl_name: str, key: str, reps: int, rows: int, assets: Path | None) -> None:
    import importlib

    import torch

    from benchmarks.worker import IMPLEMENTATIONS

    suite = get_suite(suite_name)
    (task,) = [t for t in tasks_for(suite) if task_key(t) == key]
    if assets is None:
        from benchmarks.assets import build_assets

        assets = Path(tempfile.mkdtemp(prefix="flamingo-profile-"))
        build_assets(suite, assets)
    impl = importlib.import_module(IMPLEMENTATIONS[impl_name]).Implementation(suite, assets)
    fn = _closure(impl, task)
    for _ in range(2):
        fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            fn()
    print(f"== {impl_name} {key}: torch.profiler, {reps} calls, top operators by self CPU time ==")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(reps):
        fn()
    profiler.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(rows)
        print(f"== {impl_name} {key}: cProfile by {order} ==")
        print(out.getvalue())


def generation_phases(suite_name: str, shots: int, reps: int, assets: Path | None = None,
                      steps: int = 19) -> dict[str, float]:
    """Milliseconds (medians) of our greedy query's phases at ``shots`` shots: ``media`` (vision + resampler),
    ``prefill`` (the prompt through the fused LM, caches built), ``decode_step`` (one token, mean over ``steps``).

    Raises ``RuntimeError`` if the phases, run one after another, do not produce the tokens ``model.generate``
    does: what is timed must be the query the benchmark measures.
    """
    import statistics
    import time

    import torch

    from benchmarks import workloads as W
    from benchmarks.impl_ours import Implementation
    from flamingo_vlm.model.generation import _blocked_tokens_bias, _CachedDecoder, _prepare

    suite = get_suite(suite_name)
    if assets is None:
        from benchmarks.assets import build_assets

        assets = Path(tempfile.mkdtemp(prefix="flamingo-phases-"))
        build_assets(suite, assets)
    impl = Implementation(suite, assets)
    model = impl._model().eval()
    row = W.few_shot_prompt(shots, suite.caption_tokens, impl.manifest["vocab"], impl.manifest["bos"], suite.seed)
    ids = W.to_ids([row], model.media_token_id, model.end_of_chunk_token_id)
    mask = torch.ones_like(ids)
    pixels = W.pixels(W.count_images(row), suite.image_size, suite.seed)[:, None]  # (N, 1, 3, H, W)

    def timed(fn: object) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    samples: dict[str, list[float]] = {"media": [], "prefill": [], "decode_step": []}
    with torch.inference_mode():
        for rep in range(max(5, reps) + 2):  # the first two are warm-up
            media: list = []
            media_ms = timed(lambda: media.append(_prepare(model, ids, mask, pixels, None, None)[1]))
            decoders: list = []
            prefill_ms = timed(lambda: decoders.append(_CachedDecoder(model, ids, mask, media[0], reserve=steps)))
            decoder = decoders[0]
            blocked = _blocked_tokens_bias(model, decoder.logits)  # as generate: never <image>, no padded ids
            tokens = [(decoder.logits + blocked).argmax(-1)]  # each (1,)

            def decode() -> None:
                for _ in range(steps):
                    tokens.append((decoder.step(tokens[-1]) + blocked).argmax(-1))

            step_ms = timed(decode) / steps
            if rep >= 2:
                for key, value in zip(samples, (media_ms, prefill_ms, step_ms), strict=True):
                    samples[key].append(value)
        expected = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=steps + 1,
                                  stop_at_end_of_chunk=False)  # (1, steps + 1)
    if torch.cat(tokens).tolist() != expected[0].tolist():
        raise RuntimeError("The timed phases did not produce model.generate's tokens; the phase timer is out of "
                           "step with flamingo_vlm.model.generation.")
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cpu-small")
    parser.add_argument("--task", required=True, help="e.g. train/fp32, generate/shots=32/beams=3, xattn_block")
    parser.add_argument("--impl", default="ours", choices=["ours", "openflamingo", "flamingo_pytorch"])
    parser.add_argument("--python", default=None, help="interpreter for a peer implementation")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--assets", default=None, help="(internal) folder of backbones built by this project")
    parser.add_argument("--phases", action="store_true",
                        help="ours, generate tasks: time media encoding, prefill and one decoding step instead")
    args = parser.parse_args(argv)
    if args.phases:
        task = [t for t in tasks_for(get_suite(args.suite)) if task_key(t) == args.task]
        if args.impl != "ours" or not task or task[0]["kind"] != "generate":
            parser.error("--phases takes --impl ours and a generate task, e.g. generate/shots=32/beams=1")
        phases = generation_phases(args.suite, task[0]["shots"], args.reps,
                                   Path(args.assets) if args.assets else None)
        print(f"== ours {args.task}: phases of a greedy query, ms (median) ==")
        for name, ms in phases.items():
            print(f"{name:<12} {ms:8.2f}")
        return 0
    if args.python and Path(args.python).absolute() != Path(sys.executable).absolute():
        # Build the backbones here (the peer interpreter only reads them), then rerun this module over there.
        from benchmarks.assets import build_assets

        assets = Path(tempfile.mkdtemp(prefix="flamingo-profile-"))
        build_assets(get_suite(args.suite), assets)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        command = [args.python, "-m", "benchmarks.profile", "--suite", args.suite, "--task", args.task, "--impl",
                   args.impl, "--reps", str(args.reps), "--rows", str(args.rows), "--assets", str(assets)]
        return subprocess.run(command, cwd=ROOT, env=env).returncode
    profile_here(args.suite, args.impl, args.task, args.reps, args.rows, Path(args.assets) if args.assets else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
