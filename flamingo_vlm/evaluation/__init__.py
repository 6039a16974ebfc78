"""Zero/few-shot evaluation of Flamingo models with the paper's protocol.

Python API::

    from flamingo_vlm.evaluation import VQATask, evaluate
    entry = evaluate("path/to/model", VQATask(questions=..., annotations=..., images=..., name="okvqa"),
                     shots=[0, 4, 32], seeds=3, demos="rices", limit=1000, batch_size=16)

Modules: ``datasets`` (benchmark formats -> typed examples), ``prompts`` (templates, demonstrations),
``specs`` (one dataclass per task), ``demos`` (random / RICES demonstrations, feature cache), ``batching``
(tokenisation and cached media latents), ``tasks`` (one evaluator per task), ``harness`` (the sweep),
``report`` (markdown table, overall score, plot), ``cli`` (``flamingo eval``), ``metrics``.

Names are imported lazily so that ``import flamingo_vlm.evaluation.metrics`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flamingo_vlm.evaluation.datasets import DataFormatError
    from flamingo_vlm.evaluation.harness import evaluate, evaluate_suite, measure_queries_per_second, save_results
    from flamingo_vlm.evaluation.report import markdown_table, overall_scores, plot_results
    from flamingo_vlm.evaluation.specs import (
        CaptioningTask,
        ClassificationTask,
        RetrievalTask,
        TaskSpec,
        VideoQATask,
        VQATask,
        hateful_memes_task,
        task_from_dict,
    )

_EXPORTS = {
    "DataFormatError": "datasets",
    "evaluate": "harness",
    "evaluate_suite": "harness",
    "measure_queries_per_second": "harness",
    "save_results": "harness",
    "markdown_table": "report",
    "overall_scores": "report",
    "plot_results": "report",
    "CaptioningTask": "specs",
    "ClassificationTask": "specs",
    "RetrievalTask": "specs",
    "TaskSpec": "specs",
    "VideoQATask": "specs",
    "VQATask": "specs",
    "hateful_memes_task": "specs",
    "task_from_dict": "specs",
}

__all__ = [
    "CaptioningTask",
    "ClassificationTask",
    "DataFormatError",
    "RetrievalTask",
    "TaskSpec",
    "VQATask",
    "VideoQATask",
    "evaluate",
    "evaluate_suite",
    "hateful_memes_task",
    "markdown_table",
    "measure_queries_per_second",
    "overall_scores",
    "plot_results",
    "save_results",
    "task_from_dict",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flamingo_vlm.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flamingo_vlm.evaluation.{module}"), name)
