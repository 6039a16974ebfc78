"""Training configuration: nested dataclasses loaded from YAML, overridable with dotted command-line keys.

Every field carries its documentation in ``metadata["help"]``; ``flamingo train --help-config`` prints them all.
Defaults are the paper's (App. B.1.2): AdamW, lr warm-up 0 -> 1e-4 over 5,000 steps then constant, global-norm
clipping at 1.0, weight decay 0.1 except on the Perceiver Resampler, loss weights 1.0 / 0.2 / 0.03 for
interleaved documents / image-text pairs / video-text pairs, gradients accumulated over all datasets every step.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


def doc(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its documentation attached."""
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(metadata={"help": text}, **kwargs)


DEFAULT_LOSS_WEIGHTS = {"interleaved": 1.0, "pairs": 0.2, "video": 0.03, "text": 1.0}


@dataclass
class DatasetConfig:
    """One training dataset (a set of WebDataset shards of one kind)."""

    name: str = doc("Name used in logs and metrics, e.g. 'mmc4' or 'laion'.")
    kind: Literal["pairs", "interleaved", "video", "text"] = doc(
        "Sample layout of the shards. 'text' (documents with no image, e.g. the frozen LM's own pretraining text; "
        "not in the paper) keeps the gated dense layers, which act on every token, from unlearning what the LM does "
        "with text.")
    shards: str = doc("Shard paths: a brace pattern such as 'data/pairs-{000000..000099}.tar', or several "
                      "patterns separated by '::'.")
    batch_size: int = doc("Sequences per optimiser step for this dataset, per process.", 8)
    loss_weight: float | None = doc("lambda_m of the paper; None = the paper's default for the kind "
                                    "(interleaved 1.0, pairs 0.2, video 0.03; text 1.0).", None)
    max_tokens: int = doc("Tokens per sequence (the paper's interleaved windows are 256 tokens).", 256)
    max_media: int = doc("Images kept per sequence (paper: the first 5 of each window).", 5)
    max_images_per_sample: int = doc("A document with more images than this is skipped (counted as "
                                     "too_many_images); windows still keep only max_media of them.", 64)
    documents_per_row: int = doc(
        "Interleaved only: join this many windows (each <BOS>...<EOS>, from consecutive documents) into one row, as "
        "the LM's own pretraining rows are packed, so the new layers also act deep into long prompts (a 32-shot "
        "prompt is several windows long). A row holds up to documents_per_row x max_tokens tokens and x max_media "
        "images; keep tokens per step by dividing batch_size. Not in the paper (1 = its 256-token windows).", 1)
    leading_space_prob: float = doc("Probability of prepending a space to pair text (paper: 0.5).", 0.5)
    pad_to_multiple_of: int = doc(
        "Pad each batch's rows to a multiple of this many tokens (never past max_tokens x documents_per_row). "
        "Fewer distinct lengths, fewer distinct matrix shapes: on a CPU each new shape builds its bf16 kernels "
        "anew, several ms each (the tiny-world mixture trains 1.25x faster at 16 than at 1 in bf16 on a Xeon "
        "with AMX; the same in fp32); GPUs want multiples of 8.", 16)
    shuffle_buffer: int = doc("Samples held in the shuffle buffer (0 = read in shard order).", 1000)
    num_workers: int = doc("DataLoader worker processes for this dataset (0 = in the main process).", 0)
    split: Literal["auto", "shards", "records"] = doc(
        "How ranks and workers divide the data: whole shards each, or every N-th record of every shard. 'auto' "
        "splits shards when there are at least as many shards as readers.", "auto")

    def resolved_loss_weight(self) -> float:
        return DEFAULT_LOSS_WEIGHTS[self.kind] if self.loss_weight is None else self.loss_weight


