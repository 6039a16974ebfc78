"""``flamingo eval``: flags, suite files, and the run that writes ``results.json``.

The main CLI (``flamingo_vlm/cli.py``) calls :func:`add_eval_arguments` on its ``eval`` subparser and
:func:`run_eval_from_args` with the parsed arguments.

One task from flags::

    flamingo eval --model DIR --task vqa --name okvqa --questions Q.json --annotations A.json --images DIR \\
        --shots 0 4 8 16 32 --seeds 3 --output results.json

Several tasks from a suite file (``--suite FILE.yaml``, or ``FILE.yaml:NAME`` for one of its named lists)::

    model: path/to/model            # optional; --model wins
    shots: [0, 4, 8, 16, 32]        # optional sweep settings: shots, seeds, demos, limit, batch_size
    suites: {dev: [coco, okvqa]}    # optional named task lists
    tasks:
      - {task: captioning, name: coco, annotations: karpathy/dataset_coco.json, images: coco, split: test}
      - {task: vqa, name: okvqa, questions: q.json, annotations: a.json, images: coco/val2014}

Relative paths in a suite are relative to the suite file. Flags given on the command line override the
suite's sweep settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

from flamingo_vlm.evaluation.harness import (DEFAULT_SHOTS, INFERENCE_DTYPES, evaluate_suite, load_model, save_results,
                                             weights_dtype)
from flamingo_vlm.evaluation.report import load_reference_scores, markdown_table
from flamingo_vlm.evaluation.specs import TASK_TYPES, TaskSpec, spec_class, task_from_dict

__all__ = ["add_eval_arguments", "load_suite", "run_eval_from_args", "specs_from_args"]

# Flag dest -> task spec field, for the per-task data and protocol flags.
_TASK_FLAGS = (
    "name", "annotations", "questions", "images", "videos", "image_pattern", "image_split", "split", "class_names",
    "support_annotations", "support_questions", "support_images", "support_videos", "support_image_split",
    "support_split", "max_frames", "prompt_template", "answer_template", "max_new_tokens", "num_beams",
    "caption_tokenizer", "vqa_protocol", "reduction", "ensembles",
)
# Sweep settings a suite file may set and flags override.
_SWEEP_KEYS = ("shots", "seeds", "demos", "limit", "batch_size")
_SWEEP_DEFAULTS: dict[str, Any] = {"shots": list(DEFAULT_SHOTS), "seeds": 3, "demos": "random", "limit": None,
                                   "batch_size": 8}


DTYPE_HELP = ("weights' dtype: fp32 (default), bf16 (half the memory; faster on GPUs and on CPUs with fast bf16, "
              "much slower on others), or auto (bf16 where it is not the slower, measured once)")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``flamingo eval`` flags to ``parser``."""
    run = parser.add_argument_group("what to evaluate")
    run.add_argument("--model", help="model folder or bundled model name (or 'model:' in the suite file)")
    run.add_argument("--task", choices=sorted(TASK_TYPES), help="one task, its data given by the flags below")
    run.add_argument("--suite", metavar="FILE.yaml[:NAME]",
                     help="a YAML file listing tasks with their data and options; FILE.yaml:NAME runs its named list")
    run.add_argument("--name", help="the task's name in the results (e.g. okvqa; default: the task type); the "
                                    "overall score matches reference scores by this name")

    sweep = parser.add_argument_group("sweep (defaults: the paper's protocol)")
    sweep.add_argument("--shots", type=int, nargs="+", help="shot counts (default 0 4 8 16 32; 0 = two text-only "
                                                            "demonstrations)")
    sweep.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default 3); mean and std over them")
    sweep.add_argument("--demos", choices=["random", "rices"],
                       help="demonstrations: random per seed, or RICES by vision features, most similar last (default "
                            "random); zero-shot's two text-only ones are random either way")
    sweep.add_argument("--limit", type=int, help="evaluate N queries: the first N after a fixed seed-0 shuffle, the "
                                                 "same for every seed (default: all)")
    sweep.add_argument("--batch-size", type=int, help="queries per model call (default 8)")
    sweep.add_argument("--output", default="results.json", help="results file (default results.json)")
    sweep.add_argument("--cache-dir", help="RICES feature cache (default ~/.cache/flamingo_vlm/rices)")
    sweep.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    sweep.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32", help=DTYPE_HELP)
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    sweep.add_argument("--overall", action="store_true",
                       help="add the normalised overall score (mean of score / reference score per task)")
    sweep.add_argument("--reference-scores", help="YAML of reference scores (default: the bundled table)")

    data = parser.add_argument_group("data (VQA: --questions --annotations --images; others: --annotations ...)")
    data.add_argument("--annotations", help="annotation file: COCO/Karpathy captions JSON or JSONL, VQA annotations "
                                            "JSON, classification/HatefulMemes JSONL, video QA JSON")
    data.add_argument("--questions", help="VQA questions JSON (VQAv2 layout)")
    data.add_argument("--images", help="image folder (default for captions/classification: the annotation's folder)")
    data.add_argument("--videos", help="video QA: folder that frame folders/files are relative to")
    data.add_argument("--image-pattern", help="image file name from the id, e.g. '{image_id}.png' (VQA default "
                                              "'COCO_{split}_{image_id:012d}.jpg')")
    data.add_argument("--image-split", help="VQA: the {split} of --image-pattern (default: the questions' "
                                            "data_subtype, e.g. val2014)")
    data.add_argument("--split", help="Karpathy split to evaluate (e.g. test); default all images")
    data.add_argument("--class-names", help="classification: class names, one per line (or a JSON list)")
    data.add_argument("--support-annotations", help="demonstrations' annotations (default: the evaluated set; "
                                                    "a query never sees its own example)")
    data.add_argument("--support-questions", help="VQA: demonstrations' questions JSON")
    data.add_argument("--support-images", help="demonstrations' image folder (default --images)")
    data.add_argument("--support-videos", help="video QA: demonstrations' video folder (default --videos)")
    data.add_argument("--support-image-split", help="VQA: {split} for the demonstrations' images")
    data.add_argument("--support-split", help="Karpathy split the demonstrations come from (e.g. train)")
    data.add_argument("--max-frames", type=int, help="video QA: frames per video, sampled uniformly (default: the "
                                                     "model's maximum)")

    protocol = parser.add_argument_group("prompts and decoding (defaults: the paper's, per task)")
    protocol.add_argument("--prompt-template", help="per-example prompt with one <image>, e.g. "
                                                    "'<image>Question: {question} Answer:'")
    protocol.add_argument("--answer-template", help="what a demonstration adds (and close-ended candidates are), "
                                                    "e.g. ' {answer}'; <|endofchunk|> is appended to demonstrations")
    protocol.add_argument("--max-new-tokens", type=int, help="open-ended tasks: generation budget (captioning 20, "
                                                             "VQA 5)")
    protocol.add_argument("--num-beams", type=int, help="open-ended tasks: beam size (default 3)")
    protocol.add_argument("--caption-tokenizer", choices=["auto", "ptb", "python"],
                          help="captioning metrics tokenizer: ptb (Java), python, auto (ptb when Java is found)")
    protocol.add_argument("--vqa-protocol", choices=["openflamingo", "official"], help="VQA answer normalisation")
    protocol.add_argument("--reduction", choices=["mean", "sum"],
                          help="close-ended: rank by mean (default) or summed token log-likelihood")
    protocol.add_argument("--ensembles", type=int, help="close-ended: average over this many demonstration orderings")


