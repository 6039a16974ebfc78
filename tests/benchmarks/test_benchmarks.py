"""The benchmark script: our side of the `smoke` suite runs end to end and writes a sound report.

The peer side (OpenFlamingo, flamingo-pytorch) needs its own 5.7 GB environment and is not in the default run; here
we only check that its code imports without that environment and that the driver refuses to run without it.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import flops
from benchmarks.report import SCHEMA, _pairwise, markdown, rebuild, validate_report
from benchmarks.suites import SUITES, get_suite, split_slow_bf16, task_key, tasks_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "smoke", "--impls", "ours",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = list(out.glob("smoke-*.json"))
    assert len(reports) == 1
    return json.loads(reports[0].read_text()), out, result.stdout


def test_smoke_report_is_complete_and_every_number_is_finite_and_positive(smoke_run: tuple[dict, Path, str]) -> None:
    report, _, _ = smoke_run
    assert validate_report(report) == []
    assert report["schema"] == SCHEMA
    assert report["implementations"] == ["ours"]
    assert report["torch_versions"]["ours"].startswith("2.")
    suite = get_suite("smoke")
    assert set(report["measurements"]) == {task_key(t) for t in tasks_for(suite)}
    train = report["measurements"]["train/fp32"]["ours"]
    assert train["tokens"] == suite.batch * suite.seq_len
    assert 0 < train["mfu"] < 1
    assert train["seconds"]["min"] <= train["seconds"]["median"] <= train["seconds"]["max"]
    generate = report["measurements"][f"generate/shots={suite.shots[-1]}/beams={suite.beams[-1]}"]["ours"]
    assert generate["new_tokens"] == suite.new_tokens
    assert generate["images"] == suite.shots[-1] + 1
    assert generate["ttft_s"]["median"] > 0 and generate["total_s"]["median"] > 0
    bf16 = report["measurements"][f"generate/shots={suite.bf16_gen_shots[0]}/beams=1/bf16"]["ours"]
    assert bf16["task"]["dtype"] == "bf16" and bf16["new_tokens"] == suite.new_tokens
    fp32 = report["measurements"][f"generate/shots={suite.bf16_gen_shots[0]}/beams=1"]["ours"]
    assert bf16["model_flops"] == fp32["model_flops"]  # the same work, against the bf16 peak for its MFU
    peaks = report["matmul_peak_flops_per_s"]["ours"]
    assert bf16["mfu"] == pytest.approx(fp32["mfu"] * fp32["total_s"]["median"] / bf16["total_s"]["median"]
                                        * peaks["fp32"] / peaks["bf16"])
    sweep = report["measurements"]["xattn_sweep"]["ours"]["points"]
    assert [p["images"] for p in sweep] == suite.sweep_images
    assert all("prefill" in p and "decode" in p for p in sweep)


def test_smoke_writes_markdown_table_and_plot(smoke_run: tuple[dict, Path, str]) -> None:
    _, out, stdout = smoke_run
    (markdown,) = out.glob("smoke-*.md")
    text = markdown.read_text()
    assert "## Training step" in text and "## Generation" in text and "| fp32 |" in text
    assert "new tokens (batch 1, fp32)" in text and "new tokens (batch 1, bf16: every weight" in text
    assert text.strip() == stdout.strip()  # the table printed is the table written
    (png,) = out.glob("smoke-*.per_query_vs_shots.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validation_catches_broken_reports(smoke_run: tuple[dict, Path, str]) -> None:
    report, _, _ = smoke_run
    broken = copy.deepcopy(report)
    broken["measurements"]["train/fp32"]["ours"]["tokens_per_s"]["median"] = math.nan
    assert any("not finite" in p for p in validate_report(broken))
    broken = copy.deepcopy(report)
    broken["measurements"]["generate/shots=0/beams=1"]["ours"]["total_s"]["min"] = 0.0
    assert any("expected > 0" in p for p in validate_report(broken))
    broken = copy.deepcopy(report)
    del broken["measurements"]["resampler"]
    assert any("resampler missing" in p for p in validate_report(broken))
    broken = copy.deepcopy(report)
    broken["failures"] = [{"impl": "ours", "key": "train/fp32", "error": "boom"}]
    assert validate_report(broken)


def test_bf16_rows_are_skipped_only_where_the_cpu_emulates_bf16() -> None:
    tasks = tasks_for(get_suite("cpu-small"))
    # An AVX2-only AMD EPYC: bf16 matmuls at 0.9 GFLOP/s against 124 in fp32.
    emulated = {"ours": {"fp32": 124e9, "bf16": 0.9e9}, "peers": {"fp32": 120e9, "bf16": 0.9e9}}
    kept, skipped = split_slow_bf16(tasks, emulated)
    assert [s["key"] for s in skipped] == ["train/bf16", "train/bf16-frozen", "generate/shots=32/beams=1/bf16",
                                           "generate/shots=32/beams=3/bf16"]
    assert [t for t in tasks if t not in kept] == (
        [{"kind": "train", "precision": p} for p in ("bf16", "bf16-frozen")]
        + [{"kind": "generate", "shots": 32, "num_beams": b, "dtype": "bf16"} for b in (1, 3)])
    assert "0.9 GFLOP/s against 124 in fp32" in skipped[0]["reason"] and "--slow-bf16" in skipped[0]["reason"]
    assert split_slow_bf16(tasks, emulated, keep=True) == (tasks, [])
    # Native bf16 (AVX512-bf16 without AMX: slower than fp32, but not emulated) and AMX: everything runs.
    assert split_slow_bf16(tasks, {"ours": {"fp32": 331e9, "bf16": 167e9}}) == (tasks, [])
    assert split_slow_bf16(tasks, {"ours": {"fp32": 267e9, "bf16": 1297e9}}) == (tasks, [])
    # Either interpreter emulating it is enough: the pair could not be measured side by side.
    assert split_slow_bf16(tasks, {"ours": {"fp32": 193e9, "bf16": 418e9}, "peers": {"fp32": 190e9, "bf16": 1e9}})[1]


def test_matmul_peak_times_a_smaller_square_where_the_asked_one_would_take_too_long() -> None:
    from benchmarks.measure import matmul_peak

    fits = matmul_peak("fp32", size=512, reps=2)  # a 512-square fp32 matmul takes milliseconds
    assert fits["size"] == 512 and fits["flops_per_s"] > 0
    too_slow = matmul_peak("fp32", size=512, reps=2, max_call_seconds=1e-9)  # no call fits: the 256 probe's size
    assert too_slow["size"] == 256 and too_slow["flops_per_s"] > 0


def _resident_kb_of_mapping(address: int) -> int:
    """Resident kB of the memory mapping that holds ``address`` (from /proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(part, 16) for part in head.split("-"))
            inside = low <= address < high
        elif inside and head == "Rss:":
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds address {address:#x}")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps")
def test_page_in_makes_weights_mapped_from_a_file_resident(tmp_path: Path) -> None:
    # Weights loaded from safetensors stay mapped from the file until read; the memory baseline must hold them.
    import torch

    from benchmarks.measure import page_in

    path = tmp_path / "weights.bin"
    count = 4 * 1024 * 1024  # 16 MB of float32
    torch.arange(count, dtype=torch.float32).numpy().tofile(path)
    module = torch.nn.Linear(1, 1)
    module.register_buffer("mapped", torch.from_file(str(path), shared=True, size=count, dtype=torch.float32))
    address = module.mapped.untyped_storage().data_ptr()
    before = _resident_kb_of_mapping(address)
    page_in(module)
    after = _resident_kb_of_mapping(address)
    assert before < 1024 and after >= 16 * 1024 - 64, (before, after)


def test_a_report_says_what_it_skipped_and_why(smoke_run: tuple[dict, Path, str]) -> None:
    report, _, _ = smoke_run
    saved = copy.deepcopy(report)
    saved["raw"] = [e for e in saved["raw"] if not e["key"].startswith("train/bf16")]
    saved["skipped"] = [{"key": key, "reason": "no native bf16 here"} for key in ("train/bf16", "train/bf16-frozen")]
    rebuilt = rebuild(saved)
    assert validate_report(rebuilt) == []  # skipped, not missing
    assert "train/bf16" not in rebuilt["measurements"] and "train/fp32" in rebuilt["measurements"]
    assert "Skipped train/bf16: no native bf16 here." in markdown(rebuilt)
    reached = {t["target"]: t["reached"] for t in rebuilt["targets"]}
    assert [r for t, r in reached.items() if "(bf16" in t] == ["skipped: no native bf16 on this CPU"] * 2
    saved["skipped"] = []  # the same rows gone without a reason are a broken report
    assert any("train/bf16 missing" in problem for problem in validate_report(rebuild(saved)))


def test_peer_code_imports_without_the_peer_environment() -> None:
    import benchmarks.impl_flamingo_pytorch
    import benchmarks.impl_openflamingo

    assert benchmarks.impl_openflamingo.Implementation.name == "openflamingo"
    assert benchmarks.impl_flamingo_pytorch.Implementation.name == "flamingo_pytorch"


def test_driver_refuses_peers_without_their_environment(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "smoke", "--impls",
                             "ours,openflamingo", "--peer-python", str(tmp_path / "missing" / "python"),
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "peer environment" in result.stderr
    assert not list(tmp_path.glob("*.json"))


def test_suites_match_the_issue() -> None:
    small = SUITES["cpu-small"]
    assert (small.lm_width, small.lm_layers, small.lm_heads) == (256, 4, 4)
    assert (small.vision_width, small.vision_layers, small.patch_size, small.image_size) == (128, 4, 8, 64)
    assert (small.resampler_depth, small.num_latents, small.cross_attn_every) == (2, 16, 1)
    assert (small.seq_len, small.images_per_seq, small.batch) == (256, 5, 4)
    assert small.shots == [0, 4, 8, 16, 32] and small.beams == [1, 3] and small.new_tokens == 20
    assert small.train_precisions[:2] == ["fp32", "bf16"]  # the issue's two; bf16-frozen is our trainer's bf16 mode
    # the 32-shot prompt plus the generated tokens fits the LM's context
    longest = 1 + max(small.shots) * (1 + 2 + small.caption_tokens + 1) + 3 + small.new_tokens
    assert longest <= small.max_positions


def test_flop_counts_scale_as_expected() -> None:
    s = SUITES["cpu-small"].to_dict()
    one = flops.training_step(s, 2048)
    double = flops.training_step(s | {"batch": 2 * s["batch"]}, 2048)
    assert double["total"] == pytest.approx(2 * one["total"])
    assert one["total"] == pytest.approx(sum(v for k, v in one.items() if k != "total"))
    greedy = flops.generation(s, 2048, prompt_tokens=100, images=5, new_tokens=20, beams=1)
    beam = flops.generation(s, 2048, prompt_tokens=100, images=5, new_tokens=20, beams=3)
    assert beam["prefill"] == greedy["prefill"] and beam["decode"] == pytest.approx(3 * greedy["decode"])
    assert flops.generation(s, 2048, 100, 5, 1, 1)["decode"] == 0


def test_pairwise_ratios() -> None:
    ratio = _pairwise([1.0, 2.0, 4.0], [2.0, 6.0, 4.0])  # their time / our time, repetition by repetition
    assert ratio["values"] == [2.0, 3.0, 1.0]
    assert ratio["median"] == 2.0 and ratio["min"] == 1.0 and ratio["max"] == 3.0


def test_generation_phases_time_each_phase_of_our_query() -> None:
    from benchmarks.profile import generation_phases

    # generation_phases itself checks that its phases, run in order, give model.generate's tokens.
    phases = generation_phases("smoke", shots=2, reps=1, steps=3)
    assert set(phases) == {"media", "prefill", "decode_step"}
    assert all(math.isfinite(ms) and ms > 0 for ms in phases.values())


def test_phases_refuse_what_they_cannot_split() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--suite", "smoke", "--task", "train/fp32",
                             "--phases"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--phases takes --impl ours and a generate task" in result.stderr
