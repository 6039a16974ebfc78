"""Two CPU processes (torchrun, gloo) compute what one process computes with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flamingo_vlm.training.plot import read_metrics
from tests.training.conftest import train_values

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def _config(tmp_path: Path, name: str, lm: str, vision: str, shards: dict[str, str], batch: int, strategy: str) -> Path:
    values = train_values(lm, vision, tmp_path / name, shards, steps=3, checkpoint_every=10, distributed=strategy)
    for dataset in values["datasets"]:
        dataset["batch_size"] = batch
        dataset["split"] = "records"  # every rank reads every shard and keeps every 2nd record
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process(strategy: str, lm_dirs: dict[str, str], clip_dir: str,
                                         shards: dict[str, str], tmp_path: Path) -> None:
    single = _config(tmp_path, "single", lm_dirs["llama"], clip_dir, shards, batch=4, strategy="auto")
    double = _config(tmp_path, strategy, lm_dirs["llama"], clip_dir, shards, batch=2, strategy=strategy)
    _run([sys.executable, "-m", "flamingo_vlm.train", str(single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "flamingo_vlm.train", str(double)])
    one = read_metrics(tmp_path / "single")
    two = read_metrics(tmp_path / strategy)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for name in a["loss"]:
            assert b["loss"][name] == pytest.approx(a["loss"][name], rel=1e-5)
    expected = load_file(str(tmp_path / "single" / "final" / "model.safetensors"))
    actual = load_file(str(tmp_path / strategy / "final" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=1e-4)
    assert any(g["attn"] > 0 for g in one[-1]["gates"])  # training really changed the weights being compared


def _choose(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from flamingo_vlm.training.distributed import DistributedContext, main_rank_choice

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    context = DistributedContext(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    # As if each process had measured its own answer to precision: auto and they disagreed.
    agreed = main_rank_choice("fp32" if rank == 0 else "bf16", ("fp32", "bf16", "auto"), context)
    Path(out, f"rank{rank}").write_text(agreed)
    dist.destroy_process_group()


def test_a_measured_choice_is_rank_zeros_on_every_rank(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_choose, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["fp32", "fp32"]
