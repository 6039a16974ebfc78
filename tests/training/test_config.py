"""Training config: YAML + dotted overrides, every invalid value rejected with its field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingo_vlm.cli import parse_dotted_overrides
from flamingo_vlm.training.config import ConfigError, describe_fields, load_train_config

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "output_dir": "run",
    "model": {"lm": "lm", "vision": "vision"},
    "datasets": [{"name": "docs", "kind": "interleaved", "shards": "a.tar"},
                 {"name": "pairs", "kind": "pairs", "shards": "b-{0..3}.tar"}],
}


def test_example_config_loads_with_paper_defaults() -> None:
    config = load_train_config(ROOT / "configs" / "example.yaml")
    assert config.optim.lr == 1e-4 and config.optim.warmup_steps == 5000 and config.optim.grad_clip == 1.0
    assert [d.resolved_loss_weight() for d in config.datasets] == [1.0, 0.2, 0.03]
    assert config.accumulation == "all"


def test_dotted_overrides_reach_nested_fields() -> None:
    overrides = parse_dotted_overrides(["--optim.lr", "3e-4", "--datasets.1.batch_size=4", "--steps", "7",
                                        "--model.config", "{cross_attn_every: 2}"])
    config = load_train_config(values=BASE, overrides=overrides)
    assert config.optim.lr == 3e-4 and config.datasets[1].batch_size == 4 and config.steps == 7
    assert config.model.config == {"cross_attn_every": 2}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([("optim.lr", "0")], "optim.lr: must be > 0"),
        ([("optim.ffw_gate_lr_multiplier", "-1")], "optim.ffw_gate_lr_multiplier: must be > 0"),
        ([("datasets.0.kind", "movies")], "datasets.0.kind='movies': must be one of"),
        ([("datasets.1.batch_size", "0")], "datasets.1.batch_size: must be >= 1"),
        ([("datasets.1.batch_size", "two")], "datasets.1.batch_size='two': expected an integer"),
        ([("optim.learning_rate", "1")], "optim.learning_rate: unknown field"),
        ([("precision", "fp16")], "precision='fp16': must be one of"),
        ([("frozen_dtype", "bf16")], "frozen_dtype: bf16 frozen weights need precision: bf16"),
        ([("datasets.5.batch_size", "1")], "datasets.5.batch_size: '5' is not an index"),
        ([("model.lm", "null")], "model: give either from_pretrained, or both lm and vision"),
        ([("steps", "0")], "steps: must be >= 1"),
        ([("datasets.0.leading_space_prob", "2")], "datasets.0.leading_space_prob: must be in"),
        ([("datasets.0.documents_per_row", "0")], "datasets.0.documents_per_row: must be >= 1"),
        ([("datasets.0.pad_to_multiple_of", "0")], "datasets.0.pad_to_multiple_of: must be >= 1"),
        ([("datasets.1.documents_per_row", "4")], "datasets.1.documents_per_row: only interleaved documents"),
    ],
)
def test_invalid_values_name_the_field(overrides: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace("[", "\\[")):
        load_train_config(values=BASE, overrides=overrides)


def test_missing_required_field_and_bad_cli_syntax() -> None:
    with pytest.raises(ConfigError, match="output_dir: required field is missing"):
        load_train_config(values={k: v for k, v in BASE.items() if k != "output_dir"})
    with pytest.raises(ValueError, match="needs a value"):
        parse_dotted_overrides(["--steps"])
    with pytest.raises(ValueError, match="Unexpected argument"):
        parse_dotted_overrides(["steps", "3"])


def test_every_field_is_documented() -> None:
    lines = describe_fields()
    assert any(line.startswith("optim.lr ") for line in lines)
    assert any(line.startswith("datasets.N.loss_weight ") for line in lines)
    for line in lines:
        assert len(line.split()) > 2, f"undocumented field: {line}"
