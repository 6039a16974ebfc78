"""The tiny-world recipe: every stage that makes the bundled model, through the same public code paths a user takes.

    data       flamingo data tiny-world: training shards, LM text corpus, held-out evaluation sets
    tokenizer  byte-level BPE with <image> and <|endofchunk|>
    clip       a small CLIP-style dual encoder (a ResNet, like the paper's NFNet, and a CLIP text tower) trained
               contrastively on the pairs; its vision tower is kept
    lm         a small LlamaForCausalLM trained on the world's text
    flamingo   both frozen; Perceiver Resampler + GATED XATTN-DENSE trained by the training engine on the mixture
    export     a self-contained checkpoint (backbones included, bf16 storage)
    card       the model card: the demo's held-out scores and the recipe's times; then a copy into the package

Each stage skips itself when its output exists, so an interrupted recipe continues where it stopped (the
Flamingo stage resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from flamingo_vlm.tinyworld.pretrain import (PROBE_CURVE_FILE, ClipSettings, LMSettings, pretrain_clip, pretrain_lm,
                                             train_tokenizer)
from flamingo_vlm.training import cpu_precision
from flamingo_vlm.training.config import doc
from flamingo_vlm.training.cpu_precision import PRECISIONS, resolve_precision

if TYPE_CHECKING:  # imported lazily at run time: the recipe's early stages do not need the model package
    from flamingo_vlm.model.flamingo import Flamingo

RECIPE_FILE = Path(__file__).with_name("tiny-world.yaml")
STAGES = ("data", "tokenizer", "clip", "lm", "flamingo", "export", "card")
CARD_BINDING_SHOTS = 8  # examples per prompt of the card's copy-binding probe (probe.copy_binding)
LM_RECALL_FILE = "recall.json"  # the LM stage's probe.lm_recall, next to the LM it measured
LM_SLOT_RECALL_FILE = "slot_recall.json"  # image_slots.lm_slot_recall, when the LM stage trains on image slots
LM_SCENE_QA_FILE = "scene_qa.json"  # the LM stage's probe.lm_scene_qa, next to the LM it measured
CARD_RECALL_PAIRS = 4  # key/value pairs per prompt of the card's text recall probe (probe.in_context_recall)
# Flamingo-stage datasets used only when flamingo.datasets lists their kind: the LM corpus's own documents, no image
# (see DatasetConfig.kind); these are their settings unless the entry says otherwise.
OPTIONAL_DATASETS = {"text": {"name": "text", "batch_size": 4, "max_tokens": 192}}
LM_RECALL_EXPECTED = 0.5  # a described shape's name recalled less often than this: the LM stage warns (chance 25%)
CARD_POSITION_IMAGES = 2000  # fresh lone-object images of the card's position probe (probe.position_keeping),
                             # times data_scale (at least 100)
CARD_MOTION_CLIPS = 1000  # fresh clips of one moving object for the card's motion probe (probe.motion_keeping),
                          # times data_scale (at least 100); about 35 s on a 2-core CPU
CARD_TIME_ORDER_CLIPS = 96  # fresh one-event clips per kind for the card's time-order probe (probe.time_order),
                            # times data_scale (at least 8); about 20 s on a 2-core CPU


@dataclass
class FlamingoStage:
    """The Flamingo training stage (the training engine's own TrainConfig is derived from this)."""

    model: dict[str, Any] = doc("FlamingoConfig fields of the tiny model.", default_factory=dict)
    steps: int = doc("Optimiser steps.", 1500)
    lr: float = doc("Peak learning rate.", 5e-4)
    warmup_steps: int = doc("Linear warm-up steps.", 100)
    schedule: str = doc("constant | cosine | linear after warm-up.", "cosine")
    precision: str = doc("fp32 | bf16 autocast | auto (bf16 unless this CPU runs it slower than fp32).", "bf16")
    frozen_dtype: str = doc(
        "fp32 | bf16 | auto: storage of the frozen LM and encoder (TrainConfig.frozen_dtype); auto = bf16 when the "
        "stage runs bf16, so autocast does not cast every frozen weight again at every step (1.10-1.15x "
        "the tokens/s on a Xeon with AMX).",
        "auto")
    gate_lr_multiplier: float = doc("Learning-rate multiplier of the tanh gates (see OptimConfig).", 1.0)
    ffw_gate_lr_multiplier: float | None = doc(
        "Learning-rate multiplier of the gated dense layers' gates alone (see OptimConfig); None = "
        "gate_lr_multiplier.", None)
    datasets: list[dict[str, Any]] = doc(
        "Per-dataset overrides by kind: batch_size, max_tokens, loss_weight... The mixture always has interleaved, "
        "pairs and video; an entry of kind text adds the LM corpus's documents (no image), in both phases.",
        default_factory=list)
    checkpoint_every: int = doc("Checkpoint period in steps.", 250)
    pairs_phase_steps: int = doc(
        "A first phase on image-text pairs alone, before the mixture (0 = none). With the mixture from the start, "
        "the documents' text loss (which the frozen LM can lower without looking) dominates the clipped gradient "
        "and the visual pathway does not move in a CPU budget; captions cannot be predicted without the image.", 0)
    pairs_phase_lr: float = doc(
        "Constant learning rate of the pairs phase (after a short warm-up). Whether the gates open is decided in "
        "its first few hundred steps: at 2e-3 (gates at 10x) they stayed shut in 1 of 4 seeds, at 1e-3 in none.",
        1e-3)


@dataclass
class RecipeConfig:
    """The whole tiny-world recipe."""

    output_dir: str = doc("Where every stage writes (data/, tokenizer/, clip/, lm/, flamingo/, model/).",
                          "runs/tiny-world")
    seed: int = doc("Seed of the world and of every stage.", 0)
    data_scale: float = doc("Multiplies every dataset size (tests use tiny scales).", 1.0)
    vocab_size: int = doc("BPE vocabulary size.", 2048)
    clip: ClipSettings = doc("The CLIP stage (ClipSettings: widths, steps, lr...).", default_factory=ClipSettings)
    lm: LMSettings = doc("The LM stage (LMSettings: width, layers, steps, lr...).", default_factory=LMSettings)
    flamingo: FlamingoStage = doc("The Flamingo stage.", default_factory=FlamingoStage)
    export_to: str | None = doc("Also copy the final self-contained model here (e.g. the package's assets).",
                                None)
    card_limit: int = doc("Queries per task and shot count for the scores on the model card.", 24)
    stages: list[str] = doc("Stages to run, in order.", default_factory=lambda: list(STAGES))
    progress: bool = doc("Progress bars.", True)


def load_recipe(path: str | Path | None = None, overrides: list[tuple[str, str]] | None = None) -> RecipeConfig:
    from flamingo_vlm.training.config import ConfigError, load_config

    config = load_config(RecipeConfig, path or RECIPE_FILE, overrides)
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    for stage in ("clip", "lm", "flamingo"):
        if getattr(config, stage).precision not in PRECISIONS:
            raise ConfigError(f"{stage}.precision={getattr(config, stage).precision!r}: choose from {list(PRECISIONS)} "
                              "(auto: bf16 autocast unless this CPU runs it slower than fp32)")
    return config


def run_recipe(config: RecipeConfig) -> dict[str, Any]:
    """Run the selected stages; returns paths and per-stage wall times (also written to recipe.json)."""
    from flamingo_vlm.tinyworld.build import build_tiny_world

    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    report_path = root / "recipe.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.is_file() else {"seconds": {}}
    report["config"] = asdict(config)

    def record(stage: str, start: float) -> None:
        report["seconds"][stage] = report["seconds"].get(stage, 0.0) + time.perf_counter() - start
        report_path.write_text(json.dumps(report, indent=1))

    def record_precision(stage: str, precision: str) -> None:
        """The autocast precision a training stage used (``auto`` resolved on this machine), for the card."""
        report.setdefault("precision", {})[stage] = precision
        asked = getattr(config, stage).precision
        print(f"{stage}: precision {precision}" + (" (auto: the faster on this CPU)" if asked == "auto" else ""))
        report_path.write_text(json.dumps(report, indent=1))

    data_dir = root / "data"
    manifest = data_dir / "manifest.json"
    if "data" in config.stages and not manifest.is_file():
        start = time.perf_counter()
        paths = build_tiny_world(data_dir, seed=config.seed, scale=config.data_scale, progress=config.progress)
        manifest.write_text(json.dumps(_jsonable(paths), indent=1))
        record("data", start)
    if not manifest.is_file():
        raise ValueError(f"{manifest} is missing: run the data stage first.")
    paths = json.loads(manifest.read_text())
    report["data"] = paths

    tokenizer_dir = root / "tokenizer"
    if "tokenizer" in config.stages and not (tokenizer_dir / "tokenizer.json").is_file():
        start = time.perf_counter()
        train_tokenizer(_tokenizer_texts(paths), tokenizer_dir, vocab_size=config.vocab_size)
        record("tokenizer", start)
    clip_dir, vision_dir = root / "clip", root / "vision"
    lm_dir = root / "lm"
    tokenizer: PreTrainedTokenizerFast | None = None
    if (("clip" in config.stages and not (vision_dir / "config.json").is_file())
            or ("lm" in config.stages and not (lm_dir / "config.json").is_file())):
        _require(tokenizer_dir / "tokenizer.json", "tokenizer", root)  # only the stages that train need it
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    if tokenizer is not None:  # the CLIP or the LM stage is about to train
        asked_bf16 = [name for name, settings in (("clip", config.clip), ("lm", config.lm))
                      if settings.precision == "bf16"]
        slow = cpu_precision.bf16_slower_note() if asked_bf16 else None
        if slow:
            print(f"recipe: {slow} The {' and '.join(asked_bf16)} stage(s) ask for bf16 (precision: auto would "
                  "take the faster); times on this CPU will exceed the card's.")
    if "clip" in config.stages and not (vision_dir / "config.json").is_file():
        start = time.perf_counter()
        clip_settings = replace(config.clip, precision=resolve_precision(config.clip.precision))
        record_precision("clip", clip_settings.precision)
        pretrain_clip(paths["train"]["pairs"], tokenizer, clip_dir, clip_settings, seed=config.seed,
                      progress=config.progress)
        # The tower with its preprocessor_config.json; copied then renamed, so an interrupted copy is never taken
        # for a finished stage (which is what vision/config.json marks).
        staging = vision_dir.with_name(vision_dir.name + ".tmp")
        for stale in (staging, vision_dir):
            if stale.exists():
                shutil.rmtree(stale)
        shutil.copytree(clip_dir / "vision", staging)
        staging.rename(vision_dir)
        record("clip", start)

    if "lm" in config.stages and not (lm_dir / "config.json").is_file():
        start = time.perf_counter()
        corpus = Path(paths["lm_corpus"]).read_text().splitlines()
        lm_settings = replace(config.lm, precision=resolve_precision(config.lm.precision))
        record_precision("lm", lm_settings.precision)
        from transformers import AutoModelForCausalLM

        from flamingo_vlm.tinyworld.image_slots import lm_slot_recall
        from flamingo_vlm.tinyworld.probe import lm_recall, lm_scene_qa, recall_summary, scene_qa_summary

        pretrain_lm(corpus, tokenizer, lm_dir, lm_settings, seed=config.seed, progress=config.progress,
                    probe=lambda lm: lm_recall(lm, tokenizer, pairs=CARD_RECALL_PAIRS))
        # Whether the LM to be frozen can pick a word of its context by key (probe.lm_recall): few-shot naming
        # needs it, and it appears suddenly in training, so a run whose LM stopped short of it says so here.
        trained_lm = AutoModelForCausalLM.from_pretrained(lm_dir)
        recall = lm_recall(trained_lm, tokenizer, pairs=CARD_RECALL_PAIRS)
        (lm_dir / LM_RECALL_FILE).write_text(json.dumps(recall, indent=1))
        print(f"lm: recall by key, the LM alone: {recall_summary(recall, CARD_RECALL_PAIRS)}")
        # What the LM works out about a scene told in words, VQA's reasoning with nothing to see: what the frozen LM
        # cannot work out from words, the cross-attention alone must work out from pixels.
        scene_qa = lm_scene_qa(trained_lm, tokenizer)
        (lm_dir / LM_SCENE_QA_FILE).write_text(json.dumps(scene_qa, indent=1))
        print(f"lm: questions about a scene told in words, the LM alone: {scene_qa_summary(scene_qa)}")
        if config.lm.image_slots > 0:
            # The look-up the made-up-word task needs through a Flamingo: a word found by a vector added to the
            # input, as the cross-attention adds an image (tinyworld.image_slots).
            slots = lm_slot_recall(trained_lm, tokenizer)
            (lm_dir / LM_SLOT_RECALL_FILE).write_text(json.dumps(slots, indent=1))
            print(f"lm: a word recalled by an added vector, the LM alone: {100 * slots['slot_recall']:.0f}% "
                  f"(chance {100 * slots['chance']:.0f}%)")
        if recall["described"] < LM_RECALL_EXPECTED:
            print(f"lm: WARNING: this LM names a described shape {100 * recall['described']:.0f}% of the time (the "
                  f"bundled model's LM: 98%): recall appears suddenly in training, and whether and when moves with "
                  f"the CPU's arithmetic (on one CPU without AMX this corpus's LM stayed at 17-30% through 2,500 "
                  f"steps), so the Flamingo made on it will copy and caption less well (there: CIDEr 229-251 "
                  f"against the bundled model's 260-277). Deleting {lm_dir} and rerunning with more LM steps "
                  f"(--lm.steps {config.lm.steps + 500}) may bring it.")
        record("lm", start)
    if (lm_dir / LM_RECALL_FILE).is_file():
        report["lm_recall"] = json.loads((lm_dir / LM_RECALL_FILE).read_text())
    if (lm_dir / LM_SCENE_QA_FILE).is_file():
        report["lm_scene_qa"] = json.loads((lm_dir / LM_SCENE_QA_FILE).read_text())
    if (lm_dir / PROBE_CURVE_FILE).is_file():  # with lm.probe_every: recall along the LM stage
        report["lm_recall_curve"] = json.loads((lm_dir / PROBE_CURVE_FILE).read_text())

    run_dir = root / "flamingo"
    if "flamingo" in config.stages and not (run_dir / "final" / "config.json").is_file():
        from flamingo_vlm.training.config import load_train_config
        from flamingo_vlm.training.trainer import train

        _require(lm_dir / "config.json", "lm", root)
        _require(vision_dir / "config.json", "clip", root)
        start = time.perf_counter()
        values = flamingo_train_values(config, paths["train"], lm_dir, vision_dir, run_dir)
        record_precision("flamingo", values["precision"])
        if config.flamingo.pairs_phase_steps > 0:
            phase_dir = run_dir / "pairs-phase"
            if not (phase_dir / "final" / "config.json").is_file():
                train(load_train_config(values=pairs_phase_values(config, values, phase_dir)))
            values["model"] = {"from_pretrained": str(phase_dir / "final")}
        train(load_train_config(values=values))
        record("flamingo", start)

    model_dir = root / "model"
    if "export" in config.stages:
        _require(run_dir / "final" / "config.json", "flamingo", root)
        start = time.perf_counter()
        export_model(run_dir / "final", model_dir, config, report)
        record("export", start)
    if "card" in config.stages:
        _require(model_dir / "config.json", "export", root)
        from flamingo_vlm.evaluation.report import markdown_table
        from flamingo_vlm.tinyworld.card import write_card
        from flamingo_vlm.tinyworld.demo import run_demo

        start = time.perf_counter()
        results = run_demo(str(model_dir), output=root / "demo.html", progress=False, limit=config.card_limit)
        from flamingo_vlm import Flamingo
        from flamingo_vlm.tinyworld.probe import (
            attribute_reading,
            image_reliance,
            in_context_copying,
            in_context_recall,
            motion_keeping,
            position_keeping,
            time_order,
        )

        exported = Flamingo.from_pretrained(model_dir)  # one load for the diagnostics
        vision_probe = _probe_if_enough_images(exported, paths)
        reading = attribute_reading(exported, _single_object_folders(paths)) if vision_probe else None
        reliance = image_reliance(exported, paths["eval"]["coco"]["eval"]["captions"])
        copying = in_context_copying(exported)
        recall = in_context_recall(exported, pairs=CARD_RECALL_PAIRS)
        binding = _binding_if_enough_images(exported, paths)
        asked = _question_binding_if_enough_scenes(exported, paths)
        keeping = position_keeping(exported, images=max(100, round(CARD_POSITION_IMAGES * config.data_scale)))
        motion = motion_keeping(exported, clips=max(100, round(CARD_MOTION_CLIPS * config.data_scale)))
        order = time_order(exported, clips_per_kind=max(8, round(CARD_TIME_ORDER_CLIPS * config.data_scale)))
        record("card", start)
        card_report = {**report, "seconds": {k: v for k, v in report["seconds"].items() if k != "card"}}
        write_card(model_dir, card_report, results, markdown_table(results, metrics=True),
                   vision_probe=vision_probe, image_reliance=reliance, lm_copying=copying, attribute_reading=reading,
                   copy_binding=binding, copy_binding_shots=CARD_BINDING_SHOTS, lm_recall=recall,
                   lm_recall_pairs=CARD_RECALL_PAIRS, position_keeping=keeping, motion_keeping=motion,
                   time_order=order, question_binding=asked)
    if config.export_to and model_dir.is_dir():
        target = Path(config.export_to)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target)
    report["model"] = str(model_dir)
    report_path.write_text(json.dumps(report, indent=1))
    return report


