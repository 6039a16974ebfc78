"""The ``flamingo`` command line. Each subcommand is a typed function; ``flamingo COMMAND --help`` explains it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence


def cmd_info(model: str) -> int:
    """Print a saved model's config and parameter counts."""
    from flamingo_vlm import Flamingo

    flamingo = Flamingo.from_pretrained(model)
    print(json.dumps(flamingo.config.to_dict(), indent=2, sort_keys=True))
    for part, count in flamingo.num_parameters().items():
        print(f"{part:>15}: {count:,}")
    return 0


def cmd_generate(model: str, prompt: str, images: Sequence[str], max_new_tokens: int, num_beams: int,
                 video: Sequence[str] | None = None, dtype: str = "fp32") -> int:
    """Answer one interleaved prompt: each <image> tag takes the next --image (or the --video frames); the weights
    in ``dtype`` (``flamingo_vlm.evaluation.harness.load_model``)."""
    from flamingo_vlm.evaluation.harness import load_model

    flamingo = load_model(model, dtype=dtype)
    media: list = list(images)
    if video:
        media.append(list(video))
    inputs = flamingo.processor(prompt, images=media)
    start = time.perf_counter()
    out = flamingo.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams)
    elapsed = time.perf_counter() - start
    print(flamingo.processor.batch_decode(out)[0])
    print(f"[{out.shape[1]} tokens in {elapsed:.2f}s]", file=sys.stderr)
    return 0


def parse_dotted_overrides(extra: Sequence[str]) -> list[tuple[str, str]]:
    """['--optim.lr', '3e-4', '--steps=10'] -> [('optim.lr', '3e-4'), ('steps', '10')]."""
    pairs, items = [], list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or len(item) == 2:
            raise ValueError(f"Unexpected argument {item!r}; overrides look like --optim.lr 3e-4 or --steps=100.")
        key = item[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif items and not items[0].startswith("--"):
            value = items.pop(0)
        else:
            raise ValueError(f"Override --{key} needs a value.")
        pairs.append((key.replace("-", "_"), value))
    return pairs


def cmd_train(config_path: str, overrides: list[tuple[str, str]], resume: bool, help_config: bool) -> int:
    """Train (or resume) from a YAML config; dotted overrides change single fields."""
    from flamingo_vlm.training.config import describe_fields, load_train_config

    if config_path == "tiny-world" or (config_path or "").endswith("tiny-world.yaml"):
        from flamingo_vlm.tinyworld.recipe import RecipeConfig, load_recipe, run_recipe

        if help_config:
            print("\n".join(describe_fields(RecipeConfig)))
            return 0
        report = run_recipe(load_recipe(None if config_path == "tiny-world" else config_path, overrides))
        print(json.dumps({"model": report["model"], "seconds": report["seconds"]}, indent=1))
        return 0
    if help_config:
        print("\n".join(describe_fields()))
        return 0
    if resume:
        overrides = [*overrides, ("resume", "must")]
    from flamingo_vlm.training.trainer import train

    export = train(load_train_config(config_path, overrides))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"final model: {export}")
    return 0


def cmd_plot(path: str, output: str | None) -> int:
    """Plot a training run folder (loss and gates) or an evaluation results.json (score vs shots) to PNG."""
    if path.endswith(".json"):
        from flamingo_vlm.evaluation.report import plot_results

        print(plot_results(path, output or path[: -len(".json")] + ".png"))
        return 0
    from flamingo_vlm.training.plot import plot_run

    print(plot_run(path, output))
    return 0


