"""The bundled model's card: how it was made, the command, the time, its size and its scores.

The card ends with a machine-readable block (```json) holding the architecture fields and parameter counts, so
a test can check that the card describes the weights that ship beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flamingo_vlm.model.flamingo import Flamingo
from flamingo_vlm.tinyworld.recipe import OPTIONAL_DATASETS

CARD_NAME = "MODEL_CARD.md"
CARD_FIELDS = ("cross_attn_every", "num_latents", "resampler_depth", "resampler_type", "max_frames",
               "spatial_positions", "media_attention", "cross_attn_style", "freeze_lm")


def card_facts(model: Flamingo) -> dict[str, Any]:
    """What the card states about the architecture, read from a loaded model."""
    config = model.config.to_dict()
    return {
        "config": {name: config[name] for name in CARD_FIELDS},
        "parameters": model.num_parameters(),
        "lm": {k: getattr(model.lm.config, k) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                        "num_attention_heads", "vocab_size")},
        "vision": _vision_facts(model),
    }


def _vision_facts(model: Flamingo) -> dict[str, Any]:
    """The vision tower's shape: a ViT's width, depth and patch, or a CNN's stage widths and depths."""
    config = model.vision.tower.config.to_dict()
    keys = ("model_type", "hidden_size", "num_hidden_layers", "patch_size", "embedding_size", "hidden_sizes",
            "depths")
    return {**{k: config[k] for k in keys if k in config}, "image_size": model.vision.image_size}


def _clip_stage_line(clip: dict[str, Any]) -> str:
    """Step 3 of the card's "how it was made": which vision tower, and how it was trained."""
    if clip.get("vision_architecture", "vit") == "resnet":
        tower = f"a ResNet (widths {clip.get('resnet_widths')}, a CNN like the paper's NFNet)"
    else:
        tower = f"a ViT (patch {clip.get('patch_size')}, width {clip.get('vision_width')})"
    altered = [(clip.get("shape_negatives", 0), "one shape word swapped"),
               (clip.get("spatial_negatives", 0), "one position or relation phrase mirrored")]
    said = [f"{count} cop{'y' if count == 1 else 'ies'} of its caption with {change}" for count, change in altered if count]
    extra = f", each image also against {' and '.join(said)}" if said else ""
    gray = clip.get("colourless_fraction", 0.0)
    if gray:
        extra += f"; {gray:.0%} of each batch shown in gray against its caption without colour words"
    return (f"3. a small CLIP-style dual encoder, {tower} and a text transformer, trained contrastively on the "
            f"image-text pairs{_steps_and_lr(clip)}{extra}; its vision tower is kept, frozen;")


def _steps_and_lr(stage: dict[str, Any]) -> str:
    """`` (N steps, lr X)`` from a stage's settings, as far as they say (a recipe.json from before may not)."""
    said = [f"{stage['steps']} steps"] if "steps" in stage else []
    said += [f"lr {stage['lr']}"] if "lr" in stage else []
    return f" ({', '.join(said)})" if said else ""


def _lm_stage_line(lm: dict[str, Any]) -> str:
    """Step 4 of the card's "how it was made": the LM's size and training; its steps matter most (recall appears
    suddenly, after a number of steps that moves with the corpus: docs/tiny-world.md)."""
    size = (f" ({lm['layers']} layers, width {lm['width']})" if "layers" in lm and "width" in lm else "")
    return (f"4. a small Llama{size} trained on the world's text, full of in-context structure{_steps_and_lr(lm)}, "
            "frozen;")


def _bare_lm_recall(recipe: dict[str, Any]) -> str:
    """The LM stage's own recall measure (``probe.lm_recall``, recorded in recipe.json) beside the Flamingo's: what
    the gated dense layers, which act on text too, kept of the frozen LM's recall."""
    bare = recipe.get("lm_recall")
    if not bare:
        return ""
    return (f"; the frozen LM alone, before the Flamingo stage: after its key {100 * bare['adjacent']:.0f}%, after "
            f"`key:` {100 * bare['key_value']:.0f}%, a described shape's name {100 * bare['described']:.0f}%")