def flamingo_train_values(config: RecipeConfig, shards: dict[str, str], lm_dir: Path, vision_dir: Path,
                          run_dir: Path) -> dict[str, Any]:
    """The training engine's config for the Flamingo stage."""
    stage = config.flamingo
    defaults = {
        "interleaved": {"name": "documents", "batch_size": 16, "max_tokens": 192, "max_media": 5},
        "pairs": {"name": "pairs", "batch_size": 32, "max_tokens": 64},
        "video": {"name": "video", "batch_size": 8, "max_tokens": 64},
    }
    optional = {kind: dict(values) for kind, values in OPTIONAL_DATASETS.items()}
    for override in stage.datasets:
        kind = override.get("kind")
        if kind in optional:
            defaults[kind] = optional[kind]
            if kind not in shards:
                raise ValueError(f"flamingo.datasets lists {kind!r} but this run's data has no {kind} shards (its "
                                 f"data stage predates them): rerun the data stage in a fresh --output_dir.")
        if kind not in defaults:
            raise ValueError(f"flamingo.datasets: each entry needs a kind among {list(defaults) + list(optional)}, "
                             f"got {override}")
        defaults[kind].update({k: v for k, v in override.items() if k != "kind"})
    datasets = [{"kind": kind, "shards": shards[kind], "shuffle_buffer": 2000, **values}
                for kind, values in defaults.items()]
    precision = resolve_precision(stage.precision)  # on a CPU; the trainer would resolve auto the same way
    if stage.frozen_dtype not in ("fp32", "bf16", "auto"):
        raise ValueError(f"flamingo.frozen_dtype must be fp32, bf16 or auto, got {stage.frozen_dtype!r}")
    frozen_dtype = {"auto": "bf16" if precision == "bf16" else "fp32"}.get(stage.frozen_dtype, stage.frozen_dtype)
    return {
        "output_dir": str(run_dir),
        "model": {"lm": str(lm_dir), "vision": str(vision_dir), "config": dict(stage.model)},
        "datasets": datasets,
        "optim": {"lr": stage.lr, "warmup_steps": stage.warmup_steps, "schedule": stage.schedule,
                  "gate_lr_multiplier": stage.gate_lr_multiplier,
                  "ffw_gate_lr_multiplier": stage.ffw_gate_lr_multiplier},
        "steps": stage.steps,
        "precision": precision,
        "frozen_dtype": frozen_dtype,
        "seed": config.seed,
        "checkpoint_every": stage.checkpoint_every,
        "keep_last": 1,
        "log_every": 10,
        "progress": config.progress,
    }


