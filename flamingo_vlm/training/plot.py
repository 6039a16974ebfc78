"""``flamingo plot RUN_DIR``: loss per dataset and |tanh(gate)| per layer over training (the paper's Figure 6)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl records, keeping the last record of each step (a resumed run re-logs a few steps)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run_dir} has no metrics.jsonl; is it a training run folder?")
    by_step: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not valid JSON: {error}") from error
        by_step[int(record["step"])] = record
    if not by_step:
        raise ValueError(f"{path} holds no metrics yet.")
    return [by_step[s] for s in sorted(by_step)]


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write a PNG with the loss curves and the gate values; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    steps = [r["step"] for r in records]
    figure, (loss_axis, attn_axis, ffw_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    for name in sorted({n for r in records for n in r["loss"]}):
        points = [(r["step"], r["loss"][name]) for r in records if name in r["loss"]]
        loss_axis.plot([p[0] for p in points], [p[1] for p in points], label=name)
    loss_axis.set(title="loss per dataset", xlabel="step", ylabel="NLL per token")
    loss_axis.legend()
    num_blocks = len(records[-1]["gates"])
    colours = plt.get_cmap("viridis")
    for axis, key, title in ((attn_axis, "attn", "|tanh(attention gate)|"), (ffw_axis, "ffw", "|tanh(dense gate)|")):
        for block in range(num_blocks):
            values = [r["gates"][block].get(key) if block < len(r["gates"]) else None for r in records]
            if all(v is None for v in values):
                continue
            axis.plot(steps, values, color=colours(block / max(1, num_blocks - 1)), label=f"block {block}")
        axis.set(title=title + " per layer", xlabel="step")
        if num_blocks <= 12:
            axis.legend(fontsize=7)
    figure.tight_layout()
    output = Path(output) if output is not None else run_dir / "training.png"
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output