@dataclass
class ModelSpec:
    """Which model to train: new layers on top of two backbones, or continue from a saved Flamingo."""

    lm: str | None = doc("Hub id or folder of the causal LM (for a new model).", None)
    vision: str | None = doc("Hub id or folder of the vision encoder (for a new model).", None)
    from_pretrained: str | None = doc("A saved Flamingo (folder or bundled name) to continue training.", None)
    config: dict[str, Any] = doc("FlamingoConfig fields for a new model, e.g. {cross_attn_every: 4}.",
                                 default_factory=dict)


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = doc("Peak learning rate (paper: 1e-4).", 1e-4)
    warmup_steps: int = doc("Linear warm-up from 0 over this many steps (paper: 5,000).", 5000)
    schedule: Literal["constant", "cosine", "linear"] = doc("After warm-up: constant (paper), cosine or linear "
                                                            "decay to min_lr_ratio * lr at the last step.",
                                                            "constant")
    min_lr_ratio: float = doc("Final lr as a fraction of lr for cosine/linear decay.", 0.0)
    weight_decay: float = doc("AdamW weight decay on the new layers' matrices (paper: 0.1); always 0 on the "
                              "Perceiver Resampler, gates, norms, biases and token rows.", 0.1)
    betas: tuple[float, float] = doc("AdamW betas.", (0.9, 0.999))
    eps: float = doc("AdamW epsilon.", 1e-8)
    grad_clip: float = doc("Global gradient-norm clipping, applied once per optimiser step (paper: 1.0); "
                           "0 disables.", 1.0)
    gate_lr_multiplier: float = doc("Learning-rate multiplier for the tanh gates (paper: 1). Short runs of small "
                                    "models need the gates to open faster than 500k-step runs do.", 1.0)
    ffw_gate_lr_multiplier: float | None = doc(
        "Learning-rate multiplier for the gates of the gated dense (feed-forward) layers alone; None = "
        "gate_lr_multiplier. Those layers act on every text token, images or not (the attention branch only on "
        "tokens after an image). In the tiny world a 1x rate left these gates small but not the LM's copying: the "
        "dense weights grew to make up for it.",
        None)


@dataclass
class TrainConfig:
    """A whole training run."""

    output_dir: str = doc("Run folder: checkpoints, metrics.jsonl, the final export in 'final/'.")
    model: ModelSpec = doc("The model to train.", default_factory=ModelSpec)
    datasets: list[DatasetConfig] = doc("Datasets of the mixture.", default_factory=list)
    optim: OptimConfig = doc("Optimiser and schedule.", default_factory=OptimConfig)
    steps: int = doc("Optimiser steps to run.", 1000)
    accumulation: Literal["all", "round_robin"] = doc(
        "'all': every step accumulates gradients over one batch of every dataset (paper); 'round_robin': one "
        "dataset per step (the paper's ablation).", "all")
    precision: Literal["fp32", "bf16", "auto"] = doc(
        "Autocast dtype for activations; trainable weights and optimiser state stay fp32. auto: bf16 unless it is "
        "the slower here (some CPUs run bf16 matmuls slower than fp32; measured at start, logged).", "fp32")
    frozen_dtype: Literal["fp32", "bf16"] = doc("Storage dtype of the frozen backbones (bf16 needs "
                                                "precision: bf16).", "fp32")
    activation_checkpointing: bool = doc("Recompute each decoder layer's activations in the backward pass.", False)
    distributed: Literal["auto", "ddp", "fsdp"] = doc("Under torchrun: DDP, or FSDP2 (fully_shard per decoder/"
                                                      "fusion layer, then the root). 'auto' = ddp.", "auto")
    device: Literal["auto", "cpu", "cuda"] = doc("'auto' = CUDA when available.", "auto")
    seed: int = doc("Seed for initialisation, data order and augmentation.", 0)
    checkpoint_every: int = doc("Save a resumable checkpoint every N steps (and at the end).", 500)
    keep_last: int = doc("Checkpoints to keep.", 3)
    log_every: int = doc("Write metrics every N steps.", 10)
    resume: Literal["auto", "never", "must"] = doc("'auto' resumes from the newest checkpoint in output_dir if "
                                                   "there is one; 'must' fails without one.", "auto")
    progress: bool = doc("Show a progress bar (rank 0 only).", True)


