"""The few-shot sweep: tasks x shots x seeds -> the results dict (``results.json``).

Results layout::

    {"model": "NAME_OR_DIR",
     "tasks": [{"task": "okvqa", "metric": "VQA accuracy",
                "results": [{"shots": 4, "score": 43.1, "std": 0.4, "per_seed": [43.5, 42.7, 43.1],
                             "metrics": {"BLEU-4": {"score": ..., "std": ..., "per_seed": [...]}}}, ...],
                "settings": {prompt templates, beams, max new tokens, demo mode, limit, batch size,
                             caption tokenizer, timings, ...}}]}

Protocol choices made here (all recorded in ``settings``):

* the evaluated queries are the same for every seed and shot count: all examples, or with ``limit`` the
  first ``limit`` of a fixed permutation drawn with seed 0 (:func:`select_queries`);
* seed ``s`` determines the demonstrations and their order (see ``demos.RandomDemos``);
* ``score`` is the mean over seeds and ``std`` the population standard deviation (``ddof=0``, as
  OpenFlamingo's ``np.std``); with one seed ``std`` is 0.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from flamingo_vlm.evaluation.demos import FeatureFn
from flamingo_vlm.evaluation.specs import TaskSpec, metric_label, task_settings
from flamingo_vlm.evaluation.tasks import DemoMode, Evaluator, make_evaluator
from flamingo_vlm.training.cpu_precision import PRECISIONS, resolve_precision

if TYPE_CHECKING:
    from flamingo_vlm.model.flamingo import Flamingo

__all__ = [
    "DEFAULT_SHOTS",
    "evaluate",
    "evaluate_suite",
    "INFERENCE_DTYPES",
    "load_model",
    "mean_std",
    "measure_queries_per_second",
    "save_results",
    "seed_list",
    "select_queries",
    "weights_dtype",
]

#: The paper's shot counts.
DEFAULT_SHOTS: tuple[int, ...] = (0, 4, 8, 16, 32)


#: What ``dtype`` an inference command may ask for (``flamingo generate / eval / demo --dtype``): the precisions a
#: training run may ask for, resolved the same way.
INFERENCE_DTYPES: tuple[str, ...] = PRECISIONS


def load_model(model: Flamingo | str | os.PathLike, device: str | None = None,
               dtype: str | None = None) -> Flamingo:
    """A Flamingo object, loading it from a saved folder or bundled name when given a string; in eval mode. A given
    model is moved and cast in place (``nn.Module.to``).

    ``dtype`` (None: the weights as they are, float32 after loading) casts every floating-point weight: ``"fp32"``,
    ``"bf16"`` (half the memory; faster where the hardware runs bf16 fast: on a 2-core AMD EPYC with AVX512-bf16 a
    32-shot query took 107 ms against 156 in fp32, the same 20 tokens; slower on CPUs without fast bf16, far slower
    on AVX2 alone, which emulates it), or ``"auto"``: bf16 on a GPU that supports it and on a CPU whose bf16
    matrix products are not clearly slower than fp32's (measured once,
    :func:`flamingo_vlm.training.cpu_precision.resolve_precision`), else fp32. Answers in bf16 can differ from
    fp32's where two candidates score alike.
    """
    import torch

    from flamingo_vlm.model.flamingo import Flamingo

    if dtype is not None and dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {list(INFERENCE_DTYPES)}, got {dtype!r}")
    if not isinstance(model, Flamingo):
        model = Flamingo.from_pretrained(model)
    if device is not None:
        model = model.to(device)
    if dtype is not None:
        device_type = next(model.parameters()).device.type
        model = model.to(torch.bfloat16 if resolve_precision(dtype, device_type) == "bf16" else torch.float32)
    return model.eval()


def weights_dtype(model: Flamingo) -> str:
    """``"bf16"``, ``"fp32"`` or ``"mixed"`` (what results record): the dtype of the model's floating-point
    weights."""
    import torch

    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return "bf16" if dtypes == {torch.bfloat16} else "fp32" if dtypes == {torch.float32} else "mixed"


def select_queries(num_examples: int, limit: int | None) -> list[int]:
    """The evaluated query indices: all, in file order, or with ``limit`` the first ``limit`` indices of a fixed
    permutation drawn with ``numpy.random.default_rng(0)``: the same subset for every seed, shot count and model."""
    if limit is None or limit >= num_examples:
        return list(range(num_examples))
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return [int(i) for i in np.random.default_rng(0).permutation(num_examples)[:limit]]


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; an explicit list is kept as is."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    values = [int(s) for s in seeds]
    if not values or any(s < 0 for s in values) or len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    return values


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of per-seed scores."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(array.mean()), float(array.std())


def _summary(values: Sequence[float]) -> dict[str, Any]:
    mean, std = mean_std(values)
    return {"score": mean, "std": std, "per_seed": [float(v) for v in values]}


def evaluate(
    model: Flamingo | str | os.PathLike,
    task: TaskSpec,
    *,
    shots: Sequence[int] = DEFAULT_SHOTS,
    seeds: int | Sequence[int] = 3,
    demos: DemoMode = "random",
    limit: int | None = None,
    batch_size: int = 8,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    feature_fn: FeatureFn | None = None,
    media_cache_size: int = 1024,
) -> dict[str, Any]:
    """Zero/few-shot scores of ``model`` on one task: one results entry (see the module docstring).

    Args:
        model: a Flamingo, or a saved folder / bundled name to load.
        task: the task spec (``VQATask(...)``, ``CaptioningTask(...)``, ...).
        shots: shot counts to evaluate (0 = two text-only demonstrations).
        seeds: number of seeds (``3`` -> 0, 1, 2) or the seeds themselves.
        demos: ``"random"`` or ``"rices"``.
        limit: evaluate this many queries (a fixed subset, see :func:`select_queries`); ``None``: all.
        batch_size: queries per model call.
        cache_dir: RICES feature cache folder (default ``~/.cache/flamingo_vlm/rices``).
        progress: show a progress bar per (task, shots, seed).
        feature_fn: RICES features from this function instead of the model's vision encoder.
        media_cache_size: media items whose latents stay cached for reuse across queries.

    Raises:
        ValueError: bad data files (naming file and field), a shot count larger than the support set, bad options.
    """
    model = load_model(model)
    seed_values = seed_list(seeds)
    shot_values = [int(k) for k in shots]
    if not shot_values:
        raise ValueError("shots must list at least one shot count")
    evaluator = make_evaluator(model, task, demos=demos, batch_size=batch_size, cache_dir=cache_dir,
                               feature_fn=feature_fn, media_cache_size=media_cache_size)
    queries = select_queries(len(evaluator.eval_set), limit)
    evaluator.check_shots(shot_values, queries)  # fail before hours of work, not after
    evaluator.check_prompt_length(shot_values, queries, seed_values)

    results, timings, info = [], [], {}
    for k in shot_values:
        per_seed: list[float] = []
        extra: dict[str, list[float]] = {}
        for seed in seed_values:
            with tqdm(total=len(queries), desc=f"{task.name} {k}-shot seed {seed}", unit="query",
                      disable=not progress, dynamic_ncols=True) as bar:
                start = time.perf_counter()
                output = evaluator.run(queries, k, seed, progress=bar.update)
                seconds = time.perf_counter() - start
            per_seed.append(output.score)
            for name, value in output.metrics.items():
                extra.setdefault(name, []).append(value)
            info.update(output.info)
            timings.append({"shots": k, "seed": seed, "seconds": round(seconds, 4), "queries": len(queries),
                            "queries_per_second": round(len(queries) / seconds, 3) if seconds > 0 else None})
        entry = {"shots": k, **_summary(per_seed)}
        if extra:
            entry["metrics"] = {name: _summary(values) for name, values in extra.items()}
        results.append(entry)

    settings = {**task_settings(task), **evaluator.settings(), **info, "shots": shot_values, "seeds": seed_values,
                "limit": limit, "num_queries": len(queries), "batch_size": batch_size,
                "query_subset": "all, in file order" if limit is None else "first `limit` after a seed-0 shuffle",
                "std": "population (ddof=0) over seeds", "media_encoded": evaluator.batcher.encoded,
                "media_reused": evaluator.batcher.reused, "timings": timings}
    return {"task": task.name, "metric": metric_label(task), "results": results, "settings": settings}


def evaluate_suite(
    model: Flamingo | str | os.PathLike,
    tasks: Sequence[TaskSpec],
    *,
    model_name: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`evaluate` for each task -> ``{"model": name, "tasks": [entry, ...]}``; ``options`` as :func:`evaluate`."""
    if not tasks:
        raise ValueError("no tasks to evaluate")
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"task names must be unique in a suite; repeated: {duplicates} (set 'name' per task)")
    name = model_name or (str(model) if isinstance(model, (str, os.PathLike)) else "in-memory model")
    loaded = load_model(model)
    return {"model": name, "tasks": [evaluate(loaded, task, **options) for task in tasks]}


def save_results(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results`` as indented JSON (atomically: a crash never leaves half a file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def measure_queries_per_second(
    model: Flamingo | str | os.PathLike,
    task: TaskSpec,
    *,
    shots: int = 4,
    limit: int = 32,
    batch_size: int = 8,
    demos: DemoMode = "random",
    seed: int = 0,
    warmup: bool = True,
) -> float:
    """Harness throughput: queries per second of one (shots, seed) run over ``limit`` queries.

    With ``warmup`` one run goes first (its media latents stay cached, as they would in a sweep over seeds),
    so the measured run shows the steady state of a sweep rather than first-touch image decoding.
    """
    model = load_model(model)
    evaluator: Evaluator = make_evaluator(model, task, demos=demos, batch_size=batch_size)
    queries = select_queries(len(evaluator.eval_set), limit)
    if warmup:
        evaluator.run(queries, shots, seed + 1)
    start = time.perf_counter()
    evaluator.run(queries, shots, seed)
    return len(queries) / (time.perf_counter() - start)
