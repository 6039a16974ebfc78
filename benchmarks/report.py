"""Aggregation (pooled repetitions, pair-by-pair ratios, MFU, targets) and the JSON / markdown / PNG outputs."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks import flops as F
from benchmarks.measure import summary
from benchmarks.suites import Suite

SCHEMA = "flamingo-vlm-benchmarks/1"
NAMES = {"ours": "ours", "openflamingo": "OpenFlamingo", "flamingo_pytorch": "flamingo-pytorch"}


# ---------------------------------------------------------------------------------------------- aggregation
def _pool(entries: list[dict[str, Any]], field: str) -> dict[str, Any]:
    return summary([v for e in entries for v in e[field]["values"]])


def _aggregate(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    first = entries[0]
    out: dict[str, Any] = {"rounds": len(entries)}
    memory = max(entries, key=lambda e: e.get("peak_delta_mb", 0))
    for field in ("peak_delta_mb", "peak_rss_mb", "baseline_rss_mb", "memory_method"):
        if field in memory:
            out[field] = memory[field]
    if kind == "train":
        out["seconds"] = _pool(entries, "seconds")
        out["tokens"] = first["tokens"]
        out["tokens_per_s"] = _rate(out["seconds"], first["tokens"])
        out["trainable_params"] = first["trainable_params"]
        out["loss"] = first["loss"]
    elif kind == "generate":
        out["ttft_s"] = _pool(entries, "ttft_s")
        out["total_s"] = _pool(entries, "total_s")
        new = first["new_tokens_generated"][0]
        out["new_tokens"] = new
        out["tokens_per_s"] = _rate(out["total_s"], new)
        decode = out["total_s"]["median"] - out["ttft_s"]["median"]
        out["decode_tokens_per_s"] = (new - 1) / decode if decode > 0 and new > 1 else None
        out["prompt_tokens"], out["images"] = first["prompt_tokens"], first["images"]
    elif kind in ("resampler", "xattn_block"):
        out["seconds"] = _pool(entries, "seconds")
    elif kind == "xattn_sweep":
        points = []
        for index, point in enumerate(first["points"]):
            merged: dict[str, Any] = {"images": point["images"]}
            for mode in ("prefill", "decode"):
                if mode in point:
                    merged[mode] = {"us_per_token": summary([v for e in entries
                                                             for v in e["points"][index][mode]["us_per_token"]["values"]]),
                                    "tokens": point[mode]["tokens"]}
            points.append(merged)
        out["points"] = points
    return out


def _rate(seconds: dict[str, Any], amount: float) -> dict[str, Any]:
    return {"median": amount / seconds["median"], "min": amount / seconds["max"], "max": amount / seconds["min"]}


def _pairwise(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """Speed-up of ours over theirs, repetition i against repetition i (runs alternate, so pairs are adjacent)."""
    count = min(len(ours), len(theirs))
    ratios = [theirs[i] / ours[i] for i in range(count)]
    return summary(ratios) | {"of_medians": statistics.median(theirs) / statistics.median(ours)}


def matmul_peaks(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The best matmul FLOP/s each interpreter (``ours`` / ``peers``) measured, by dtype, from the peak entries."""
    peaks: dict[str, dict[str, float]] = {}
    for entry in results:
        if entry["task"]["kind"] == "peak" and entry.get("ok"):
            side = peaks.setdefault(entry["interpreter"], {})
            for dtype, value in entry["matmul_peak"].items():
                side[dtype] = max(side.get(dtype, 0.0), value["flops_per_s"])
    return peaks


