"""End-to-end training runs on tiny backbones: every format, corrupt samples, export, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from flamingo_vlm import Flamingo
from flamingo_vlm.training.checkpoint import list_checkpoints
from flamingo_vlm.training.config import load_train_config
from flamingo_vlm.training.plot import plot_run, read_metrics
from flamingo_vlm.training.trainer import train
from tests.training.conftest import train_values


def test_training_runs_on_every_format_and_exports(lm_dirs: dict[str, str], clip_dir: str, shards: dict[str, str],
                                                   tmp_path: Path) -> None:
    config = load_train_config(values=train_values(lm_dirs["llama"], clip_dir, tmp_path / "run", shards))
    export = train(config)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert set(record["loss"]) == {"docs", "pairs", "clips"}
        assert all(0 < v < 20 for v in record["loss"].values())
        assert record["tokens_per_s"] > 0 and len(record["gates"]) == 4
        # Other programs' CPU use (cores) is logged on CPU runs; None until two seconds have passed.
        assert "other_cpu_cores" in record and (record["other_cpu_cores"] is None or record["other_cpu_cores"] >= 0)
    # The new layers moved away from the frozen LM; the gates opened.
    assert any(g["attn"] > 0 for g in records[-1]["gates"])
    model = Flamingo.from_pretrained(export)
    plain = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"])
    fused = model.lm.state_dict()  # the LM's own keys, thanks to the fusion wrappers' state-dict hooks
    for name, value in plain.state_dict().items():  # the frozen LM is untouched
        assert torch.equal(fused[name], value), name
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002", "step-00000003"]
    png = plot_run(tmp_path / "run")
    assert png.stat().st_size > 10_000


def test_corrupt_samples_are_skipped_counted_and_training_goes_on(lm_dirs: dict[str, str], clip_dir: str,
                                                                   shards: dict[str, str], tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    values = train_values(lm_dirs["gpt2"], clip_dir, tmp_path / "run", shards, steps=5)
    values["datasets"] = [{"name": "pairs", "kind": "pairs", "shards": shards["corrupt_pairs"], "batch_size": 3,
                           "max_tokens": 24, "shuffle_buffer": 0}]
    with caplog.at_level("WARNING"):
        train(load_train_config(values=values))
    skipped = read_metrics(tmp_path / "run")[-1]["skipped"]["pairs"]
    # 5 steps x 3 good samples pass the 3 corrupt ones (at the end of the shard) twice: counted per epoch.
    assert skipped == {"bad_image": 2, "missing_text": 2, "bad_json": 2}
    assert "truncated" in caplog.text and "corrupt-000000.tar" in caplog.text


def test_text_documents_train_the_dense_layers_alone(lm_dirs: dict[str, str], clip_dir: str, shards: dict[str, str],
                                                    tmp_path: Path) -> None:
    values = train_values(lm_dirs["llama"], clip_dir, tmp_path / "run", shards, steps=2, checkpoint_every=10)
    values["datasets"] = [{"name": "text", "kind": "text", "shards": shards["text"], "batch_size": 2,
                           "max_tokens": 24, "shuffle_buffer": 0}]
    train(load_train_config(values=values))
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    assert all(set(r["loss"]) == {"text"} and 0 < r["loss"]["text"] < 20 for r in records)
    # With no image the cross-attention has nothing to read: only the gated dense layers can move.
    assert all(g["attn"] == 0 and g["ffw"] != 0 for g in records[-1]["gates"])


def test_round_robin_uses_one_dataset_per_step(lm_dirs: dict[str, str], clip_dir: str, shards: dict[str, str],
                                               tmp_path: Path) -> None:
    values = train_values(lm_dirs["llama"], clip_dir, tmp_path / "run", shards, accumulation="round_robin",
                          steps=3, checkpoint_every=10)
    train(load_train_config(values=values))
    weights = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000003" / "weights.safetensors"))
    assert any(".cross_attn_block." in k for k in weights)
    losses = [set(r["loss"]) for r in read_metrics(tmp_path / "run")]
    assert losses == [{"docs"}, {"docs", "pairs"}, {"docs", "pairs", "clips"}]  # last value seen per dataset


def test_auto_precision_trains_in_the_faster_one_and_says_which(lm_dirs: dict[str, str], clip_dir: str,
                                                               shards: dict[str, str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    values = train_values(lm_dirs["opt"], clip_dir, tmp_path / "run", shards, steps=1, precision="auto")
    # As if on a CPU whose bf16 matmuls are the slower: auto takes fp32 (autocast off).
    monkeypatch.setattr("flamingo_vlm.training.cpu_precision.bf16_slower_note", lambda *_: "bf16 is slow here")
    autocast_dtypes = []
    real_autocast = torch.autocast

    def recording_autocast(device_type: str, dtype: torch.dtype | None = None, enabled: bool = True, **kwargs):
        autocast_dtypes.append((dtype, enabled))
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr("flamingo_vlm.training.trainer.torch.autocast", recording_autocast)
    with caplog.at_level("INFO"):
        train(load_train_config(values=values))
    assert "precision: auto -> fp32 on this cpu" in caplog.text
    # And where bf16 is not the slower (an AMX CPU), bf16 autocast.
    monkeypatch.setattr("flamingo_vlm.training.cpu_precision.bf16_slower_note", lambda *_: None)
    values = train_values(lm_dirs["opt"], clip_dir, tmp_path / "run2", shards, steps=1, precision="auto")
    with caplog.at_level("INFO"):
        train(load_train_config(values=values))
    assert "precision: auto -> bf16 on this cpu" in caplog.text
    assert autocast_dtypes == [(torch.bfloat16, False), (torch.bfloat16, True)]


def test_bf16_with_frozen_bf16_weights_and_activation_checkpointing(lm_dirs: dict[str, str], clip_dir: str,
                                                                     shards: dict[str, str], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    values = train_values(lm_dirs["opt"], clip_dir, tmp_path / "run", shards, steps=2, precision="bf16",
                          frozen_dtype="bf16", activation_checkpointing=True)
    # On a CPU where bf16 matmuls are the slower, the run says so (here: as if measured on such a CPU).
    monkeypatch.setattr("flamingo_vlm.training.trainer.bf16_slower_note", lambda: "bf16 is slow on this CPU: test")
    with caplog.at_level("WARNING"):
        export = train(load_train_config(values=values))
    assert "bf16 is slow on this CPU: test" in caplog.text
    records = read_metrics(tmp_path / "run")
    assert all(0 < v < 20 for r in records for v in r["loss"].values())
    stored = load_file(str(export / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in stored.values())  # trainable weights stay fp32
    Flamingo.from_pretrained(export)