def _flamingo_stage_lines(stage: dict[str, Any]) -> list[str]:
    lines = ["5. the Perceiver Resampler and GATED XATTN-DENSE blocks trained by the training engine"]
    pairs_steps, steps = stage.get("pairs_phase_steps", 0), stage.get("steps")
    spatial = stage.get("model", {}).get("spatial_positions", 0)
    defaults = (f"learned spatial embeddings for the {spatial} visual tokens of each frame (an extension: the "
                "paper has none), paper defaults otherwise." if spatial else "paper defaults otherwise.")
    text = next((d for d in stage.get("datasets", []) if d.get("kind") == "text"), None)
    batch = None if text is None else text.get("batch_size", OPTIONAL_DATASETS["text"]["batch_size"])
    also = ("" if text is None else f", with the LM's own text throughout ({batch} documents a "
            "step, no image: the dense layers act on every token and must not unlearn what the frozen LM does)")
    if pairs_steps:
        lines += [f"   first on the image-text pairs alone ({pairs_steps} steps, lr {stage.get('pairs_phase_lr')}), "
                  "then on the", f"   mixture of interleaved documents, image-text pairs and video-text pairs "
                  f"({steps} steps, lr {stage.get('lr')}, cosine){also};", f"   {defaults}"]
    else:
        lines += ["   on the mixture of interleaved documents, image-text pairs and video-text pairs "
                  f"({steps} steps){also}; {defaults}"]
    return lines


def _precision_lines(precision: dict[str, str]) -> list[str]:
    """What each training stage computed in: ``precision: auto`` gives bf16 autocast or, on a CPU that runs bf16
    slower than fp32, fp32; the two give different weights, so the card says which this model had."""
    if not precision:
        return []
    said = ", ".join(f"{stage} {value}" for stage, value in precision.items())
    return [f"Precision of its training stages (autocast; `precision: auto` picks bf16 unless this CPU runs it slower "
            f"than fp32): {said}.", ""]