def _probe_if_enough_images(model: Flamingo, paths: dict[str, Any]) -> dict[str, Any] | None:
    """The card's vision probe, on the world's single-object sets; None (and said) when they are too small."""
    from flamingo_vlm.tinyworld.probe import probe_vision

    folders = _single_object_folders(paths)
    count = sum(len(Path(f, "records.jsonl").read_text().splitlines()) for f in folders)
    if count < 20:
        print(f"card: vision probe skipped ({count} single-object images; it needs at least 20)")
        return None
    return probe_vision(model, folders)


def _binding_if_enough_images(model: Flamingo, paths: dict[str, Any]) -> dict[str, float] | None:
    """The card's copy-binding probe on the novel-word support set; None (and said) when it is too small."""
    from flamingo_vlm.tinyworld.probe import copy_binding

    support = paths["eval"]["novel_words"]["support"]
    annotations = Path(support["jsonl"])
    count = len(annotations.read_text().splitlines())
    if count < CARD_BINDING_SHOTS:
        print(f"card: copy-binding probe skipped ({count} novel-word support images; it needs "
              f"{CARD_BINDING_SHOTS})")
        return None
    return copy_binding(model, annotations, support["classes"], shots=CARD_BINDING_SHOTS)


def _question_binding_if_enough_scenes(model: Flamingo, paths: dict[str, Any]) -> dict[str, float] | None:
    """The card's question-binding probe on the held-out VQA scenes; None (and said) when there are too few."""
    from flamingo_vlm.tinyworld.probe import question_binding

    folder = Path(paths["eval"]["vqa"]["eval"]["questions"]).parent
    try:
        return question_binding(model, folder)
    except ValueError as error:  # a tiny data_scale can leave too few scenes with an object of a colour of its own
        print(f"card: question-binding probe skipped ({error})")
        return None