def build_report(suite: Suite, impls: list[str], results: list[dict[str, Any]], manifest: dict[str, Any],
                 machine: dict[str, Any], started: dt.datetime, finished: dt.datetime,
                 peer_python: str | None, skipped: list[dict[str, str]] | None = None) -> dict[str, Any]:
    s = suite.to_dict()
    vocab = manifest["vocab"]
    peaks = matmul_peaks(results)
    envs = {}
    for entry in results:
        if entry.get("env"):
            envs.setdefault(entry["impl"], entry["env"])
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    memory: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for entry in results:
        if entry["task"]["kind"] != "peak" and entry.get("ok"):
            target = memory if entry["task"].get("memory") else grouped
            target.setdefault(entry["key"], {}).setdefault(entry["impl"], []).append(entry)

    measurements: dict[str, dict[str, Any]] = {}
    for key, by_impl in grouped.items():
        for impl, entries in by_impl.items():
            task = entries[0]["task"]
            agg = _aggregate(task["kind"], entries) | {"task": task}
            if memory.get(key, {}).get(impl):  # a dedicated memory process supersedes the timing process's mark
                worst = max(memory[key][impl], key=lambda e: e["peak_delta_mb"])
                agg |= {k: worst[k] for k in ("peak_delta_mb", "peak_rss_mb", "baseline_rss_mb", "transient_mb",
                                              "memory_method")}
                agg["memory_process"] = True
            interpreter = "ours" if impl == "ours" else "peers"
            if task["kind"] == "train":
                count = F.training_step(s, vocab)
                agg["model_flops"] = count
                peak = peaks.get(interpreter, {}).get(task["precision"].split("-")[0])  # bf16-frozen: the bf16 peak
                agg["mfu"] = count["total"] / agg["seconds"]["median"] / peak if peak else None
                agg["achieved_flops_per_s"] = count["total"] / agg["seconds"]["median"]
            elif task["kind"] == "generate":
                count = F.generation(s, vocab, agg["prompt_tokens"], agg["images"], agg["new_tokens"],
                                     task["num_beams"])
                agg["model_flops"] = count
                peak = peaks.get(interpreter, {}).get(task.get("dtype", "fp32"))
                agg["mfu"] = count["total"] / agg["total_s"]["median"] / peak if peak else None
                agg["achieved_flops_per_s"] = count["total"] / agg["total_s"]["median"]
            measurements.setdefault(key, {})[impl] = agg

    ratios: dict[str, dict[str, Any]] = {}
    for key, by_impl in grouped.items():
        if "ours" not in by_impl:
            continue
        for peer, entries in by_impl.items():
            if peer == "ours":
                continue
            kind = entries[0]["task"]["kind"]
            ours_e, peer_e = by_impl["ours"], entries
            pair: dict[str, Any] = {}
            if kind in ("train", "resampler", "xattn_block"):
                pair["speedup"] = _pairwise(_values(ours_e, "seconds"), _values(peer_e, "seconds"))
            elif kind == "generate":
                pair["speedup_total"] = _pairwise(_values(ours_e, "total_s"), _values(peer_e, "total_s"))
                pair["speedup_ttft"] = _pairwise(_values(ours_e, "ttft_s"), _values(peer_e, "ttft_s"))
            elif kind == "xattn_sweep":
                pair["speedup_per_images"] = {}
                for op, pp in zip(measurements[key]["ours"]["points"], measurements[key][peer]["points"]):
                    pair["speedup_per_images"][str(op["images"])] = {
                        mode: pp[mode]["us_per_token"]["median"] / op[mode]["us_per_token"]["median"]
                        for mode in ("prefill", "decode") if mode in op and mode in pp}
            ours_mem, peer_mem = measurements[key]["ours"].get("peak_delta_mb"), measurements[key][peer].get("peak_delta_mb")
            if ours_mem is not None and peer_mem:
                pair["memory_ratio"] = ours_mem / peer_mem
            ratios.setdefault(key, {})[peer] = pair

    report = {
        "schema": SCHEMA,
        "suite": s,
        "matched_config": suite.matched_config() | {"vocab_size": vocab},
        "machine": machine,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "implementations": impls,
        "environments": envs,
        "torch_versions": {impl: env.get("torch") for impl, env in envs.items()},
        "peer_python": peer_python,
        "matmul_peak_flops_per_s": peaks,
        "measurements": measurements,
        "ratios": ratios,
        "failures": [{"impl": e["impl"], "key": e["key"], "error": e.get("error")} for e in results if not e.get("ok")],
        "skipped": list(skipped or []),  # measurements not run on this machine, each with its reason
        "raw": [{k: v for k, v in e.items() if k != "env"} for e in results],
    }
    foreign = [e.get("foreign_cpu_fraction") for e in results if e.get("foreign_cpu_fraction") is not None]
    report["foreign_cpu_max"] = max(foreign) if foreign else None
    report["targets"] = _targets(suite, report)
    return report