# ---------------------------------------------------------------------------------------------------- loading
class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` against a type annotation; raise ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r}: must be one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(v, args[0], f"{where}.{i}") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{where}.{i}") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}={value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r}: expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r}: expected a string")
        return value
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping of fields, got {type(values).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown field; known: {sorted(names)}")
    kwargs = {}
    for name, spec in names.items():
        key = f"{where}.{name}" if where else name
        if name in values:
            kwargs[name] = _convert(values[name], _field_type(cls, name), key)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required field is missing ({spec.metadata.get('help', '')})")
    return cls(**kwargs)


def parse_override_value(text: str) -> Any:
    """Command-line values are YAML scalars: 3e-4, true, null, [1, 2], a string."""
    return yaml.safe_load(text)


def apply_overrides(values: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """Apply dotted overrides such as ``optim.lr=3e-4`` or ``datasets.0.batch_size=4`` to raw config values."""
    for dotted, text in overrides:
        node: Any = values
        parts = dotted.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{dotted}: {part!r} is not an index of the list")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"{dotted}: {last!r} is not an index of the list")
            node[int(last)] = parse_override_value(text)
        else:
            node[last] = parse_override_value(text)
    return values


def load_config(cls: type, path: str | Path | None = None, overrides: list[tuple[str, str]] | None = None,
                values: dict[str, Any] | None = None) -> Any:
    """Build dataclass ``cls`` from a YAML file and/or raw ``values``, then dotted overrides; types checked."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"Cannot read config {path}: {error}") from error
    if values is not None:
        raw = {**raw, **copy.deepcopy(values)}
    return _build(cls, apply_overrides(raw, overrides or []), "")


def load_train_config(path: str | Path | None = None, overrides: list[tuple[str, str]] | None = None,
                      values: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file (or raw ``values``), apply overrides, validate every field."""
    config = load_config(TrainConfig, path, overrides, values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Cross-field checks, each naming the field at fault."""
    def fail(name: str, message: str) -> None:
        raise ConfigError(f"{name}: {message}")

    if not config.datasets:
        fail("datasets", "at least one dataset is required")
    names = [d.name for d in config.datasets]
    if len(set(names)) != len(names):
        fail("datasets", f"dataset names must be unique, got {names}")
    for i, d in enumerate(config.datasets):
        for name in ("batch_size", "max_tokens", "max_media", "max_images_per_sample", "documents_per_row",
                     "pad_to_multiple_of"):
            if getattr(d, name) < 1:
                fail(f"datasets.{i}.{name}", "must be >= 1")
        if d.documents_per_row > 1 and d.kind != "interleaved":
            fail(f"datasets.{i}.documents_per_row", f"only interleaved documents are packed into rows; a {d.kind} "
                 f"dataset takes 1 (raise batch_size instead)")
        if d.num_workers < 0 or d.shuffle_buffer < 0:
            fail(f"datasets.{i}", "num_workers and shuffle_buffer must be >= 0")
        if not 0.0 <= d.leading_space_prob <= 1.0:
            fail(f"datasets.{i}.leading_space_prob", "must be in [0, 1]")
        if d.loss_weight is not None and d.loss_weight < 0:
            fail(f"datasets.{i}.loss_weight", "must be >= 0")
    spec = config.model
    if spec.from_pretrained is None and (spec.lm is None or spec.vision is None):
        fail("model", "give either from_pretrained, or both lm and vision")
    if spec.from_pretrained is not None and spec.config:
        fail("model.config", "cannot change the architecture of a saved model (from_pretrained)")
    if config.steps < 1:
        fail("steps", "must be >= 1")
    if config.optim.lr <= 0:
        fail("optim.lr", "must be > 0")
    if config.optim.warmup_steps < 0:
        fail("optim.warmup_steps", "must be >= 0")
    if config.optim.gate_lr_multiplier <= 0:
        fail("optim.gate_lr_multiplier", "must be > 0")
    if config.optim.ffw_gate_lr_multiplier is not None and config.optim.ffw_gate_lr_multiplier <= 0:
        fail("optim.ffw_gate_lr_multiplier", "must be > 0 (or null to follow gate_lr_multiplier)")
    if config.optim.grad_clip < 0:
        fail("optim.grad_clip", "must be >= 0 (0 disables clipping)")
    if config.checkpoint_every < 1 or config.keep_last < 1 or config.log_every < 1:
        fail("checkpoint_every", "checkpoint_every, keep_last and log_every must be >= 1")
    if config.frozen_dtype == "bf16" and config.precision != "bf16":
        fail("frozen_dtype", "bf16 frozen weights need precision: bf16 (activations meet them under autocast)")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    values["optim"]["betas"] = list(values["optim"]["betas"])
    return values


def describe_fields(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """One line per field (dotted name, type, default, help) for ``--help-config``."""
    lines = []
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        name = f"{prefix}{spec.name}"
        annotation = hints[spec.name]
        nested = annotation if dataclasses.is_dataclass(annotation) else None
        if typing.get_origin(annotation) is list and dataclasses.is_dataclass(typing.get_args(annotation)[0]):
            nested = typing.get_args(annotation)[0]
            name += ".N"
        if spec.default is not dataclasses.MISSING:
            default = repr(spec.default)
        elif spec.default_factory is not dataclasses.MISSING and nested is None:
            default = repr(spec.default_factory())
        else:
            default = "required" if nested is None else ""
        if typing.get_origin(annotation) is typing.Literal:
            type_name = "|".join(typing.get_args(annotation))
        else:
            type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        lines.append(f"{name:<34} {type_name:<40} {default:<12} {spec.metadata.get('help', '')}")
        if nested is not None:
            lines.extend(describe_fields(nested, name + "."))
    return lines
