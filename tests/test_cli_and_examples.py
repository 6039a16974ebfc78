"""The README's example and the command line really run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_vlm.cli import main
from tests.conftest import random_image
from tests.model.helpers import build

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_runs() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "generated:" in result.stdout and "scores: tensor([[" in result.stdout


def test_cli_generate_and_info(lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    build(lm_dirs["llama"], clip_dir).save_pretrained(tmp_path / "model")
    image = tmp_path / "a.png"
    random_image(0).save(image)
    assert main(["generate", "--model", str(tmp_path / "model"), "--image", str(image), "--prompt", "<image>Output:",
                 "--max-new-tokens", "3"]) == 0
    assert "tokens in" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "model")]) == 0
    assert "trainable" in capsys.readouterr().out
    assert main(["generate", "--model", str(tmp_path / "model"), "--prompt", "<image>Output:"]) == 2
    assert "1 <image> tag(s) but 0" in capsys.readouterr().err
