"""The tiny-world recipe: every stage runs a few steps through the public code paths; the full recipe is slow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from flamingo_vlm import Flamingo
from flamingo_vlm.cli import main
from flamingo_vlm.tinyworld.card import CARD_NAME, card_facts, read_card_facts
from flamingo_vlm.tinyworld.probe import RECALL_FORMS, SCENE_QA_KINDS
from flamingo_vlm.tinyworld.recipe import (
    LM_SLOT_RECALL_FILE,
    STAGES,
    flamingo_train_values,
    load_recipe,
    pairs_phase_values,
    run_recipe,
)
from flamingo_vlm.training.config import ConfigError, load_train_config

QUICK = [("data_scale", "0.01"), ("progress", "false"), ("clip.steps", "3"), ("clip.batch_size", "16"),
         ("lm.steps", "3"), ("lm.batch_size", "4"), ("flamingo.steps", "3"), ("flamingo.warmup_steps", "1"),
         ("flamingo.pairs_phase_steps", "2"),
         ("flamingo.checkpoint_every", "2"), ("card_limit", "2")]


def test_every_stage_runs_and_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # As if on a CPU where bf16 is the slower: every stage's precision: auto takes fp32, and the card says so.
    monkeypatch.setattr("flamingo_vlm.training.cpu_precision.bf16_slower_note", lambda *_: "bf16 is slow here.")
    config = load_recipe(overrides=[("output_dir", str(tmp_path / "run")), ("export_to", str(tmp_path / "asset")),
                                    *QUICK, ("lm.probe_every", "2")])
    report = run_recipe(config)
    assert set(report["seconds"]) == set(STAGES)
    # Three LM steps leave recall at chance: the LM stage says so, and what to do.
    printed = capsys.readouterr().out
    assert report["lm_recall"]["described"] < 0.5 and "--lm.steps 503" in printed
    assert report["precision"] == {"clip": "fp32", "lm": "fp32", "flamingo": "fp32"}
    assert "lm: precision fp32 (auto: the faster on this CPU)" in printed and "bf16 is slow here" not in printed
    model = Flamingo.from_pretrained(report["model"])
    assert model.config.extra["recipe"] == "flamingo train tiny-world"
    assert model.config.lm == "lm" and model.config.vision == "vision"  # self-contained
    # The pairs phase ran first and the mixture started from its weights.
    pairs_phase = json.loads((tmp_path / "run" / "flamingo" / "pairs-phase" / "config.json").read_text())
    assert [d["kind"] for d in pairs_phase["datasets"]] == ["pairs"] and pairs_phase["steps"] == 2
    mixture = json.loads((tmp_path / "run" / "flamingo" / "config.json").read_text())
    assert mixture["model"]["from_pretrained"].endswith("pairs-phase/final")
    assert mixture["precision"] == pairs_phase["precision"] == "fp32"
    assert {d["kind"] for d in mixture["datasets"]} == {"interleaved", "pairs", "video"}
    # Tokenizer trained with the Flamingo tokens: they are single special tokens of the LM's own vocabulary.
    assert model.media_token_id < model.lm.get_input_embeddings().num_embeddings
    weights = list(Path(report["model"]).rglob("*.safetensors"))
    assert weights and all(p.stat().st_size > 0 for p in weights)
    inputs = model.processor("<image>Q: what colour is it? A:", images=[torch.rand(64, 64, 3).numpy()])
    assert model.generate(**inputs, max_new_tokens=3).shape[0] == 1
    card = Path(report["model"]) / CARD_NAME
    assert read_card_facts(card) == card_facts(model) and "| captioning |" in card.read_text()
    assert "| vqa | question type: " in card.read_text()  # the world's question kinds, one row each
    assert "| video_qa | question type: move |" in card.read_text()  # and the video questions' kinds
    assert "Whether the model reads its images" in card.read_text() and "shuffled across the batch" in card.read_text()
    assert "Whether the model copies from its context" in card.read_text()
    assert "the value right after its key" in card.read_text()
    assert "the frozen LM alone, before the Flamingo stage" in card.read_text()
    assert "Whether the model keeps where an object is" in card.read_text()
    assert "Whether the model keeps which way an object moves" in card.read_text()
    assert "Whether the model reads a clip's frames in order" in card.read_text()
    assert "Whether the model finds the object a question names" in card.read_text()
    assert "(autocast; `precision: auto` picks bf16 unless this CPU runs it slower than fp32): clip fp32, lm fp32, " \
           "flamingo fp32." in card.read_text()
    # A second run finds every stage done and redoes only the export.
    again = run_recipe(config)
    assert again["seconds"]["flamingo"] == pytest.approx(report["seconds"]["flamingo"])
    assert (tmp_path / "asset" / CARD_NAME).is_file()  # the export_to copy carries the card
    # The exported weights record the times of the stages that made them, not a previous run's card stage.
    exported = Flamingo.from_pretrained(tmp_path / "asset")
    assert set(exported.config.extra["stage_seconds"]) == {"data", "tokenizer", "clip", "lm", "flamingo"}
    recorded = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recorded["data"]["train"]["pairs"].endswith(".tar")
    assert recorded["data"]["train"]["text"].endswith(".tar")  # the LM corpus as shards, for a text entry
    # The LM stage measured its LM's recall by key, and a later run that skips the stage still reports it.
    assert set(report["lm_recall"]) == {*RECALL_FORMS, "chance"} and recorded["lm_recall"] == report["lm_recall"]
    # So it did its answers about scenes told in words, and the card says them.
    assert set(report["lm_scene_qa"]) == set(SCENE_QA_KINDS) and recorded["lm_scene_qa"] == report["lm_scene_qa"]
    assert "lm: questions about a scene told in words, the LM alone: colour " in printed
    assert "What the frozen LM works out about a scene told in words" in card.read_text()
    # Asked for, the LM stage also probed recall along the way: every 2 steps and after the last, the last point
    # being the LM it saved.
    curve = report["lm_recall_curve"]
    assert [point["step"] for point in curve] == [2, 3] and recorded["lm_recall_curve"] == curve
    assert {k: v for k, v in curve[-1].items() if k not in ("step", "loss")} == report["lm_recall"]


def test_stages_run_one_at_a_time_and_a_stage_run_too_early_says_which_to_run_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*stages: str, more: tuple[tuple[str, str], ...] = ()) -> dict:
        return run_recipe(load_recipe(overrides=[("output_dir", str(tmp_path)), ("stages", json.dumps(stages)),
                                                 *QUICK, *more]))

    assert set(run("data")["seconds"]) == {"data"}  # no later stage's output is needed, nor touched
    for stage, missing in (("lm", "tokenizer"), ("clip", "tokenizer"), ("flamingo", "lm"), ("export", "flamingo"),
                           ("card", "export")):
        with pytest.raises(ValueError, match=re.escape(f"the '{missing}' stage has not run in {tmp_path}")):
            run(stage)
    # A stage asked for bf16 on a CPU where bf16 is the slower: it gets bf16, and the recipe says so first.
    monkeypatch.setattr("flamingo_vlm.training.cpu_precision.bf16_slower_note", lambda *_: "bf16 is slow here.")
    # (With image-slot documents beside the corpus: the stage then also measures recall by an added vector.)
    report = run("tokenizer", "lm", more=(("lm.precision", "bf16"), ("lm.image_slots", "0.5"),
                                          ("lm.image_slot_batch", "2")))
    assert set(report["seconds"]) == {"data", "tokenizer", "lm"} and report["precision"] == {"lm": "bf16"}
    printed = capsys.readouterr().out
    assert "recipe: bf16 is slow here. The lm stage(s) ask for bf16 (precision: auto" in printed
    slots = json.loads((tmp_path / "lm" / LM_SLOT_RECALL_FILE).read_text())
    assert set(slots) == {"slot_recall", "chance"} and slots["chance"] == 0.2
    assert "lm: a word recalled by an added vector, the LM alone:" in printed
    with pytest.raises(ValueError, match="the 'clip' stage has not run"):
        run("flamingo")


def test_a_text_entry_adds_the_lm_corpus_to_both_phases(tmp_path: Path) -> None:
    shards = {"interleaved": "i.tar", "pairs": "p.tar", "video": "v.tar", "text": "t-{000000..000009}.tar"}
    default = load_recipe(overrides=[("flamingo.datasets", "[]")])
    mixture = flamingo_train_values(default, shards, tmp_path / "lm", tmp_path / "vision", tmp_path / "run")
    assert [d["kind"] for d in mixture["datasets"]] == ["interleaved", "pairs", "video"]  # text only when listed
    config = load_recipe(overrides=[("flamingo.datasets", '[{"kind": "text", "batch_size": 3, "loss_weight": 0.5}]')])
    mixture = flamingo_train_values(config, shards, tmp_path / "lm", tmp_path / "vision", tmp_path / "run")
    text = mixture["datasets"][-1]
    assert (text["kind"], text["shards"], text["batch_size"], text["loss_weight"]) == ("text", shards["text"], 3, 0.5)
    phase = pairs_phase_values(config, mixture, tmp_path / "phase")
    assert [(d["kind"], d.get("loss_weight")) for d in phase["datasets"]] == [("pairs", 1.0), ("text", 0.5)]
    with pytest.raises(ValueError, match="no text shards"):
        flamingo_train_values(config, {k: v for k, v in shards.items() if k != "text"}, tmp_path, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="a kind among"):
        flamingo_train_values(load_recipe(overrides=[("flamingo.datasets", '[{"kind": "audio"}]')]), shards,
                              tmp_path, tmp_path, tmp_path)


def test_frozen_weights_are_stored_in_bf16_when_the_stage_runs_bf16(tmp_path: Path) -> None:
    shards = {"interleaved": "i.tar", "pairs": "p.tar", "video": "v.tar"}

    def values(precision: str, frozen: str) -> dict:
        config = load_recipe(overrides=[("flamingo.precision", precision), ("flamingo.frozen_dtype", frozen)])
        mixture = flamingo_train_values(config, shards, tmp_path / "lm", tmp_path / "vision", tmp_path / "run")
        phase = pairs_phase_values(config, mixture, tmp_path / "phase")
        assert phase["frozen_dtype"] == mixture["frozen_dtype"]  # both phases alike
        return mixture

    assert values("bf16", "auto")["frozen_dtype"] == "bf16"
    assert values("fp32", "auto")["frozen_dtype"] == "fp32"
    assert values("bf16", "fp32")["frozen_dtype"] == "fp32"
    # The engine's own config takes the values as they are (and refuses bf16 storage under fp32 itself).
    config = load_train_config(overrides=[(k, json.dumps(v)) for k, v in values("bf16", "auto").items()])
    assert (config.precision, config.frozen_dtype) == ("bf16", "bf16")
    assert all(d.pad_to_multiple_of == 16 for d in config.datasets)
    with pytest.raises(ConfigError, match="frozen_dtype: bf16 frozen weights need precision: bf16"):
        load_train_config(overrides=[(k, json.dumps(v)) for k, v in values("fp32", "bf16").items()])
    with pytest.raises(ValueError, match="flamingo.frozen_dtype must be fp32, bf16 or auto"):
        values("bf16", "fp16")


def test_recipe_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="stages: unknown stage"):
        load_recipe(overrides=[("stages", "[data, dance]")])
    with pytest.raises(ConfigError, match="flamingo.steps='many'"):
        load_recipe(overrides=[("flamingo.steps", "many")])
    with pytest.raises(ConfigError, match=r"lm.precision='fp16': choose from \['fp32', 'bf16', 'auto'\]"):
        load_recipe(overrides=[("lm.precision", "fp16")])


def test_cli_lists_recipe_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "tiny-world", "--help-config"]) == 0
    assert "flamingo.steps" in capsys.readouterr().out


@pytest.mark.slow
def test_full_recipe(tmp_path: Path) -> None:
    """The whole recipe at full scale (about 45 minutes on 2 cores)."""
    from flamingo_vlm.tinyworld.probe import image_reliance

    report = run_recipe(load_recipe(overrides=[("output_dir", str(tmp_path / "run")), ("progress", "false")]))
    assert sum(report["seconds"].values()) < 60 * 60
    model = Flamingo.from_pretrained(report["model"])
    # The run must have opened its visual pathway: where the gates stayed shut (a pairs phase at 2e-3, 1 seed in 4)
    # another scene's image cost only 0.17 nats/token more than the right one; opened runs: 0.7-0.9.
    loss = image_reliance(model, report["data"]["eval"]["coco"]["eval"]["captions"])
    assert loss["shuffled"] - loss["right"] > 0.4, loss


def test_card_names_spatial_embeddings_only_when_the_model_has_them() -> None:
    from flamingo_vlm.tinyworld.card import _flamingo_stage_lines

    stage = {"steps": 10, "lr": 1e-3, "pairs_phase_steps": 5, "pairs_phase_lr": 2e-3}
    plain = " ".join(_flamingo_stage_lines({**stage, "model": {"num_latents": 16}}))
    assert "paper defaults otherwise" in plain and "spatial" not in plain
    spatial = " ".join(_flamingo_stage_lines({**stage, "model": {"spatial_positions": 64}}))
    assert "spatial embeddings for the 64 visual tokens" in spatial and "the paper has none" in spatial
