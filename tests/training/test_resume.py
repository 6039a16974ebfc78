"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flamingo_vlm.data.stream import ReaderState, ShardStream, make_loader
from flamingo_vlm.training.config import load_train_config
from flamingo_vlm.training.plot import read_metrics
from tests.model.helpers import build
from tests.training.conftest import train_values

ROOT = Path(__file__).resolve().parents[2]


def _launch(config_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "flamingo_vlm.train", str(config_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_then_resume_matches_uninterrupted_run(lm_dirs: dict[str, str], clip_dir: str,
                                                       shards: dict[str, str], tmp_path: Path) -> None:
    configs = {}
    for name in ("straight", "killed"):
        values = train_values(lm_dirs["llama"], clip_dir, tmp_path / name, shards, steps=14, checkpoint_every=3,
                              keep_last=2)
        values["datasets"][1]["num_workers"] = 2  # exercises the worker rotation on resume
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(values))

    straight = _launch(configs["straight"])
    output = straight.communicate(timeout=600)[0]
    assert straight.returncode == 0, output[-3000:]

    killed = _launch(configs["killed"])
    checkpoint = tmp_path / "killed" / "checkpoints" / "step-00000006"
    deadline = time.time() + 600
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "final").exists()

    resumed = _launch(configs["killed"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]

    expected = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    actual = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    curve = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "straight")}
    assert curve == {r["step"]: r["loss"] for r in read_metrics(tmp_path / "killed")}
    assert len(curve) == 14


@pytest.mark.parametrize(("num_workers", "kind", "documents_per_row"),
                         [(0, "pairs", 1), (2, "pairs", 1), (0, "interleaved", 3), (2, "interleaved", 3)])
def test_stream_resumes_exactly_where_it_stopped(num_workers: int, kind: str, documents_per_row: int,
                                                 lm_dirs: dict[str, str], clip_dir: str,
                                                 shards: dict[str, str], tmp_path: Path) -> None:
    processor = build(lm_dirs["llama"], clip_dir).processor
    config = load_train_config(values=train_values(lm_dirs["llama"], clip_dir, tmp_path, shards))
    (dataset,) = [d for d in config.datasets if d.kind == kind]
    dataset.num_workers = num_workers
    dataset.batch_size = 3  # 16 samples: batches straddle epochs
    dataset.documents_per_row = documents_per_row  # packed rows straddle epochs too

    def stream(start: dict[int, ReaderState] | None = None, offset: int = 0):
        return iter(make_loader(ShardStream(dataset, processor, seed=5, rank=0, world_size=1,
                                            num_workers=num_workers, start=start, worker_offset=offset)))

    reference = stream()
    batches = [next(reference) for _ in range(11)]
    bos = processor.tokenizer.bos_token_id
    for batch in batches:  # every row is documents_per_row windows, each opening with <BOS>
        assert (batch.tensors["input_ids"] == bos).sum(1).tolist() == [documents_per_row] * 3
    positions: dict[int, ReaderState] = {}
    for batch in batches[:7]:
        positions[batch.worker] = batch.state
    resumed = stream(positions, offset=7 % max(1, num_workers))
    for batch in batches[7:]:
        again = next(resumed)
        assert torch.equal(again.tensors["input_ids"], batch.tensors["input_ids"])
        assert torch.equal(again.tensors["pixel_values"], batch.tensors["pixel_values"])
    assert any(b.state.epoch > 0 for b in batches)  # the stream went past an epoch boundary


def test_stream_is_the_same_from_a_copy_of_the_shards(lm_dirs: dict[str, str], clip_dir: str,
                                                      shards: dict[str, str], tmp_path: Path) -> None:
    """Where the shards lie is not part of the run: a recipe rerun in another folder sees the same batches
    (window starts and other per-sample draws are seeded by the shard's file name and the sample's key)."""
    processor = build(lm_dirs["llama"], clip_dir).processor
    moved = {kind: str(tmp_path / "elsewhere" / Path(pattern).parent.name / Path(pattern).name)
             for kind, pattern in shards.items()}
    for kind, pattern in shards.items():
        shutil.copytree(Path(pattern).parent, Path(moved[kind]).parent)
    batches = []
    for patterns in (shards, moved):
        config = load_train_config(values=train_values(lm_dirs["llama"], clip_dir, tmp_path, patterns))
        (dataset,) = [d for d in config.datasets if d.kind == "interleaved"]
        dataset.max_tokens = 12  # shorter than the documents: the window start is drawn
        loader = iter(make_loader(ShardStream(dataset, processor, seed=5, rank=0, world_size=1, num_workers=0)))
        batches.append([next(loader).tensors["input_ids"] for _ in range(8)])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))
    starts = {tuple(row[1:4].tolist()) for batch in batches[0] for row in batch}
    assert len(starts) > 10  # windows start at many places (so the draws were exercised)