def _values(entries: list[dict[str, Any]], field: str) -> list[float]:
    return [v for e in entries for v in e[field]["values"]]


def _targets(suite: Suite, report: dict[str, Any]) -> list[dict[str, Any]]:
    ratios, meas = report["ratios"], report["measurements"]
    targets: list[dict[str, Any]] = []

    def add(name: str, required: str, reached: Any, met: bool | None) -> None:
        targets.append({"target": name, "required": required, "reached": reached, "met": met})

    skipped = {entry["key"] for entry in report.get("skipped", [])}
    for precision in suite.train_precisions:
        pair = ratios.get(f"train/{precision}", {}).get("openflamingo")
        reached = None if pair is None else round(pair["speedup"]["median"], 2)
        if f"train/{precision}" in skipped:
            reached = "skipped: no native bf16 on this CPU"
        add(f"training step tokens/s vs OpenFlamingo ({precision}, {suite.images_per_seq} images/seq)", ">= 1.5x",
            reached, None if pair is None else pair["speedup"]["median"] >= 1.5)
    most = max(suite.shots)
    for beams in suite.beams:
        pair = ratios.get(f"generate/shots={most}/beams={beams}", {}).get("openflamingo")
        label = "greedy" if beams == 1 else f"beam {beams}"
        add(f"{most}-shot query, {suite.new_tokens} new tokens, {label}: speed-up vs OpenFlamingo", ">= 3x",
            None if pair is None else round(pair["speedup_total"]["median"], 2),
            None if pair is None else pair["speedup_total"]["median"] >= 3)
        both = meas.get(f"generate/shots={most}/beams={beams}", {})
        if pair is not None and "ours" in both and "openflamingo" in both:
            # If our decoding steps cost nothing, the query would take our TTFT: the most any decoder could gain.
            targets[-1]["ceiling"] = round(both["openflamingo"]["total_s"]["median"] / both["ours"]["ttft_s"]["median"], 2)
    memory = {key: by_peer["openflamingo"]["memory_ratio"] for key, by_peer in ratios.items()
              if "openflamingo" in by_peer and "memory_ratio" in by_peer["openflamingo"]
              and key.startswith(("train", "generate"))}
    worst = max(memory.items(), key=lambda kv: kv[1]) if memory else None
    add("peak memory (workload delta) vs OpenFlamingo, every train/generate measurement", "<= 1.0x",
        None if worst is None else f"worst {worst[1]:.2f}x ({worst[0]}); "
        f"{sum(v <= 1.0 for v in memory.values())}/{len(memory)} at or below",
        None if worst is None else worst[1] <= 1.0)
    sweep = meas.get("xattn_sweep", {}).get("ours")
    if sweep:
        decode = [p["decode"]["us_per_token"]["median"] for p in sweep["points"] if "decode" in p]
        prefill = [p["prefill"]["us_per_token"]["median"] for p in sweep["points"] if "prefill" in p]
        flat = decode[-1] / decode[0] if decode else None
        add(f"cross-attention cost per generated token, {suite.sweep_images[-1]} vs {suite.sweep_images[0]} images "
            "in the prompt (ours)", "flat (<= 1.25x)",
            None if flat is None else round(flat, 2), None if flat is None else flat <= 1.25)
        if prefill:
            targets[-1]["prefill_ratio"] = round(prefill[-1] / prefill[0], 2)
    return targets