def load_suite(reference: str) -> tuple[list[TaskSpec], dict[str, Any]]:
    """Tasks and sweep settings from ``FILE.yaml`` or ``FILE.yaml:NAME`` (see the module docstring).

    Raises:
        ValueError: a missing or malformed file, an unknown suite name, a malformed task entry (naming the
            file, the entry index and the field).
    """
    if Path(reference).expanduser().is_file() or ":" not in reference:
        path_text, suite_name = reference, ""
    else:
        path_text, _, suite_name = reference.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: suite file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise ValueError(f"{path}: a suite needs a non-empty 'tasks' list")
    unknown = set(data) - {"tasks", "suites", "model", *_SWEEP_KEYS}
    if unknown:
        raise ValueError(f"{path}: unknown top-level field(s) {sorted(unknown)}; valid: tasks, suites, model, "
                         f"{', '.join(_SWEEP_KEYS)}")
    specs = [task_from_dict(entry, path.parent, source=f"{path}: tasks[{index}]")
             for index, entry in enumerate(data["tasks"])]
    if suite_name:
        suites = data.get("suites")
        if not isinstance(suites, dict) or suite_name not in suites:
            available = sorted(suites) if isinstance(suites, dict) else []
            raise ValueError(f"{path}: no suite named {suite_name!r} under 'suites' (available: {available})")
        wanted = suites[suite_name]
        by_name = {spec.name: spec for spec in specs}
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise ValueError(f"{path}: suite {suite_name!r} names unknown task(s) {missing}; tasks: {sorted(by_name)}")
        specs = [by_name[name] for name in wanted]
    settings = {key: data[key] for key in (*_SWEEP_KEYS, "model") if key in data}
    if isinstance(settings.get("model"), str) and (path.parent / settings["model"]).is_dir():
        settings["model"] = str(path.parent / settings["model"])  # a relative model folder, like the data paths
    return specs, settings


