"""The ``flamingo`` command line. Each subcommand is a typed function; ``flamingo COMMAND --help`` explains it."""

from __future__ import annotations

import argparse
import json
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
                 video: Sequence[str] | None = None) -> int:
    """Answer one interleaved prompt: each <image> tag takes the next --image (or the --video frames)."""
    from flamingo_vlm import Flamingo

    flamingo = Flamingo.from_pretrained(model)
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


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return cmd_info(args.model)
        if args.command == "generate":
            return cmd_generate(args.model, args.prompt, args.images, args.max_new_tokens, args.num_beams,
                                args.video)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