# ---------------------------------------------------------------------------------------------- markdown
def _fmt(stats: dict[str, Any] | None, scale: float = 1.0, digits: int = 0) -> str:
    if not stats:
        return "–"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(stats['median'] * scale)} [{f.format(stats['min'] * scale)}–{f.format(stats['max'] * scale)}]"


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def _mem(agg: dict[str, Any] | None) -> str:
    """Peak MB over a cold and a warm call, and (after the slash) over the warm call alone when measured."""
    if not agg or agg.get("peak_delta_mb") is None:
        return "–"
    text = f"{agg['peak_delta_mb']:,.0f}"
    return text + (f" / {agg['transient_mb']:,.0f}" if agg.get("transient_mb") is not None else "")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    s, meas, ratios = report["suite"], report["measurements"], report["ratios"]
    impls = report["implementations"]
    has_of = "openflamingo" in impls
    lines = [f"# Benchmarks: suite `{s['name']}` ({report['started_utc']})", ""]
    m = report["machine"]
    versions = ", ".join(f"{NAMES.get(k, k)}: torch {v}" for k, v in report["torch_versions"].items())
    lines += [f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores"
              + (f", {m['memory_gb']:.0f} GB RAM" if m.get("memory_gb") else "") + f". {versions}.", ""]
    peaks = report["matmul_peak_flops_per_s"]
    squares: dict[tuple[str, str], set[int]] = {}  # the sides of the squares timed (smaller where a call is slow)
    for entry in report.get("raw", []):
        if entry["task"]["kind"] == "peak" and entry.get("ok"):
            for dtype, value in entry["matmul_peak"].items():
                squares.setdefault((entry["interpreter"], dtype), set()).add(value["size"])

    def peak(side: str, dtype: str) -> str:
        flops = peaks[side].get(dtype, 0) / 1e9
        sides = "/".join(str(n) for n in sorted(squares.get((side, dtype), ())))
        rate = f"{flops:.0f}" if flops >= 10 else f"{flops:.1f}"
        return f"{dtype} {rate} GFLOP/s" + (f" ({sides}-square)" if sides else "")

    lines += ["Matmul peak (best of 6 square matmuls): " + "; ".join(
        f"{'ours' if side == 'ours' else 'peer env'} {peak(side, 'fp32')}, {peak(side, 'bf16')}" for side in peaks)
        + ".", ""]
    for entry in report.get("skipped", []):
        lines += [f"Skipped {entry['key']}: {entry['reason']}.", ""]
    if report.get("foreign_cpu_max") is not None:
        lines += [f"Other processes used at most {report['foreign_cpu_max']:.0%} of the machine during any worker"
                  + (" (**the machine was shared: treat the numbers with care**)." if report["foreign_cpu_max"] > 0.1
                     else "."), ""]
    cfg = report["matched_config"]
    lines += ["Matched configuration: " + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ".", ""]
    lines += ["Values are median [min–max] over the timed repetitions; speed-ups are computed pair by pair "
              "(repetition i of each side) and given as median [min–max]. MB: peak resident memory the workload "
              "added on top of the built model, over a first and a second call / over the second call alone "
              "(separate processes; see benchmarks/README.md).", ""]

    # --- training
    train_keys = [k for k in meas if k.startswith("train/")]
    if train_keys:
        lines += [f"## Training step (batch {s['batch']} x {s['seq_len']} tokens, {s['images_per_seq']} images per "
                  "sequence; forward + backward + AdamW step)", ""]
        head = "| precision | ours tokens/s |"
        sep = "|---|---:|"
        if has_of:
            head += " OpenFlamingo tokens/s | speed-up | ours MB | OpenFlamingo MB | ours MFU | OpenFlamingo MFU |"
            sep += "---:|---:|---:|---:|---:|---:|"
        else:
            head += " ours MB | ours MFU |"
            sep += "---:|---:|"
        lines += [head, sep]
        for key in train_keys:
            ours, of = meas[key].get("ours"), meas[key].get("openflamingo")
            row = f"| {key.split('/')[1]} | {_fmt(ours and ours['tokens_per_s'])} |"
            if has_of:
                pair = ratios.get(key, {}).get("openflamingo")
                row += (f" {_fmt(of and of['tokens_per_s'])} | {_fmt(pair and pair['speedup'], digits=2)} |"
                        f" {_mem(ours)} | {_mem(of)} |"
                        f" {_pct(ours and ours.get('mfu'))} | {_pct(of and of.get('mfu'))} |")
            else:
                row += f" {_mem(ours)} | {_pct(ours and ours.get('mfu'))} |"
            lines.append(row)
        lines.append("")

    # --- generation: fp32, then the queries with every weight and image in bf16
    for dtype, title in (("fp32", "fp32"), ("bf16", "bf16: every weight and image cast, MFU against the bf16 peak")):
        gen_keys = [k for k in meas if k.startswith("generate/") and k.endswith("/bf16") == (dtype == "bf16")]
        if not gen_keys:
            continue
        lines += [f"## Generation: one query, {s['new_tokens']} new tokens (batch 1, {title})", "",
                  "Time to first token (TTFT) and the whole query, in ms."]
        lines.append("")
        head = "| shots | beams | prompt tokens | ours TTFT | ours query | ours tokens/s |"
        sep = "|---:|---:|---:|---:|---:|---:|"
        if has_of:
            head += (" OpenFlamingo TTFT | OpenFlamingo query | OpenFlamingo tokens/s | TTFT speed-up | query "
                     "speed-up | ours MB | OpenFlamingo MB | ours MFU | OpenFlamingo MFU |")
            sep += "---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        else:
            head += " ours MB | ours MFU |"
            sep += "---:|---:|"
        lines += [head, sep]
        for key in gen_keys:
            ours, of = meas[key].get("ours"), meas[key].get("openflamingo")
            task = (ours or of)["task"]
            row = (f"| {task['shots']} | {task['num_beams']} | {(ours or of)['prompt_tokens']} |"
                   f" {_fmt(ours and ours['ttft_s'], 1e3, 1)} | {_fmt(ours and ours['total_s'], 1e3, 1)} |"
                   f" {_num(ours and ours['tokens_per_s']['median'], 0)} |")
            if has_of:
                pair = ratios.get(key, {}).get("openflamingo")
                row += (f" {_fmt(of and of['ttft_s'], 1e3, 1)} | {_fmt(of and of['total_s'], 1e3, 1)} |"
                        f" {_num(of and of['tokens_per_s']['median'], 0)} |"
                        f" {_fmt(pair and pair['speedup_ttft'], digits=2)} | {_fmt(pair and pair['speedup_total'], digits=2)} |"
                        f" {_mem(ours)} | {_mem(of)} |"
                        f" {_pct(ours and ours.get('mfu'))} | {_pct(of and of.get('mfu'))} |")
            else:
                row += f" {_mem(ours)} | {_pct(ours and ours.get('mfu'))} |"
            lines.append(row)
        lines.append("")

    # --- modules
    module_keys = [k for k in ("resampler", "xattn_block") if k in meas]
    if module_keys:
        peers = [i for i in ("flamingo_pytorch", "openflamingo") if i in impls]
        lines += [f"## Modules: forward + backward (ms; resampler on {s['batch'] * s['images_per_seq']} images, "
                  f"cross-attention block on {s['batch']} x {s['seq_len']} tokens, media as wide as the text)", ""]
        head = "| module | ours |" + "".join(f" {NAMES[p]} | speed-up vs {NAMES[p]} |" for p in peers)
        lines += [head, "|---|---:|" + "---:|---:|" * len(peers)]
        for key in module_keys:
            row = f"| {key} | {_fmt(meas[key].get('ours', {}).get('seconds'), 1e3, 2)} |"
            for peer in peers:
                pair = ratios.get(key, {}).get(peer)
                row += (f" {_fmt(meas[key].get(peer, {}).get('seconds'), 1e3, 2)} |"
                        f" {_fmt(pair and pair['speedup'], digits=2)} |")
            lines.append(row)
        lines.append("")

    # --- sweep
    if "xattn_sweep" in meas:
        sweep = meas["xattn_sweep"]
        order = [i for i in ("ours", "openflamingo", "flamingo_pytorch") if i in sweep]
        lines += [f"## Cross-attention cost per token against images in the prompt (one block, inference, µs/token)",
                  "", f"prefill: a {s['module_seq_len']}-token prompt holding the images (keys/values computed in the "
                  "call); decode: one generated token after that prompt (ours reads cached keys/values; OpenFlamingo "
                  "recomputes them from all the prompt's media at every step; flamingo-pytorch cannot decode "
                  "incrementally).", ""]
        head = "| images |" + "".join(f" {NAMES[i]} prefill |" for i in order) + \
            "".join(f" {NAMES[i]} decode |" for i in order if i != "flamingo_pytorch")
        lines += [head, "|---:|" + "---:|" * (head.count("|") - 2)]
        for index, images in enumerate(p["images"] for p in sweep[order[0]]["points"]):
            row = f"| {images} |"
            for impl in order:
                row += f" {_fmt(sweep[impl]['points'][index].get('prefill', {}).get('us_per_token'), digits=1)} |"
            for impl in order:
                if impl != "flamingo_pytorch":
                    row += f" {_fmt(sweep[impl]['points'][index].get('decode', {}).get('us_per_token'), digits=1)} |"
            lines.append(row)
        lines.append("")

    # --- targets
    if report["targets"]:
        lines += ["## Targets", "", "| target | required | reached | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
            reached = "not measured" if t["reached"] is None else t["reached"]
            if "ceiling" in t:
                reached = f"{reached} (ceiling, their query / our TTFT: {t['ceiling']})"
            if "prefill_ratio" in t:
                reached = f"{reached} (prefill incl. per-image keys/values: {t['prefill_ratio']})"
            lines.append(f"| {t['target']} | {t['required']} | {reached} | {met} |")
        lines.append("")
    if report["failures"]:
        lines += ["## Failures", ""] + [f"- {f['impl']} {f['key']}: {f['error']}" for f in report["failures"]] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plot
def plot_per_query(report: dict[str, Any], path: Path) -> bool:
    meas = report["measurements"]
    gen = {k: v for k, v in meas.items() if k.startswith("generate/") and not k.endswith("/bf16")}  # fp32 queries
    if not gen:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if "xattn_sweep" in meas else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    styles = {"ours": "-", "openflamingo": "--"}
    for impl in ("ours", "openflamingo"):
        for beams in sorted({v[impl]["task"]["num_beams"] for v in gen.values() if impl in v}):
            points = sorted((v[impl]["task"]["shots"], v[impl]["total_s"]) for v in gen.values()
                            if impl in v and v[impl]["task"]["num_beams"] == beams)
            if not points:
                continue
            shots = [p[0] for p in points]
            ax.errorbar(shots, [1e3 * p[1]["median"] for p in points],
                        yerr=[[1e3 * (p[1]["median"] - p[1]["min"]) for p in points],
                              [1e3 * (p[1]["max"] - p[1]["median"]) for p in points]],
                        linestyle=styles[impl], marker="o", capsize=3,
                        label=f"{NAMES[impl]}, {'greedy' if beams == 1 else f'beam {beams}'}")
    ax.set_xlabel("shots in the prompt")
    ax.set_ylabel(f"per-query time, ms ({report['suite']['new_tokens']} new tokens)")
    ax.set_title("Per-query time vs shots")
    ax.grid(alpha=0.3)
    ax.legend()
    if panels == 2:
        ax = axes[0][1]
        sweep = meas["xattn_sweep"]
        for impl, data in sweep.items():
            for mode, style in (("decode", "-"), ("prefill", ":")):
                pts = [(p["images"], p[mode]["us_per_token"]["median"]) for p in data["points"] if mode in p]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style, marker="o",
                            label=f"{NAMES.get(impl, impl)}, {mode}")
        ax.set_xlabel("images in the prompt")
        ax.set_ylabel("µs per token (one cross-attention block)")
        ax.set_yscale("log")
        ax.set_title("Cross-attention cost per token")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"suite {report['suite']['name']} — {report['machine']['cpu_model']}, "
                 f"{report['machine']['logical_cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(report: dict[str, Any], out_dir: Path, plot: bool = True) -> dict[str, Any]:
    """``<suite>-<UTC time>.json``, ``.md`` and ``.per_query_vs_shots.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report["started_utc"].replace(":", "").replace("+0000", "Z")
    stem = f"{report['suite']['name']}-{stamp[:15]}Z"
    paths: dict[str, Any] = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md"}
    text = markdown(report)
    paths["json"].write_text(json.dumps(report, indent=1) + "\n")
    paths["markdown"].write_text(text + "\n")
    if plot:
        png = out_dir / f"{stem}.per_query_vs_shots.png"
        if plot_per_query(report, png):
            paths["plot"] = png
    paths["markdown_text"] = text
    return paths


# ---------------------------------------------------------------------------------------------- schema check
def validate_report(report: dict[str, Any]) -> list[str]:
    """Problems with a report (empty when sound): schema, every expected measurement present for each
    implementation that supports it, and every number finite, timings and rates strictly positive."""
    import math

    from benchmarks.suites import SUPPORTED, Suite, task_key, tasks_for

    problems: list[str] = []
    if report.get("schema") != SCHEMA:
        problems.append(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    for field in ("suite", "machine", "torch_versions", "matmul_peak_flops_per_s", "measurements", "ratios",
                  "targets", "failures", "implementations"):
        if field not in report:
            problems.append(f"missing top-level field {field!r}")
    if problems:
        return problems
    if report["failures"]:
        problems.append(f"failed measurements: {report['failures']}")
    suite = Suite.from_dict(report["suite"])
    skipped = {entry["key"] for entry in report.get("skipped", [])}
    for impl in report["implementations"]:
        if not report["torch_versions"].get(impl):
            problems.append(f"no torch version recorded for {impl}")
        for task in tasks_for(suite):
            if (task["kind"] in SUPPORTED[impl] and task_key(task) not in skipped
                    and impl not in report["measurements"].get(task_key(task), {})):
                problems.append(f"measurement {task_key(task)} missing for {impl}")
    for side, peaks in report["matmul_peak_flops_per_s"].items():
        for dtype in ("fp32", "bf16"):
            if not (isinstance(peaks.get(dtype), (int, float)) and math.isfinite(peaks[dtype]) and peaks[dtype] > 0):
                problems.append(f"matmul peak {side}/{dtype} is {peaks.get(dtype)!r}")

    may_be_zero = {"peak_delta_mb", "transient_mb", "round", "shots"}

    def walk(value: Any, path: str, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}", str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", name)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            return
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                problems.append(f"{path} is not finite ({value})")
            elif value < 0 or (value == 0 and name not in may_be_zero):
                problems.append(f"{path} is {value}, expected > 0")
        else:
            problems.append(f"{path} has unexpected type {type(value).__name__}")

    walk(report["measurements"], "measurements", "")
    walk(report["ratios"], "ratios", "")
    for key, by_impl in report["measurements"].items():
        for impl, agg in by_impl.items():
            if agg["task"]["kind"] in ("train", "generate") and not agg.get("mfu"):
                problems.append(f"measurements.{key}.{impl}.mfu is missing")
            if "peak_rss_mb" not in agg:
                problems.append(f"measurements.{key}.{impl} has no peak memory")
    return problems


def rebuild(saved: dict[str, Any]) -> dict[str, Any]:
    """Recompute a report (ratios, MFU, targets) from the raw entries a saved JSON keeps."""
    raw = [dict(e, env=saved["environments"].get(e["impl"], {})) for e in saved["raw"]]
    return build_report(Suite.from_dict(saved["suite"]), saved["implementations"], raw,
                        {"vocab": saved["matched_config"]["vocab_size"]}, saved["machine"],
                        dt.datetime.fromisoformat(saved["started_utc"]), dt.datetime.fromisoformat(saved["finished_utc"]),
                        saved.get("peer_python"), skipped=saved.get("skipped"))


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report RESULT.json [OUT_DIR]``: rewrite the markdown and plot of a saved run."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    report = rebuild(json.loads(path.read_text()))
    out = Path(argv[1]) if len(argv) > 1 else path.parent
    paths = write_outputs(report, out)
    print(paths["markdown_text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