def specs_from_args(args: argparse.Namespace) -> tuple[list[TaskSpec], dict[str, Any]]:
    """The task specs and suite settings the parsed flags ask for (``--task`` with data flags, or ``--suite``)."""
    given = {key: getattr(args, key, None) for key in _TASK_FLAGS}
    given = {key: value for key, value in given.items() if value is not None}
    if args.suite and args.task:
        raise ValueError("give either --task (with data flags) or --suite, not both")
    if args.suite:
        if given:
            flags = ", ".join("--" + key.replace("_", "-") for key in given)
            raise ValueError(f"{flags}: per-task flags do not apply to --suite; set them in the suite file")
        return load_suite(args.suite)
    if not args.task:
        raise ValueError("say what to evaluate: --task TASK with its data flags, or --suite FILE.yaml")
    valid = {f.name for f in dataclasses.fields(spec_class(args.task))}
    wrong = [key for key in given if key not in valid]
    if wrong:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        raise ValueError(f"{flags} do(es) not apply to --task {args.task}")
    return [task_from_dict({"task": args.task, **given}, Path.cwd(), source="command line")], {}


def run_eval_from_args(args: argparse.Namespace) -> int:
    """Run ``flamingo eval``: evaluate, write the results JSON, print the markdown table. Returns the exit code
    (0, or 2 after printing an error for bad data, options or files)."""
    try:
        specs, suite = specs_from_args(args)
        sweep = {key: suite.get(key, default) for key, default in _SWEEP_DEFAULTS.items()}
        for key in _SWEEP_KEYS:
            if getattr(args, key, None) is not None:
                sweep[key] = getattr(args, key)
        model_name = args.model or suite.get("model")
        if not model_name:
            raise ValueError("--model is required (or 'model:' in the suite file)")
        reference = load_reference_scores(args.reference_scores) if args.overall else None
        device = args.device or _default_device()
        model = load_model(str(model_name), device=device, dtype=args.dtype)
        results = evaluate_suite(model, specs, model_name=str(model_name), shots=sweep["shots"],
                                 seeds=sweep["seeds"], demos=sweep["demos"], limit=sweep["limit"],
                                 batch_size=sweep["batch_size"], cache_dir=args.cache_dir,
                                 progress=not args.no_progress)
        for task in results["tasks"]:
            task["settings"]["device"] = device
            task["settings"]["dtype"] = weights_dtype(model)
        output = save_results(results, args.output)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(results, overall=args.overall, reference=reference, metrics=True))
    print(f"\nresults written to {output}", file=sys.stderr)
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    """``python -m flamingo_vlm.evaluation.cli ...``: the same as ``flamingo eval ...``."""
    parser = argparse.ArgumentParser(prog="flamingo eval", description="Zero/few-shot evaluation of a Flamingo.")
    add_eval_arguments(parser)
    return run_eval_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
