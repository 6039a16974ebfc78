"""Presenting results: a markdown table, the paper's normalised overall score, and a score-versus-shots plot.

The overall score (Flamingo, Sec. 3.3 / Table 3) is, per shot count, the mean over tasks of
``100 * score / reference score`` where the reference is the task's fine-tuned state of the art. The
reference table lives in ``reference_scores.yaml`` next to this module; a task counts only when its name
(or an alias) is in the table and its metric matches the table's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "REFERENCE_SCORES_PATH",
    "ReferenceScore",
    "load_reference_scores",
    "load_results",
    "markdown_table",
    "overall_scores",
    "plot_results",
]

REFERENCE_SCORES_PATH = Path(__file__).with_name("reference_scores.yaml")


@dataclass(frozen=True)
class ReferenceScore:
    """The score a task is normalised by."""

    task: str
    metric: str
    score: float
    source: str = ""


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def load_reference_scores(path: str | os.PathLike | None = None) -> dict[str, ReferenceScore]:
    """``{normalised task name or alias: ReferenceScore}`` from a YAML file laid out as::

        tasks:
          coco: {metric: CIDEr, score: 143.3, aliases: [coco_captions], source: "..."}

    Names match ignoring case and punctuation (``OK-VQA`` = ``okvqa``).

    Raises:
        ValueError: a missing file or a malformed entry (naming the file and the task).
    """
    path = Path(path) if path is not None else REFERENCE_SCORES_PATH
    if not path.is_file():
        raise ValueError(f"{path}: reference score file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise ValueError(f"{path}: expected a top-level 'tasks' mapping")
    table: dict[str, ReferenceScore] = {}
    for name, entry in tasks.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str) \
                or not isinstance(entry.get("score"), (int, float)) or entry["score"] <= 0:
            raise ValueError(f"{path}: task {name!r} needs 'metric' (string) and 'score' (positive number)")
        reference = ReferenceScore(str(name), entry["metric"], float(entry["score"]), str(entry.get("source", "")))
        for alias in [name, *entry.get("aliases", [])]:
            table[_key(str(alias))] = reference
    return table


def load_results(results: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A results dict, or the ``results.json`` file holding one (checked to have the expected layout)."""
    if isinstance(results, Mapping):
        data: Any = dict(results)
        source = "results"
    else:
        path = Path(results)
        if not path.is_file():
            raise ValueError(f"{path}: results file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        source = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ValueError(f"{source}: expected an object with a 'tasks' list (written by flamingo eval)")
    for index, task in enumerate(data["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("results"), list) or "task" not in task:
            raise ValueError(f"{source}: tasks[{index}] needs 'task' and a 'results' list")
        for number, row in enumerate(task["results"]):
            if not isinstance(row, dict) or not {"shots", "score"} <= set(row):
                raise ValueError(f"{source}: tasks[{index}].results[{number}] needs 'shots' and 'score'")
    return data


def overall_scores(
    results: Mapping[str, Any] | str | os.PathLike,
    reference: Mapping[str, ReferenceScore] | None = None,
) -> dict[int, dict[str, Any]]:
    """Per shot count: ``{"score": mean of 100 * score / reference, "tasks": [names used]}``.

    Tasks without a reference (or with another metric) are left out; shot counts no task can be normalised
    for are absent.
    """
    data = load_results(results)
    table = reference if reference is not None else load_reference_scores()
    normalised: dict[int, list[tuple[str, float]]] = {}
    for task in data["tasks"]:
        ref = table.get(_key(str(task["task"])))
        if ref is None or _key(ref.metric) != _key(str(task.get("metric", ref.metric))):
            continue
        for row in task["results"]:
            normalised.setdefault(int(row["shots"]), []).append((str(task["task"]), 100.0 * row["score"] / ref.score))
    return {k: {"score": sum(v for _, v in rows) / len(rows), "tasks": [name for name, _ in rows]}
            for k, rows in sorted(normalised.items())}


def markdown_table(results: Mapping[str, Any] | str | os.PathLike, *, overall: bool = False,
                   reference: Mapping[str, ReferenceScore] | None = None, metrics: bool = False) -> str:
    """A markdown table: one row per task, one column per shot count, cells ``mean ± std`` over seeds.

    A result from one seed (``per_seed`` of length 1) shows its score alone: a spread of 0.00 would claim a
    certainty one seed cannot give.

    With ``metrics`` each task's other metrics follow its row, one row each (VQA accuracy per answer type,
    captioning's BLEU-4 and ROUGE-L, ...). With ``overall`` a last row gives the normalised overall score
    (:func:`overall_scores`).
    """
    data = load_results(results)
    shots = sorted({int(row["shots"]) for task in data["tasks"] for row in task["results"]})
    header = "| task | metric | " + " | ".join(f"{k}-shot" for k in shots) + " |"
    lines = [header, "|" + "---|" * (len(shots) + 2)]
    for task in data["tasks"]:
        by_shots = {int(row["shots"]): row for row in task["results"]}
        cells = []
        for k in shots:
            row = by_shots.get(k)
            cells.append("" if row is None else _cell(row))
        lines.append(f"| {task['task']} | {task.get('metric', '')} | " + " | ".join(cells) + " |")
        if metrics:
            names = list(dict.fromkeys(name for row in task["results"] for name in row.get("metrics", {})))
            for name in names:
                cells = []
                for k in shots:
                    value = by_shots.get(k, {}).get("metrics", {}).get(name)
                    cells.append("" if value is None else _cell(value))
                lines.append(f"| {task['task']} | {name} | " + " | ".join(cells) + " |")
    if overall:
        scores = overall_scores(data, reference)
        cells = [f"{scores[k]['score']:.2f}" if k in scores else "" for k in shots]
        lines.append("| overall (% of reference) | normalised | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(result: Mapping[str, Any]) -> str:
    """``score ± std``, or the score alone when it comes from a single seed."""
    seeds = result.get("per_seed")
    if seeds is not None and len(seeds) < 2:
        return f"{result['score']:.2f}"
    return f"{result['score']:.2f} ± {result.get('std', 0.0):.2f}"


def plot_results(results_json: str | os.PathLike | Mapping[str, Any], output_png: str | os.PathLike) -> Path:
    """Draw score versus number of shots, one line per task (error bars: std over seeds); returns the PNG path.

    Raises:
        ValueError: a missing or malformed results file.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (servers, CI)
    import matplotlib.pyplot as plt

    data = load_results(results_json)
    output = Path(output_png)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    try:
        for task in data["tasks"]:
            rows = sorted(task["results"], key=lambda row: row["shots"])
            axis.errorbar([row["shots"] for row in rows], [row["score"] for row in rows],
                          yerr=[row.get("std", 0.0) for row in rows], marker="o", capsize=3,
                          label=f"{task['task']} ({task.get('metric', 'score')})")
        shots = sorted({int(row["shots"]) for task in data["tasks"] for row in task["results"]})
        axis.set_xticks(shots)
        axis.set_xlabel("shots")
        axis.set_ylabel("score")
        axis.set_title(f"Few-shot results: {data.get('model', '')}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(output, dpi=120)
    finally:
        plt.close(figure)
    return output
