"""The report's sections on the paper's tables, as pure functions of the recorded runs.

Each builder takes a :class:`~mmojax.reproduce._results.Results` (and plain
values) and returns a :class:`Section`: its markdown lines and the findings it
contributes to the verdict table and summary. Nothing here reads files, draws
figures or reloads data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from mmojax.reproduce import _paper, _results, _specs
from mmojax.reproduce._stats import (
    NOT_SUPPORTED,
    fmt_diff,
    fmt_summary,
    paired,
    pct,
    summary,
    verdict,
)

MODELS = _specs.MODELS
PAPER = _specs.PAPER_METHOD
JOINT = _specs.JOINT_METHODS
TASK_NAMES = {
    "sst2": "SST-2",
    "sst2-20k": "SST-2 (20k)",
    "ner": "NER",
    "qa": "QA",
    "synthetic": "synthetic",
}


class Finding(NamedTuple):
    """One comparison: a claim of the paper (``paper_claim``) or one of ours.

    ``diff`` is the summary of the per-seed paired differences in the claimed
    direction's units (fractions for metrics); ``ours`` its rendering.
    """

    claim: str
    paper: str
    ours: str
    verdict: str
    paper_claim: bool
    kind: str  # "ablation", "component", "task", "steps", "compute", "cost"
    task: str = ""
    model: str = ""
    method: str = ""
    diff: dict[str, float] | None = None
    at_floor: bool = False  # the models of this comparison learned next to nothing


class Section(NamedTuple):
    lines: tuple[str, ...]
    findings: tuple[Finding, ...] = ()


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table (and a blank line)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _diff_finding(
    claim, paper, a, b, *, paper_claim, kind, task="", model="", method="", scale=100.0
) -> Finding:
    """A finding on the paired per-seed difference ``a - b`` (claimed: positive)."""
    d = paired(*_results.paired_values(a, b))
    return Finding(
        claim,
        paper,
        fmt_diff(d, scale),
        verdict(d, +1),
        paper_claim,
        kind,
        task,
        model,
        method,
        d,
    )


def header(results: _results.Results, generated: str) -> Section:
    devices = sorted({r["device"] for r in results.runs})
    presets = sorted({r["config"]["preset"] for r in results.runs})
    return Section(
        (
            "# mmojax reproduction report",
            "",
            f"Generated {generated} from {len(results.runs)} runs in `runs/` beside this file "
            "(per run: `result.json` with the final metrics and config, `metrics.jsonl` with "
            "the curves, `arrays.npz` with validation predictions and labels). Devices: "
            f"{', '.join(devices) or 'none'}. Nothing below is typed by hand except the "
            "paper's own numbers, quoted for comparison. n = number of seeds in a cell; "
            "methods are paired by seed (same initialisation and data order).",
            "",
            "Methods are named by how they group parameters for sharing and "
            "synchronisation: `mmo-type-shape` is the paper's grouping (by parameter type "
            "and shape), `mmo-role` groups by role in the layer, `mmo-role-depth` by role "
            "and relative depth (the `mmojax train` default); `independent` trains the three "
            "models in one step with nothing shared.",
            "",
            "Common settings (paper section 4.4): batch 16, gradient accumulation 2, weight "
            "decay 0.01, alpha 0.2, beta 0.1 every 10 updates, adaptive lr, weights bert 1.0 / "
            "gpt2 0.8 / roberta 1.2, per-model clip 1.0; models from scratch, preset "
            f"{', '.join(presets) or 'n/a'} (`small`: hidden 128, 2/2/3 layers).",
            "",
        )
    )


def _lr_note(results: _results.Results, runs: Iterable[dict[str, Any]], setting: str) -> str:
    lrs = sorted({r["learning_rate"] for r in runs})
    text = f"Learning rate: {', '.join(f'{lr:g}' for lr in lrs) or 'n/a'}"
    t = results.tuning.get(setting)
    if t is None:
        return text + (" (the paper's)" if lrs == [_specs.PAPER_LR] else "")
    scores = ", ".join(f"{k}: {pct(v)}" for k, v in t["scores"].items())
    return text + (
        f" (tuned for independent on held-out training data, seed 0: best {t['best']:g}; {scores})"
    )


def ablation(results: _results.Results) -> Section:
    """Section 1: paper Table 1 on the synthetic set, with the ablated components."""
    idx = results.index("ablation")
    names = [s.name for s in _specs.ablation_settings() if s.name in results.settings("ablation")]
    if not names:
        return Section(())
    lines = [
        "## 1. Ablation (paper Table 1): synthetic set, validation accuracy",
        "",
        "Mean ± std [95% t-interval] (n) over seeds, in %. The paper's number in brackets.",
        "",
    ]
    findings = []
    for name in names:
        setting = next(s for s in _specs.ablation_settings() if s.name == name)
        runs = [r for (s, _, _), rs in idx.items() if s == name for r in rs.values()]
        lines += [
            f"### {name}: {setting.description}",
            "",
            _lr_note(results, runs, name),
            "",
        ]
        rows, train_rows = [], []
        for method in _specs.ABLATION_METHODS:
            cells, tcells, any_data = [method], [method], False
            for i, model in enumerate(MODELS):
                s = summary(list(results.values("ablation", name, method, model).values()))
                any_data |= s["n"] > 0
                paper = _paper.TABLE1.get(method)
                cells.append(fmt_summary(s) + (f" [{paper[i]:.1f}]" if paper else ""))
                mruns = results.method_runs("ablation", name, method, model).values()
                tl = summary([r["final_train_loss"].get(model) for r in mruns])
                tcells.append(f"{tl['mean']:.3f} (n={tl['n']})" if tl["n"] else "n/a (n=0)")
            if any_data:
                rows.append(cells)
                train_rows.append(tcells)
        lines += table(["method", *MODELS], rows)
        lines += ["Final training loss (mean over seeds; chance is 0.693):", ""]
        lines += table(["method", *MODELS], train_rows)
        ind = {m: results.values("ablation", name, "independent", m) for m in MODELS}
        for i, model in enumerate(MODELS):
            gain = _paper.TABLE1[PAPER][i] - _paper.TABLE1["independent"][i]
            for method in JOINT:
                findings.append(
                    _diff_finding(
                        f"{method} beats independent (synthetic, {name}, {model})",
                        f"+{gain:.1f}" if method == PAPER else "",
                        results.values("ablation", name, method, model),
                        ind[model],
                        paper_claim=method == PAPER,
                        kind="ablation",
                        task=f"synthetic/{name}",
                        model=model,
                        method=method,
                    )
                )
        # Each component: the full method minus the method without it, averaged
        # over the three models per seed.
        full = _model_mean(results, "ablation", name, PAPER)
        for method, component in _paper.COMPONENTS.items():
            gain = np.mean([a - b for a, b in zip(_paper.TABLE1[PAPER], _paper.TABLE1[method])])
            findings.append(
                _diff_finding(
                    f"removing {component} lowers accuracy (synthetic, {name}, mean of "
                    "the 3 models)",
                    f"+{gain:.1f}",
                    full,
                    _model_mean(results, "ablation", name, method),
                    paper_claim=True,
                    kind="component",
                    task=f"synthetic/{name}",
                    method=method,
                )
            )
    return Section(tuple(lines), tuple(findings))


def _runs_of(results, experiment, setting) -> list[dict[str, Any]]:
    return [r for r in results.runs if r["experiment"] == experiment and r["setting"] == setting]


def _model_mean(results, experiment, setting, method) -> dict[int, float]:
    """``{seed: mean main metric over the three models}`` (seeds with all three)."""
    per = [results.values(experiment, setting, method, m) for m in MODELS]
    seeds = set.intersection(*(set(v) for v in per))
    return {
        s: float(np.mean([v[s] for v in per]))
        for s in sorted(seeds)
        if all(v[s] is not None for v in per)
    }


def _task_rows(results, experiment, setting, label, methods):
    """Rows of the Table 2 block of one task (``label``: sst2, ner, sst2-20k) and its findings."""
    rows, findings = [], []
    for model in MODELS:
        ind = results.values(experiment, setting, "independent", model)
        p = _paper.TABLE2.get(label, {}).get(model)
        for method in methods:
            vals = results.values(experiment, setting, method, model)
            if not vals:
                continue
            f = _diff_finding(
                f"{method} beats independent ({TASK_NAMES[label]}, {model})",
                f"+{p[1] - p[0]:.1f}" if p and method == PAPER else "",
                vals,
                ind,
                paper_claim=bool(p) and method == PAPER,
                kind="task",
                task=label,
                model=model,
                method=method,
            )
            findings.append(f)
            paper = f"{p[0]} / {p[1]} ({p[1] - p[0]:+.1f})" if p and method == PAPER else ""
            rows.append(
                [
                    model,
                    method,
                    fmt_summary(summary(list(ind.values()))),
                    fmt_summary(summary(list(vals.values()))),
                    f.ours,
                    paper,
                ]
            )
    return rows, findings


def _cap(results, experiment, setting) -> str:
    caps = sorted(
        {
            r["config"].get("max_train")
            for r in results.runs
            if r["experiment"] == experiment and r["setting"] == setting
        },
        key=lambda x: (x is None, x or 0),
    )
    return ", ".join("all" if c is None else f"{c:,}" for c in caps)


def tasks(results: _results.Results) -> Section:
    """Section 2: paper Table 2 (SST-2, NER, QA) and the SST-2 more-data point."""
    methods = ("independent", *JOINT)
    lines = [
        "## 2. Real tasks (paper Table 2)",
        "",
        "Per model: independent, the joint method, and their paired per-seed difference "
        "(method - independent, points, mean [95% t-interval] (n)). Scores in % as mean ± std "
        "[95% interval] (n). 1 epoch, warmup 10%, lr tuned for independent on held-out "
        "training data.",
        "",
    ]
    findings = []
    header_row = ["model", "method", "independent", "method's score", "difference", "paper"]
    exp, setting = results.sst2_source()
    blocks = [
        ("sst2", exp, setting, "SST-2 dev accuracy"),
        ("ner", "tasks", "ner", "CoNLL-2003 validation entity F1"),
    ]
    for task, exp, setting, metric in blocks:
        idx = results.index(exp)
        have = [m for m in methods[1:] if (setting, m, MODELS) in idx]
        lines += [f"### {TASK_NAMES[task]}: {metric}", ""]
        if not have:
            lines += ["No runs yet (n=0).", ""]
            continue
        cap = _cap(results, exp, setting)
        note = (
            " These are the final dev accuracies of the steps-to-target runs (the same "
            "training, evaluated every few updates)."
            if exp == "steps-to-target"
            else ""
        )
        lines += [
            f"Training examples: {cap}.{note} Paper: independent / mmo (gain). "
            + _lr_note(results, _runs_of(results, exp, setting), task)
            + ".",
            "",
        ]
        rows, f = _task_rows(results, exp, setting, task, have)
        lines += table(header_row, rows)
        findings += f
    lines += _qa_block(results, findings)
    lines += _more_data_block(results, findings)
    return Section(tuple(lines), tuple(findings))


def _qa_block(results, findings) -> list[str]:
    lines = ["### QA: SQuAD v1.1 exact match and F1", ""]
    idx = results.index("tasks")
    have = [m for m in ("independent", *JOINT) if ("qa", m, MODELS) in idx]
    lines += [
        "Evaluated on `squad/dev.json`: an **article split of the official SQuAD v1.1 dev "
        "set** (its last 10 articles, 1,988 questions; training questions come from its "
        "other 38 articles), so these numbers are not comparable to leaderboard figures. "
        "Official v1.1 answer normalisation. The paper reports one number per model "
        "(its Table 2, independent / mmo), shown beside our F1.",
        "",
    ]
    if not have:
        lines += ["No QA runs yet (n=0).", ""]
        return lines
    setting = next(s for s in _specs.task_settings(None) if s.name == "qa")
    lines += [
        f"Training questions: {_cap(results, 'tasks', 'qa')}. Setting: {setting.description}. "
        + _lr_note(results, _runs_of(results, "tasks", "qa"), "qa")
        + ".",
        "",
    ]
    floor_lines, at_floor = _qa_floor(results)
    rows = []
    for model in MODELS:
        ind_f1 = results.values("tasks", "qa", "independent", model, "f1")
        p = _paper.TABLE2["qa"][model]
        for method in have:
            em = results.values("tasks", "qa", method, model, "exact_match")
            f1 = results.values("tasks", "qa", method, model, "f1")
            diff = ""
            if method != "independent":
                f = _diff_finding(
                    f"{method} beats independent (QA F1, {model})",
                    f"+{p[1] - p[0]:.1f}" if method == PAPER else "",
                    f1,
                    ind_f1,
                    paper_claim=method == PAPER,
                    kind="task",
                    task="qa",
                    model=model,
                    method=method,
                )._replace(at_floor=at_floor)
                findings.append(f)
                diff = f.ours
            paper = {"independent": f"{p[0]}", PAPER: f"{p[1]}"}.get(method, "")
            rows.append(
                [
                    model,
                    method,
                    fmt_summary(summary(list(em.values()))),
                    fmt_summary(summary(list(f1.values()))),
                    diff,
                    paper,
                ]
            )
    lines += table(
        ["model", "method", "exact match", "F1", "F1 difference vs independent", "paper"], rows
    )
    return lines + floor_lines


# Below this mean dev F1 (0-1) of ``independent`` the QA models are called "at the floor".
QA_FLOOR_F1 = 0.10


def _qa_floor(results) -> tuple[list[str], bool]:
    """How far the independent QA models got (dev F1 and loss beside training and
    held-out), and whether they are at the floor (dev F1 under ``QA_FLOOR_F1``)."""
    runs = list(results.method_runs("tasks", "qa", "independent", MODELS[0]).values())
    if not runs:
        return [], False
    dev_f1 = float(np.mean([r["final"][m]["f1"] for r in runs for m in MODELS]))
    losses = [r["final"][m].get("loss") for r in runs for m in MODELS]
    dev_loss = float(np.mean(losses)) if None not in losses else math.nan
    train_loss = [
        r["final_train_loss"][m] for r in runs if r.get("final_train_loss") for m in MODELS
    ]
    tuning = results.tuning.get("qa", {})
    held = tuning.get("scores", {}).get(f"{tuning.get('best', 0):g}")
    text = (
        f"How far the models got (independent, {len(runs)} seed(s), mean of the three "
        f"models): dev F1 {100 * dev_f1:.1f}"
    )
    if not math.isnan(dev_loss):
        text += (
            f", dev loss {dev_loss:.2f} (the mean of the start and end cross-entropies; a "
            f"uniform guess over 384 positions scores {np.log(384):.2f})"
        )
    if train_loss:
        text += f" against {np.mean(train_loss):.2f} on the last training batches"
    if held is not None:
        text += (
            f"; F1 {100 * held:.1f} on held-out *training* questions at the same lr (the lr "
            "search; those questions share articles with the training ones)"
        )
    text += "."
    at_floor = dev_f1 < QA_FLOOR_F1
    if at_floor:
        text += (
            f" With a dev F1 under {100 * QA_FLOOR_F1:.0f} the models are **at the floor**: "
            "the gap to the held-out training questions says they fit the training articles "
            "rather than learned to read, so a difference between methods here says "
            "little about the paper's QA claim. "
            "Larger models, more questions and pretrained encoders (a GPU budget) are what "
            "would test it."
        )
    return [text, ""], at_floor


def _more_data_block(results, findings) -> list[str]:
    idx = results.index("tasks")
    if not any(k[0] == "sst2-20k" for k in idx):
        return []
    lines = [
        "### More data: SST-2 with 20,000 training sentences",
        "",
        "Does the difference change when the models are better trained? Same schedule "
        "(1 epoch, warmup 10%, the lr tuned for SST-2), 20,000 instead of "
        f"{_cap(results, *results.sst2_source())} training sentences.",
        "",
    ]
    have = [m for m in JOINT if ("sst2-20k", m, MODELS) in idx]
    rows, f = _task_rows(results, "tasks", "sst2-20k", "sst2-20k", have)
    findings += f
    # The difference at the smaller size, for the same method, beside it.
    small_exp, small_setting = results.sst2_source()
    out = []
    for row in rows:
        model, method = row[0], row[1]
        small = paired(
            *_results.paired_values(
                results.values(small_exp, small_setting, method, model),
                results.values(small_exp, small_setting, "independent", model),
            )
        )
        out.append([*row[:5], fmt_diff(small)])
    lines += table(
        [
            "model",
            "method",
            "independent",
            "method's score",
            "difference (20k)",
            "difference (smaller set)",
        ],
        out,
    )
    return lines


def _median_hits(runs, threshold, model) -> str:
    hits = [r["time_to"][threshold][model] for r in runs.values()]
    reached = [h["update"] for h in hits if h]
    if not reached:
        return f"never (0/{len(hits)})"
    return f"{np.median(reached):.0f} (reached {len(reached)}/{len(hits)})"


def steps(results: _results.Results, target: float) -> Section:
    """Section 3: updates to the target SST-2 accuracy (the paper's steps table)."""
    idx = results.index("steps-to-target")
    keys = [k for k in idx if k[2] == MODELS]
    if not keys:
        return Section(())
    setting = keys[0][0]
    every = sorted({r["config"].get("eval_every") for k in keys for r in idx[k].values()})
    thr = f"{target:g}"
    methods = [m for m in ("independent", *JOINT) if (setting, m, MODELS) in idx]
    lines = [
        f"## 3. Steps to {pct(target, 0)} validation accuracy (paper's steps table)",
        "",
        "Optimizer updates until the SST-2 dev accuracy first reaches the target, evaluated "
        f"every {', '.join(str(e) for e in every)} updates: median over the runs that "
        "reached it (reached / runs). 'never' = not reached; such runs are counted, not "
        "dropped.",
        "",
    ]
    rows, findings = [], []
    for model in MODELS:
        row = [model] + [_median_hits(idx[(setting, m, MODELS)], thr, model) for m in methods]
        p = _paper.STEPS90.get(model)
        rows.append([*row, f"{p[0]} / {p[1]}" if p and thr == "0.9" else ""])
        if p and thr == "0.9" and PAPER in methods:
            runs = {m: idx[(setting, m, MODELS)] for m in ("independent", PAPER)}
            upd = {
                m: {s: (r["time_to"][thr][model] or {}).get("update") for s, r in runs[m].items()}
                for m in runs
            }
            d = paired(*_results.paired_values(upd["independent"], upd[PAPER]))
            reached = {m: sum(v is not None for v in upd[m].values()) for m in upd}
            ours = (
                fmt_diff(d, 1.0, 0) + " fewer updates"
                if d["n"]
                else f"never reached (independent {reached['independent']}/"
                f"{len(upd['independent'])}, {PAPER} {reached[PAPER]}/{len(upd[PAPER])})"
            )
            findings.append(
                Finding(
                    f"{PAPER} reaches {pct(target, 0)} SST-2 accuracy in fewer updates ({model})",
                    f"{p[0] - p[1]} fewer",
                    ours,
                    verdict(d, +1) if d["n"] else NOT_SUPPORTED,
                    True,
                    "steps",
                    "sst2",
                    model,
                    PAPER,
                    d,
                )
            )
    lines += table(["model", *methods, "paper ind / mmo (90%)"], rows)
    lines += ["Median updates to lower thresholds (reached / runs):", ""]
    thr_rows = []
    for t in ("0.7", "0.75", "0.8", "0.85"):
        for model in MODELS:
            thr_rows.append(
                [t, model] + [_median_hits(idx[(setting, m, MODELS)], t, model) for m in methods]
            )
    lines += table(["threshold", "model", *methods], thr_rows)
    return Section(tuple(lines), tuple(findings))