def cmd_demo(model: str, tasks: Sequence[str], shots: Sequence[int], seed: int, limit: int, num_beams: int,
             output: str, demos: str = "random", dtype: str = "fp32") -> int:
    """The bundled tiny-world model on fresh held-out images: example prompts, a score table, an HTML page."""
    from flamingo_vlm.tinyworld.demo import run_demo

    run_demo(model, tasks=tuple(tasks), shots=tuple(shots), seed=seed, limit=limit, num_beams=num_beams,
             output=output, demos=demos, dtype=dtype)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from flamingo_vlm.evaluation.cli import DTYPE_HELP, add_eval_arguments
    from flamingo_vlm.evaluation.harness import INFERENCE_DTYPES

    parser = argparse.ArgumentParser(
        prog="flamingo",
        description="Flamingo visual language models: build, prompt, train and evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Models are named by a folder written by Flamingo.save_pretrained or by a bundled name.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="show a model's config and parameter counts")
    info.add_argument("model", help="model folder or bundled model name")

    generate = commands.add_parser(
        "generate", help="answer an interleaved image/text prompt",
        description="Answer one prompt. Put an <image> tag where each image goes; images are taken in order. "
                    "Example: flamingo generate --model DIR --image a.png --image b.png "
                    "--prompt '<image>Output: a cat.<|endofchunk|><image>Output:'",
    )
    generate.add_argument("--model", required=True, help="model folder or bundled model name")
    generate.add_argument("--prompt", required=True, help="the prompt, with one <image> tag per image/video")
    generate.add_argument("--image", action="append", default=[], dest="images", help="an image file (repeatable)")
    generate.add_argument("--video", nargs="+", help="frame files of one video, in order (its tag comes last)")
    generate.add_argument("--max-new-tokens", type=int, default=20, help="generation budget (default 20)")
    generate.add_argument("--num-beams", type=int, default=3, help="beam size; 1 = greedy (default 3, the paper's)")
    generate.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32", help=DTYPE_HELP)

    train = commands.add_parser(
        "train", help="train the new layers on WebDataset shards (one CPU or torchrun + DDP/FSDP2)",
        description="Train from a YAML config. Any field can be overridden with a dotted key: "
                    "flamingo train run.yaml --optim.lr 3e-4 --datasets.0.batch_size 4 --steps 100. "
                    "The same command runs distributed: torchrun --nproc_per_node 8 -m flamingo_vlm.train run.yaml. "
                    "A run resumes automatically from the newest checkpoint in its output_dir. "
                    "`flamingo train tiny-world` runs the whole tiny-world recipe (data, tokenizer, CLIP, LM, "
                    "Flamingo, export); see `flamingo train tiny-world --help-config`.",
    )
    train.add_argument("config", nargs="?", help="YAML training config")
    train.add_argument("--resume", action="store_true", help="fail unless a checkpoint exists to resume from")
    train.add_argument("--help-config", action="store_true", help="list every config field with its meaning")

    data = commands.add_parser(
        "data", help="write WebDataset shards from a local folder or JSONL",
        description="Convert small local data into the shards training reads. KIND is pairs (a folder of "
                    "name.jpg + name.txt, or JSONL of {image, text}), interleaved (JSONL of MMC4-style "
                    "{text_list, image_info}), video (JSONL of {frames | frames_dir, text}) or text (documents with no "
                    "image: a .txt of one document per line, or JSONL of {text}). Corrupt samples are "
                    "skipped and counted. Prints the brace pattern to put in a training config.",
    )
    data.add_argument("kind", choices=["pairs", "interleaved", "video", "text", "tiny-world"],
                      help="sample layout, or tiny-world to generate the whole tiny world")
    data.add_argument("source", help="folder or JSONL file (for tiny-world: the output folder)")
    data.add_argument("out_dir", nargs="?", help="folder for the .tar shards")
    data.add_argument("--seed", type=int, default=0, help="tiny-world: seed of the world (default 0)")
    data.add_argument("--scale", type=float, default=1.0, help="tiny-world: multiplies every dataset size")
    data.add_argument("--samples-per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    data.add_argument("--overwrite", action="store_true", help="replace existing shards in OUT_DIR")

    plot = commands.add_parser("plot", help="plot a training run (loss, gates per layer) or eval results to PNG")
    plot.add_argument("path", help="a training run folder, or a results.json written by flamingo eval")
    plot.add_argument("--output", help="PNG path (default: RUN_DIR/training.png, or results.png)")

    evaluation = commands.add_parser(
        "eval", help="zero/few-shot evaluation with the paper's protocol",
        description="Score a model on a benchmark at several shot counts and seeds, the way the paper and "
                    "OpenFlamingo do. Example: flamingo eval --model DIR --task vqa --questions Q.json "
                    "--annotations A.json --images DIR --shots 0 4 32 --seeds 3 --output results.json",
    )
    add_eval_arguments(evaluation)

    demo_tasks = ("captioning", "vqa", "video_qa", "novel_words")  # flamingo_vlm.tinyworld.demo.DEMO_TASKS
    demo = commands.add_parser(
        "demo", help="see the bundled tiny-world Flamingo learn from examples in its prompt",
        description="Renders fresh held-out tiny-world images, shows prompts answered zero- and few-shot "
                    "(captioning, VQA, video QA, made-up words bound only by the prompt), prints a table of "
                    "scores versus shots and writes an HTML page with the prompts, images and answers.",
    )
    demo.add_argument("--model", default="tiny-world", help="model folder or bundled name (default tiny-world)")
    demo.add_argument("--task", dest="tasks", nargs="+", default=list(demo_tasks), choices=demo_tasks,
                      help="tasks to show (default: all)")
    demo.add_argument("--shots", nargs="+", type=int, default=[0, 4, 8, 16, 32], help="shot counts to score")
    demo.add_argument("--seed", type=int, default=0, help="seed of the fresh world and of the demonstrations")
    demo.add_argument("--limit", type=int, default=24, help="queries per task and shot count (default 24)")
    demo.add_argument("--num-beams", type=int, default=3, help="beam size for open-ended answers (default 3)")
    demo.add_argument("--demos", choices=["random", "rices"], default="random",
                      help="demonstrations: random (default), or RICES, the paper's retrieval: the support images "
                           "most like the query's by the model's vision encoder, most similar last, from 200 per "
                           "task (zero-shot's text-only ones stay random)")
    demo.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32", help=DTYPE_HELP)
    demo.add_argument("--output", default="flamingo-demo.html", help="HTML page to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            if args.config is None and not args.help_config:
                parser.error("flamingo train needs a CONFIG.yaml (see --help-config for its fields)")
            return cmd_train(args.config, parse_dotted_overrides(extra), args.resume, args.help_config)
        if args.command == "data":
            if args.kind == "tiny-world":
                from flamingo_vlm.tinyworld.build import tiny_world_data_command

                return tiny_world_data_command(args.source, args.seed, args.scale)
            if args.out_dir is None:
                parser.error("flamingo data KIND SOURCE OUT_DIR: OUT_DIR is missing")
            from flamingo_vlm.data.shards import data_command

            return data_command(args.kind, args.source, args.out_dir, args.samples_per_shard, args.overwrite)
        if args.command == "eval":
            from flamingo_vlm.evaluation.cli import run_eval_from_args

            return run_eval_from_args(args)
        if args.command == "demo":
            return cmd_demo(args.model, args.tasks, args.shots, args.seed, args.limit, args.num_beams, args.output,
                            args.demos, args.dtype)
        if args.command == "plot":
            return cmd_plot(args.path, args.output)
        if args.command == "info":
            return cmd_info(args.model)
        if args.command == "generate":
            return cmd_generate(args.model, args.prompt, args.images, args.max_new_tokens, args.num_beams,
                                args.video, args.dtype)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