def _single_object_folders(paths: dict[str, Any]) -> list[Path]:
    shapes = paths.get("eval", {}).get("shapes", {})
    return [Path(shapes[split]["records"]).parent for split in ("eval", "support") if split in shapes]


def _require(path: Path, stage: str, root: Path) -> None:
    """Fail clearly when a selected stage needs the output of a stage that has not run in ``root``."""
    if not path.is_file():
        raise ValueError(f"{path} is missing: the {stage!r} stage has not run in {root}. Run it first (add "
                         f"{stage!r} to --stages, or run the whole recipe), or pick another --output_dir.")


def pairs_phase_values(config: RecipeConfig, mixture: dict[str, Any], phase_dir: Path) -> dict[str, Any]:
    """The first Flamingo phase: the mixture's model and pairs dataset (weight 1) and any text dataset (its own
    weight: the dense layers must not unlearn the LM's text from the first step), at a constant learning rate."""
    stage = config.flamingo
    datasets = [{**d, "loss_weight": 1.0} if d["kind"] == "pairs" else d
                for d in mixture["datasets"] if d["kind"] in ("pairs", "text")]
    return {**mixture, "output_dir": str(phase_dir), "datasets": datasets,
            "steps": stage.pairs_phase_steps,
            "optim": {**mixture["optim"], "lr": stage.pairs_phase_lr, "schedule": "constant",
                      "warmup_steps": min(stage.warmup_steps, stage.pairs_phase_steps)}}


def export_model(final_dir: Path, model_dir: Path, config: RecipeConfig, report: dict[str, Any]) -> None:
    """Self-contained copy of the trained model (backbones inside) plus the recipe's provenance."""
    from flamingo_vlm import Flamingo

    model = Flamingo.from_pretrained(final_dir)
    model.config.extra = {"recipe": "flamingo train tiny-world", "seed": config.seed,
                          # the stages that made the weights (a rerun's report also holds an earlier card stage)
                          "stage_seconds": {stage: seconds for stage, seconds in report.get("seconds", {}).items()
                                            if stage in STAGES[: STAGES.index("export")]}}
    if model_dir.exists():
        shutil.rmtree(model_dir)
    # bf16 storage halves the files (the bundled model must stay small); loading casts back to float32.
    model.save_pretrained(model_dir, self_contained=True, dtype=torch.bfloat16)


def _tokenizer_texts(paths: dict[str, Any]) -> list[str]:
    texts = Path(paths["tokenizer_text"]).read_text().splitlines()
    return [t for t in texts if t.strip()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