def write_card(model_dir: Path, recipe: dict[str, Any], results: dict[str, Any] | None,
               table: str | None, notes: str | None = None,
               vision_probe: dict[str, dict[str, float]] | None = None,
               image_reliance: dict[str, float] | None = None,
               lm_copying: dict[str, float] | None = None,
               attribute_reading: dict[str, dict[str, float]] | None = None,
               copy_binding: dict[str, float] | None = None, copy_binding_shots: int = 8,
               lm_recall: dict[str, float] | None = None, lm_recall_pairs: int = 4,
               position_keeping: dict[str, float] | None = None,
               motion_keeping: dict[str, float] | None = None,
               time_order: dict[str, dict[str, float]] | None = None,
               question_binding: dict[str, float] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into ``model_dir``."""
    model = Flamingo.from_pretrained(model_dir)
    facts = card_facts(model)
    seconds = recipe.get("seconds", {})
    total = sum(seconds.values())
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    stages = "\n".join(f"| {stage} | {value / 60:.1f} min |" for stage, value in seconds.items())
    params = facts["parameters"]
    lines = [
        "# tiny-world Flamingo",
        "",
        "A small Flamingo trained by this project's own recipe on its procedurally generated tiny world, so that",
        "`flamingo demo` shows few-shot behaviour on a fresh machine with no downloads. Everything here was made",
        "from scratch, the way the paper made its model:",
        "",
        "1. the world (images, 8-frame videos, captions, questions, interleaved documents) is generated by seed;",
        "2. a byte-level BPE tokenizer with `<image>` and `<|endofchunk|>`;",
        _clip_stage_line(recipe.get("config", {}).get("clip", {})),
        _lm_stage_line(recipe.get("config", {}).get("lm", {})),
        *_flamingo_stage_lines(recipe.get("config", {}).get("flamingo", {})),
        "",
        "Command: `flamingo train tiny-world` (config: `flamingo_vlm/tinyworld/tiny-world.yaml`).",
        "",
        *_precision_lines(recipe.get("precision", {})),
        f"Measured time on a 2-core CPU machine: **{total / 60:.1f} minutes** in all.",
        "",
        "| stage | time |",
        "|---|---|",
        stages,
        "",
        f"Size on disk: {size / 1e6:.1f} MB (weights stored in bf16, loaded as float32).",
        f"Parameters: {params['total']:,} in all, {params['trainable']:,} trained (resampler "
        f"{params['resampler']:,}, cross-attention {params['cross_attn']:,}, new token rows "
        f"{params['new_token_rows']:,}); frozen LM {params['lm']:,}, frozen vision {params['vision']:,}.",
        "",
    ]
    if vision_probe:
        from flamingo_vlm.tinyworld.probe import probe_summary

        lines += ["What the frozen vision encoder encodes (linear probes of its patch features, mean-pooled and "
                  "side by side, the better of the two; trained and scored on disjoint parts of the held-out "
                  "single-object images; `flamingo_vlm.tinyworld.probe`): "
                  + probe_summary(vision_probe) + ".", ""]
    if position_keeping:
        from flamingo_vlm.tinyworld.probe import keeping_summary

        lines += ["Whether the model keeps where an object is (the grid cell of a lone object on fresh images; "
                  "linear probes trained on three quarters of them and scored on the rest; "
                  "`flamingo_vlm.tinyworld.probe.position_keeping`): " + keeping_summary(position_keeping) + ".", ""]
    if motion_keeping:
        from flamingo_vlm.tinyworld.probe import motion_summary

        lines += ["Whether the model keeps which way an object moves (fresh 8-frame clips in which one object moves; "
                  "linear probes trained on three quarters of them and scored on the rest; "
                  "`flamingo_vlm.tinyworld.probe.motion_keeping`): " + motion_summary(motion_keeping) + ".", ""]
    if time_order:
        from flamingo_vlm.tinyworld.probe import time_order_summary

        lines += ["Whether the model reads a clip's frames in order (fresh clips of one event: it picks between a "
                  "caption's ending and the ending of the same clip played backwards, with the frames in order and "
                  "reversed; `flamingo_vlm.tinyworld.probe.time_order`): " + time_order_summary(time_order) + ".",
                  ""]
    if attribute_reading:
        from flamingo_vlm.tinyworld.probe import reading_summary

        lines += ["Whether the model names what the encoder encodes (the same single-object images: the colour word "
                  "it ranks first after `<image>a picture of a`, and the shape word after `<image>a picture of a "
                  "<colour>`; `flamingo_vlm.tinyworld.probe.attribute_reading`): "
                  + reading_summary(attribute_reading) + ".", ""]
    if question_binding:
        from flamingo_vlm.tinyworld.probe import question_binding_summary

        lines += ["Whether the model finds the object a question names (held-out VQA scenes of two or more objects; "
                  "an object whose colour no other has; the shape word it ranks first after `<image>a picture of a "
                  "<colour>`, as its captions say it, and after `<image>Question: what shape is the <colour> "
                  "object? Answer:`; `flamingo_vlm.tinyworld.probe.question_binding`): "
                  + question_binding_summary(question_binding) + ".", ""]
    if image_reliance:
        from flamingo_vlm.tinyworld.probe import reliance_summary

        lines += ["Whether the model reads its images (loss of the first caption of each held-out captioning "
                  "image, one `<image>caption<|endofchunk|>` row each; `flamingo_vlm.tinyworld.probe."
                  "image_reliance`): " + reliance_summary(image_reliance) + ".", ""]
    if lm_copying:
        from flamingo_vlm.tinyworld.probe import copying_summary

        lines += ["Whether the model copies from its context, what few-shot prompts need (text only: the frozen "
                  "LM and the gated dense layers; a run of five made-up words no training text contains, said "
                  "twice; loss per token, first token of each saying left out; "
                  "`flamingo_vlm.tinyworld.probe.in_context_copying`): "
                  + copying_summary(lm_copying) + ".", ""]
    if lm_recall:
        from flamingo_vlm.tinyworld.probe import recall_summary

        lines += ["Whether the model picks a word of its context by what came before it, which naming an image by "
                  "the examples needs (text only, as above; chunks `key value` or `key: value` of made-up words, or "
                  "`a green star. this is a value.`, then one key or description again; the value it ranks first; "
                  "`flamingo_vlm.tinyworld.probe.in_context_recall`): "
                  + recall_summary(lm_recall, lm_recall_pairs) + _bare_lm_recall(recipe) + ".", ""]
    if recipe.get("lm_scene_qa"):
        from flamingo_vlm.tinyworld.probe import scene_qa_summary

        lines += ["What the frozen LM works out about a scene told in words, the reasoning VQA needs with nothing to "
                  "see (the LM alone, before the Flamingo stage: a scene described as the corpus describes it, two "
                  "examples, then a question in the evaluation's `Question: ... Answer:`; the answer it ranks first; "
                  "`flamingo_vlm.tinyworld.probe.lm_scene_qa`): "
                  + scene_qa_summary(recipe["lm_scene_qa"]) + ".", ""]
    if copy_binding:
        from flamingo_vlm.tinyworld.probe import binding_summary

        lines += ["Whether the model binds a made-up word to an image it was just shown, the easiest form of the "
                  "novel-word task (examples `<image>Output: word<|endofchunk|>` from its support set, then an exact "
                  "copy of one example's image; the word it ranks first of the set's words; "
                  "`flamingo_vlm.tinyworld.probe.copy_binding`): "
                  + binding_summary(copy_binding, copy_binding_shots) + ".", ""]
    if table:
        demo = (results or {}).get("demo", {})
        lines += [
            "## Scores on fresh held-out sets",
            "",
            "From `flamingo demo` (seed " + str(demo.get("seed", 0)) + f", {demo.get('limit', '?')} queries per "
            "task and shot count, one seed): the paper's protocol (zero-shot = two text-only demonstrations, "
            "beam 3, random demonstrations from a separate support split). The evaluation formats "
            "(`Question: ... Answer:`, `Output:`) and some question wordings never appear in training; the "
            "made-up words of `novel_words` are bound to shapes only by the prompt's examples. Under each "
            "task's row, its other metrics: VQA accuracy per answer type and per question type (the world's "
            "question kinds; as the official VQAv2 evaluation reports them; yes/no has a chance level of 50, and "
            "each kind is a tenth or so of the queries, so one query moves its number by several points), "
            "video QA accuracy per question type (which way an object moves, its new colour, what appears, what "
            "disappears; a quarter of the queries each; four directions give 25% by chance), captioning's BLEU-4 "
            "and ROUGE-L.",
            "",
            table,
            "",
        ]
    if notes:
        lines += ["## Notes", "", notes, ""]
    lines += ["## Facts (checked against the weights by the tests)", "", "```json",
              json.dumps(facts, indent=1, sort_keys=True), "```", ""]
    path = model_dir / CARD_NAME
    path.write_text("\n".join(lines))
    return path


def read_card_facts(card: Path) -> dict[str, Any]:
    """The JSON block of a card written by ``write_card``.

    A card has exactly one facts block; a second one (say, left behind when notes were pasted in by hand) would
    let the card say two things about one model, so it is an error rather than a silent pick of either.
    """
    text = card.read_text()
    blocks = text.count("```json")
    if blocks != 1:
        raise ValueError(f"{card} has {blocks} ```json facts blocks; a model card has exactly one. Regenerate it "
                         "with `write_card` (or delete the extra block) so the card states one set of facts.")
    start = text.index("```json") + len("```json")
    return json.loads(text[start: text.index("```", start)])
