"""The table of ``examples/finetune_sst2.sh``'s runs, computed from their metrics files.

    python examples/finetune_table.py [results/finetune]

Prints, in markdown: MiniLM alone; then per model the dev accuracy of the joint
(``mmo-role-depth``) and independent runs over the seeds found (mean, std, 95%
t-interval, n) and the paired per-seed difference; and the wall time of each kind
of run. Nothing is typed by hand: a run that has not finished is left out and n
says how many there are.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

from mmojax.reproduce import _stats


def final_eval(run_dir: str) -> dict[str, dict[str, float]]:
    """``{model: metrics}`` of the run's last evaluation."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if r.get("kind") == "eval"]
    return evals[-1]["models"]


def wall_time(run_dir: str) -> float | None:
    """Seconds of the whole process, from ``/usr/bin/time`` in the run's log."""
    with open(os.path.join(run_dir, "log.txt")) as f:
        match = re.search(r"([\d.]+) s wall", f.read())
    return float(match.group(1)) if match else None


def accuracy(run_dir: str, model: str) -> float:
    return final_eval(run_dir)[model]["accuracy"]


def runs(root: str, method: str) -> dict[int, str]:
    out = {}
    for path in glob.glob(os.path.join(root, f"{method}-seed*")):
        if os.path.exists(os.path.join(path, "table.txt")):
            out[int(path.rsplit("seed", 1)[1])] = path
    return dict(sorted(out.items()))


# What a paired difference's 95% interval says (joint minus independent).
_READING = {
    _stats.HELD: "joint higher",
    _stats.CONTRADICTED: "joint lower",
    _stats.NOT_SUPPORTED: "no clear difference",
    _stats.NOT_MEASURED: "fewer than 2 paired seeds",
}


def main(root: str) -> str:
    lines = []
    alone = os.path.join(root, "minilm-alone-seed0")
    if os.path.exists(os.path.join(alone, "table.txt")):
        acc = final_eval(alone)["bert"]["accuracy"]
        lines.append(
            f"MiniLM alone (6,000 sentences, 1 epoch, seed 0): dev accuracy **{100 * acc:.1f}%** "
            f"({wall_time(alone):.0f} s)."
        )
        lines.append("")
    joint, ind = runs(root, "mmo-role-depth"), runs(root, "independent")
    seeds = sorted(set(joint) & set(ind))
    lines.append("| model | independent | mmo-role-depth | mmo-role-depth - independent (paired) |")
    lines.append("|---|---|---|---|")
    for model, label in (
        ("bert", "MiniLM (pretrained)"),
        ("gpt2", "GPT-2 (scratch)"),
        ("roberta", "RoBERTa (scratch)"),
    ):
        a = [final_eval(ind[s])[model]["accuracy"] for s in seeds]
        b = [final_eval(joint[s])[model]["accuracy"] for s in seeds]
        diff = _stats.paired(b, a)
        lines.append(
            f"| {label} | {_stats.fmt_summary(_stats.summary(a))} | "
            f"{_stats.fmt_summary(_stats.summary(b))} | "
            f"{_stats.fmt_diff(diff)} ({_READING[_stats.verdict(diff)]}) |"
        )
    lines.append("")
    lines.append(
        "Per seed, mmo-role-depth - independent in points (seeds "
        + ", ".join(map(str, seeds))
        + "): "
        + "; ".join(
            label
            + " "
            + ", ".join(
                f"{100 * (accuracy(joint[s], m) - accuracy(ind[s], m)):+.1f}" for s in seeds
            )
            for m, label in (("bert", "MiniLM"), ("gpt2", "GPT-2"), ("roberta", "RoBERTa"))
        )
        + "."
    )
    times = {
        name: [wall_time(d) for d in group.values()]
        for name, group in (("independent", ind), ("mmo-role-depth", joint))
    }
    lines.append("")
    lines.append(
        "Wall time per joint run (one process: data, compilation, training, evaluation): "
        + "; ".join(
            f"{name} {sum(t) / len(t):.0f} s (n={len(t)})" for name, t in times.items() if t
        )
        + "."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "results/finetune"))
