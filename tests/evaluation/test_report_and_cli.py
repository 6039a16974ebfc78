"""Markdown table, normalised overall score, plot, and the ``flamingo eval`` flags and suite files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from flamingo_vlm.evaluation.cli import add_eval_arguments, run_eval_from_args
from flamingo_vlm.evaluation.report import (
    ReferenceScore,
    load_reference_scores,
    markdown_table,
    overall_scores,
    plot_results,
)
from tests.evaluation import fixtures as fx

RESULTS = {
    "model": "tiny",
    "tasks": [
        {"task": "okvqa", "metric": "VQA accuracy",
         "results": [{"shots": 0, "score": 27.2, "std": 0.5, "per_seed": [26.7, 27.7]},
                     {"shots": 4, "score": 54.4, "std": 0.0, "per_seed": [54.4, 54.4]}], "settings": {}},
        {"task": "coco", "metric": "CIDEr",
         "results": [{"shots": 0, "score": 143.3, "std": 1.25, "per_seed": [142.05, 144.55]},
                     {"shots": 32, "score": 71.65, "std": 0.0, "per_seed": [71.65]}], "settings": {}},
        {"task": "my_private_set", "metric": "top-1 accuracy",
         "results": [{"shots": 0, "score": 10.0, "std": 0.0, "per_seed": [10.0]}], "settings": {}},
    ],
}


def test_markdown_table_has_every_task_and_shot_count() -> None:
    table = markdown_table(RESULTS)
    lines = table.splitlines()
    assert lines[0] == "| task | metric | 0-shot | 4-shot | 32-shot |"
    assert lines[2] == "| okvqa | VQA accuracy | 27.20 ± 0.50 | 54.40 ± 0.00 |  |"
    assert lines[3] == "| coco | CIDEr | 143.30 ± 1.25 |  | 71.65 |"  # one seed: no spread to state
    assert lines[4].startswith("| my_private_set | top-1 accuracy | 10.00 |")
    assert len(lines) == 5


def test_markdown_table_rows_for_other_metrics() -> None:
    results = json.loads(json.dumps(RESULTS))
    okvqa = results["tasks"][0]["results"]
    okvqa[0]["metrics"] = {"yes/no": {"score": 50.0, "std": 1.0}, "number": {"score": 12.5, "std": 0.0}}
    okvqa[1]["metrics"] = {"yes/no": {"score": 75.0, "std": 0.0}}  # a metric a shot count lacks: empty cell
    lines = markdown_table(results, metrics=True).splitlines()
    assert lines[2] == "| okvqa | VQA accuracy | 27.20 ± 0.50 | 54.40 ± 0.00 |  |"
    assert lines[3] == "| okvqa | yes/no | 50.00 ± 1.00 | 75.00 ± 0.00 |  |"
    assert lines[4] == "| okvqa | number | 12.50 ± 0.00 |  |  |"
    assert lines[5].startswith("| coco | CIDEr |") and len(lines) == 7
    assert markdown_table(results) == markdown_table(RESULTS)  # without metrics=True: one row per task


def test_overall_score_normalises_by_reference() -> None:
    scores = overall_scores(RESULTS)  # the bundled table: okvqa 54.4, coco 143.3
    assert scores[0]["score"] == pytest.approx((50.0 + 100.0) / 2)
    assert scores[0]["tasks"] == ["okvqa", "coco"]  # no reference for my_private_set
    assert scores[4]["score"] == pytest.approx(100.0) and scores[32]["score"] == pytest.approx(50.0)
    custom = {"myprivateset": ReferenceScore("my_private_set", "top-1 accuracy", 40.0)}
    assert overall_scores(RESULTS, custom) == {0: {"score": pytest.approx(25.0), "tasks": ["my_private_set"]}}
    wrong_metric = {"okvqa": ReferenceScore("okvqa", "CIDEr", 10.0)}
    assert overall_scores(RESULTS, wrong_metric) == {}
    assert "| overall (% of reference) | normalised | 75.00 | 100.00 | 50.00 |" in markdown_table(RESULTS, overall=True)


def test_reference_scores_file(tmp_path: Path) -> None:
    table = load_reference_scores()
    assert table["coco"].score == 143.3 and table["okvqa"] is table["okvqa"]
    assert table["hatefulmemes"].metric == "ROC-AUC"  # name and alias lookups ignore punctuation
    bad = tmp_path / "ref.yaml"
    bad.write_text("tasks:\n  coco: {metric: CIDEr}\n")
    with pytest.raises(ValueError, match=f"{bad}: task 'coco' needs 'metric'"):
        load_reference_scores(bad)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    output = plot_results(results, tmp_path / "plots" / "shots.png")
    assert output == tmp_path / "plots" / "shots.png"
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 1000


def test_malformed_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"tasks": [{"task": "x", "results": [{"score": 1.0}]}]}))
    with pytest.raises(ValueError, match=rf"{path}: tasks\[0\].results\[0\] needs 'shots' and 'score'"):
        plot_results(path, tmp_path / "x.png")


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    return run_eval_from_args(parser.parse_args(argv))


def test_cli_single_vqa_task(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    output = tmp_path / "out" / "results.json"
    code = _run(["--model", str(tiny_model_dir), "--task", "vqa", "--name", "okvqa", "--questions", str(questions),
                 "--annotations", str(annotations), "--images", str(images), "--shots", "0", "2", "--seeds", "2",
                 "--limit", "4", "--batch-size", "2", "--output", str(output), "--no-progress", "--device", "cpu",
                 "--prompt-template", "<image>Q: {question} A:", "--max-new-tokens", "3"])
    assert code == 0
    results = json.loads(output.read_text())
    assert results["model"] == str(tiny_model_dir)
    (task,) = results["tasks"]
    assert task["task"] == "okvqa" and task["metric"] == "VQA accuracy"
    assert [row["shots"] for row in task["results"]] == [0, 2]
    assert task["settings"]["prompt_template"] == "<image>Q: {question} A:"
    assert task["settings"]["max_new_tokens"] == 3 and task["settings"]["device"] == "cpu"
    assert task["settings"]["dtype"] == "fp32"
    out = capsys.readouterr().out
    assert "| okvqa | VQA accuracy |" in out and "0-shot" in out and "2-shot" in out
    assert any(f"| okvqa | {kind} |" in out for kind in fx.ANSWER_TYPES)  # accuracy per answer type below it


def test_cli_evaluates_in_bf16_when_asked(tiny_model_dir: Path, tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    output = tmp_path / "results.json"
    assert _run(["--model", str(tiny_model_dir), "--task", "vqa", "--questions", str(questions), "--annotations",
                 str(annotations), "--images", str(images), "--shots", "0", "--seeds", "1", "--limit", "2",
                 "--output", str(output), "--no-progress", "--device", "cpu", "--dtype", "bf16"]) == 0
    (task,) = json.loads(output.read_text())["tasks"]
    assert task["settings"]["dtype"] == "bf16" and 0.0 <= task["results"][0]["score"] <= 100.0


def test_cli_suite_file_with_named_list(tiny_model_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fx.write_karpathy(tmp_path)
    fx.write_classification(tmp_path)
    fx.write_hateful_memes(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
model: {tiny_model_dir}
shots: [0, 2]
seeds: 1
limit: 4
batch_size: 4
suites:
  dev: [coco, hateful_memes]
tasks:
  - {{task: captioning, name: coco, annotations: dataset_coco.json, images: karpathy_images, split: test,
     support_split: train, caption_tokenizer: python}}
  - {{task: classification, name: tiny_imagenet, annotations: classification.jsonl, class_names: classes.txt}}
  - {{task: hateful_memes, annotations: dev_seen.jsonl}}
""")
    output = tmp_path / "results.json"
    assert _run(["--suite", f"{suite}:dev", "--seeds", "2", "--output", str(output), "--no-progress",
                 "--overall"]) == 0
    results = json.loads(output.read_text())
    assert [t["task"] for t in results["tasks"]] == ["coco", "hateful_memes"]
    assert all(len(row["per_seed"]) == 2 for t in results["tasks"] for row in t["results"])  # flag beats suite
    assert results["tasks"][0]["settings"]["support_split"] == "train"
    assert "| overall (% of reference) |" in capsys.readouterr().out
    assert _run(["--suite", str(suite), "--output", str(output), "--no-progress"]) == 0  # every task
    assert len(json.loads(output.read_text())["tasks"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "vqa", "--suite", "x.yaml"], "either --task"),
        (["--task", "captioning", "--questions", "q.json", "--annotations", "a.json"],
         "--questions do(es) not apply to --task captioning"),
        (["--shots", "0"], "say what to evaluate"),
        (["--task", "vqa", "--annotations", "a.json"], "needs fields"),
    ],
)
def test_cli_usage_errors(argv: list[str], message: str, tiny_model_dir: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--model", str(tiny_model_dir), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_data_errors_name_file_and_field(tiny_model_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, names = fx.write_classification(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks:\n  - {task: classification, annotations: classification.jsonl, class_names: classes.txt}\n"
                     "  - {task: vqa, question: q.json}\n")
    assert _run(["--model", str(tiny_model_dir), "--suite", str(suite), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{suite}: tasks[1]: unknown field 'question'" in err
    args = ["--model", str(tiny_model_dir), "--task", "classification", "--annotations", str(path),
            "--class-names", str(names), "--no-progress", "--output", str(tmp_path / "r.json")]
    assert _run([*args, "--shots", "0", "50"]) == 2
    assert "50 shots need 50 demonstrations" in capsys.readouterr().err
    path.write_text(path.read_text().replace('"label": 2', '"lable": 2'))
    assert _run([*args, "--shots", "0"]) == 2
    assert f"{path}: line 3 has no field 'label'" in capsys.readouterr().err
