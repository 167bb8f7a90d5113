"""``report.md``: every number computed from the recorded runs, beside the paper's claims."""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from mmojax.reproduce import _figures, _specs
from mmojax.reproduce._stats import fmt_summary, paired, pct, summary, verdict

# The paper's claims, quoted from its Tables 1-2, the steps-to-90% table and Fig. 7.
PAPER_TABLE1 = {
    "mmo-type-shape": (100.0, 100.0, 100.0),
    "no-sharing": (86.2, 91.4, 88.9),
    "no-sync": (94.7, 96.1, 95.3),
    "no-adaptive-lr": (92.3, 94.5, 93.8),
    "independent": (82.4, 87.5, 84.2),
}
PAPER_TABLE2 = {  # task -> model -> (independent, mmo)
    "sst2": {"bert": (89.2, 90.7), "gpt2": (87.8, 89.5), "roberta": (90.4, 92.1)},
    "ner": {"bert": (85.6, 86.8), "gpt2": (82.3, 84.2), "roberta": (86.9, 88.4)},
    "qa": {"bert": (78.3, 79.6), "gpt2": (76.1, 78.2), "roberta": (80.2, 81.9)},
}
PAPER_STEPS90 = {"bert": (846, 612), "gpt2": (921, 588), "roberta": (753, 539)}
_JOINT_METHODS = _specs.JOINT_METHODS
PAPER_COMPUTE = {"sequential independent": 3.0, "parallel independent": 1.2, "mmo-type-shape": 1.0}
MODELS = _specs.MODELS


def load_results(workdir: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(
        glob.glob(os.path.join(workdir, "runs", "**", "result.json"), recursive=True)
    ):
        with open(path) as f:
            res = json.load(f)
        res["_dir"] = os.path.dirname(path)
        out.append(res)
    return out


def _index(results, experiment):
    """``{(setting, method, models): {seed: result}}`` for one experiment."""
    idx = defaultdict(dict)
    for r in results:
        if r["experiment"] == experiment:
            idx[(r["setting"], r["method"], tuple(r["models"]))][r["seed"]] = r
    return idx


def _metric(r, model):
    if r is None or model not in r["final"]:
        return None
    return r["final"][model].get(r["main_metric"])


def _seeds(idx, key):
    return sorted(idx.get(key, {}))


class _Doc:
    def __init__(self):
        self.lines: list[str] = []
        self.findings: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header, rows) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")
        self.add("")


def _method_runs(idx, setting, method, model):
    """``{seed: run}`` that trained ``model`` under ``method`` (distillation: the teacher's
    own run for RoBERTa, the students' run for the others)."""
    if method == "distillation" and model == _specs.TEACHER:
        return idx.get((setting, "independent", (_specs.TEACHER,)), {})
    if method == "distillation":
        return idx.get((setting, method, tuple(m for m in MODELS if m != _specs.TEACHER)), {})
    return idx.get((setting, method, MODELS), {})


def _method_values(idx, setting, method, model):
    """Per-seed main metric of ``model`` under ``method``."""
    return {s: _metric(r, model) for s, r in _method_runs(idx, setting, method, model).items()}


def _ablation(doc, results, workdir):
    idx = _index(results, "ablation")
    settings = [s for s in _specs.ablation_settings() if any(k[0] == s.name for k in idx)]
    if not settings:
        return
    doc.add(
        "## 1. Ablation (paper Table 1): synthetic set, validation accuracy",
        "",
        "Mean ± std [95% t-interval] over seeds (n), in %. Methods are paired: the same "
        "initialisation and data order per seed. The paper's number is in brackets.",
        "",
    )
    tuning = _tuning(workdir)
    for setting in settings:
        lrs = sorted(
            {
                r["learning_rate"]
                for (s, _, _), runs in idx.items()
                if s == setting.name
                for r in runs.values()
            }
        )
        doc.add(
            f"### {setting.name}: {setting.description}",
            "",
            f"Learning rate: {', '.join(f'{lr:g}' for lr in lrs)}"
            + (
                f" (tuned for independent on held-out training data: {tuning[setting.name]})"
                if setting.name in tuning
                else " (the paper's)"
            ),
            "",
        )
        rows, train_rows = [], []
        for method in _specs.ABLATION_METHODS:
            cells, tcells, any_data = [method], [method], False
            for i, model in enumerate(MODELS):
                vals = _method_values(idx, setting.name, method, model)
                s = summary(list(vals.values()))
                any_data |= s["n"] > 0
                paper = PAPER_TABLE1.get(method)
                cells.append(fmt_summary(s) + (f" [{paper[i]:.1f}]" if paper else ""))
                runs = _method_runs(idx, setting.name, method, model)
                tl = summary([r["final_train_loss"].get(model) for r in runs.values()])
                tcells.append(f"{tl['mean']:.3f}" if tl["n"] else "n/a")
            if any_data:
                rows.append(cells)
                train_rows.append(tcells)
        doc.table(["method", *MODELS], rows)
        doc.add("Final training loss (mean over seeds; chance is 0.693):", "")
        doc.table(["method", *MODELS], train_rows)
        # Paired effects against independent, for the findings.
        for method in _JOINT_METHODS:
            for model in MODELS:
                a = _method_values(idx, setting.name, method, model)
                b = _method_values(idx, setting.name, "independent", model)
                seeds = sorted(set(a) & set(b))
                if len(seeds) < 1:
                    continue
                d = paired([a[s] for s in seeds], [b[s] for s in seeds])
                if method != "mmo-type-shape":
                    doc.findings.append(
                        f"Synthetic, {setting.name}, {model}: {method} - independent = "
                        f"{fmt_summary(d)} points: {verdict(d, +1)}."
                    )
                else:
                    i = MODELS.index(model)
                    paper_gain = PAPER_TABLE1["mmo-type-shape"][i] - PAPER_TABLE1["independent"][i]
                    doc.findings.append(
                        f"Synthetic, {setting.name}, {model}: mmo - independent = "
                        f"{fmt_summary(d)} points; paper claims +{paper_gain:.1f}: "
                        f"{verdict(d, +1)}."
                    )


def _tuning(workdir):
    out = {}
    for path in glob.glob(os.path.join(workdir, "tuning", "*.json")):
        with open(path) as f:
            t = json.load(f)
        scores = ", ".join(f"{k}: {pct(v)}" for k, v in t["scores"].items())
        out[t["setting"]] = f"best {t['best']:g} ({scores})"
    return out


def _tasks(doc, results, opts):
    idx = _index(results, "tasks")
    borrowed = {}
    if not any(k[0] == "sst2" for k in idx):
        # The steps-to-target runs train SST-2 the same way (they only evaluate more often).
        borrowed = {
            ("sst2", method, models): runs
            for (setting, method, models), runs in _index(results, "steps-to-target").items()
            if setting == "sst2-steps" and models == MODELS
        }
        idx.update(borrowed)
    doc.add(
        "## 2. Real tasks (paper Table 2)",
        "",
        "Independent vs the joint methods per model; difference = method - independent per "
        "seed (paired), mean [95% interval]. SST-2: dev accuracy; NER: CoNLL-2003 validation "
        "entity F1; QA: SQuAD F1."
        + (
            " The SST-2 rows are the final dev accuracies of the "
            "steps-to-target runs (same training, evaluated more "
            "often)."
            if borrowed
            else ""
        ),
        "",
    )
    rows = []
    for task in ("sst2", "ner", "qa"):
        settings = {k[0] for k in idx if k[0] == task}
        if not settings:
            folder = {"sst2": "sst2", "ner": "conll2003", "qa": "squad"}[task]
            have = bool(opts.data_dir) and os.path.isdir(os.path.join(opts.data_dir, folder))
            status = "not run yet" if have else f"no data ({folder}/ not given)"
            for model in MODELS:
                p = PAPER_TABLE2[task][model]
                rows.append(
                    [task, model, "mmo-type-shape", status, status, "n/a", f"{p[0]} / {p[1]}"]
                )
            continue
        for model in MODELS:
            ind = _method_values(idx, task, "independent", model)
            p = PAPER_TABLE2[task][model]
            for method in _JOINT_METHODS:
                if (task, method, MODELS) not in idx:
                    continue
                vals = _method_values(idx, task, method, model)
                seeds = sorted(set(ind) & set(vals))
                d = paired([vals[s] for s in seeds], [ind[s] for s in seeds])
                paper = (
                    f"{p[0]} / {p[1]} (+{p[1] - p[0]:.1f})" if method == "mmo-type-shape" else ""
                )
                rows.append(
                    [
                        task,
                        model,
                        method,
                        fmt_summary(summary(list(ind.values()))),
                        fmt_summary(summary(list(vals.values()))),
                        fmt_summary(d),
                        paper,
                    ]
                )
                claim = f" (paper: +{p[1] - p[0]:.1f})" if method == "mmo-type-shape" else ""
                doc.findings.append(
                    f"{task}, {model}: {method} - independent = "
                    f"{fmt_summary(d)} points{claim}: {verdict(d, +1)}."
                )
    doc.table(
        [
            "task",
            "model",
            "method",
            "independent",
            "method's score",
            "method - independent",
            "paper ind / mmo",
        ],
        rows,
    )
    if opts.max_train:
        doc.add(f"Training sets capped at {opts.max_train} examples (CPU budget).", "")


def _steps(doc, results, opts, fig_dir):
    idx = _index(results, "steps-to-target")
    keys = [k for k in idx if k[2] == MODELS]
    if not keys:
        return None
    setting = keys[0][0]
    target = f"{opts.target:g}"
    doc.add(
        f"## 3. Steps to {pct(opts.target, 0)} validation accuracy (paper's steps table)",
        "",
        f"Optimizer updates until the SST-2 dev accuracy first reaches the target, "
        f"evaluated every {opts.eval_every} updates. 'never' = not reached in the run; "
        "such runs are counted, not dropped.",
        "",
    )
    methods = [m for m in ("independent", *_JOINT_METHODS) if (setting, m, MODELS) in idx]
    rows = []
    for model in MODELS:
        row = [model]
        for method in methods:
            runs = idx.get((setting, method, MODELS), {})
            hits = [r["time_to"][target][model] for r in runs.values()]
            reached = [h["update"] for h in hits if h]
            row.append(
                f"{np.median(reached):.0f} (reached {len(reached)}/{len(hits)})"
                if reached
                else f"never (0/{len(hits)})"
            )
        p = PAPER_STEPS90[model]
        rows.append([*row, f"{p[0]} / {p[1]}"])
    doc.table(["model", *methods, "paper ind / mmo (90%)"], rows)
    doc.add("Median updates to lower thresholds (reached / runs):", "")
    thr_rows = []
    for thr in ("0.7", "0.75", "0.8", "0.85"):
        for model in MODELS:
            row = [thr, model]
            for method in methods:
                runs = idx.get((setting, method, MODELS), {})
                reached = [
                    r["time_to"][thr][model]["update"]
                    for r in runs.values()
                    if r["time_to"][thr][model]
                ]
                row.append(
                    f"{np.median(reached):.0f} ({len(reached)}/{len(runs)})"
                    if reached
                    else f"never (0/{len(runs)})"
                )
            thr_rows.append(row)
    doc.table(["threshold", "model", *methods], thr_rows)
    return setting


def _compute(doc, results, opts, setting, fig_dir):
    idx = _index(results, "steps-to-target")
    if setting is None:
        return None
    alone = [idx.get((setting, "independent", (m,)), {}) for m in MODELS]
    seeds = sorted(set.intersection(*(set(a) for a in alone))) if all(alone) else []
    joint = idx.get((setting, "independent", MODELS), {})
    mmo = idx.get((setting, "mmo-type-shape", MODELS), {})
    seeds = [s for s in seeds if s in joint and s in mmo]
    if not seeds:
        return None
    # The alignment methods join the table when they ran for the same seeds.
    joint_runs = {"parallel independent": joint, "mmo-type-shape": mmo}
    for method in _JOINT_METHODS[1:]:
        runs = idx.get((setting, method, MODELS), {})
        if all(s in runs for s in seeds):
            joint_runs[method] = runs
    wall = {
        "sequential independent": np.mean([sum(a[s]["wall_time"] for a in alone) for s in seeds])
    }
    wall.update(
        {k: np.mean([runs[s]["wall_time"] for s in seeds]) for k, runs in joint_runs.items()}
    )
    norm = {k: v / wall["mmo-type-shape"] for k, v in wall.items()}
    doc.add(
        "## 4. Compute (paper Fig. 7)",
        "",
        f"Measured wall time of whole runs (training, compilation and evaluation) on "
        f"{mmo[seeds[0]]['device']}, mean over seeds {seeds}; sequential independent = the "
        "three single-model runs one after another, parallel independent = the three "
        "models in one jitted step without sharing.",
        "",
    )
    doc.table(
        ["approach", "wall time (s)", "normalised (mmo = 1)", "paper"],
        [[k, f"{wall[k]:.1f}", f"{norm[k]:.2f}", PAPER_COMPUTE.get(k, "")] for k in wall],
    )
    target = f"{opts.target:g}"
    rows = []
    for name, runs_of in joint_runs.items():
        t = [
            max((r["time_to"][target][m] or {"time": math.inf})["time"] for m in MODELS)
            for r in (runs_of[s] for s in seeds)
        ]
        rows.append([name, "never" if not np.isfinite(np.mean(t)) else f"{np.mean(t):.1f}"])
    doc.add(f"Wall time until every model reached {pct(opts.target, 0)} (mean):", "")
    doc.table(["approach", "seconds"], rows)
    doc.findings.append(
        f"Compute: sequential / parallel / mmo = {norm['sequential independent']:.2f} / "
        f"{norm['parallel independent']:.2f} / 1.00 (paper: 3.0 / 1.2 / 1.0)."
    )
    return _figures.compute_bars(
        norm, os.path.join(fig_dir, "fig7_compute.png"), "wall time (mmo = 1)"
    )


def _collapse(doc, results):
    doc.add(
        "## 6. Collapse diagnostics",
        "",
        "For every (type, shape) key shared by several models: the mean pairwise cosine "
        "similarity of its members' final values across models (mean over seeds), "
        "independent vs the joint methods. Values near 1.00 mean the members became copies "
        "of each other. Below each table: the final training loss each model reached "
        "(mean over seeds), to see whether a model lost capacity.",
        "",
    )
    for exp in ("ablation", "steps-to-target", "tasks"):
        idx = _index(results, exp)
        for setting in sorted({k[0] for k in idx}):
            methods = [m for m in ("independent", *_JOINT_METHODS) if idx.get((setting, m, MODELS))]
            if "independent" not in methods or len(methods) < 2:
                continue
            first = next(iter(idx[(setting, methods[1], MODELS)].values()))
            rows = []
            for key in first["collapse"]:
                row = [key]
                for m in methods:
                    s = summary(
                        [
                            r["collapse"][key]["cross_model"]
                            for r in idx[(setting, m, MODELS)].values()
                            if key in r["collapse"]
                        ]
                    )
                    row.append(f"{s['mean']:.2f}")
                rows.append(row)
            doc.add(f"### {exp}: {setting}", "")
            doc.table(["key (type, shape)", *methods], rows)
            loss_rows = []
            for m in methods:
                runs = idx[(setting, m, MODELS)].values()
                loss_rows.append(
                    [
                        m,
                        *(
                            f"{np.mean([r['final_train_loss'][mod] for r in runs]):.3f}"
                            for mod in MODELS
                        ),
                    ]
                )
            doc.table(["final training loss", *MODELS], loss_rows)


def _ensembles(doc, results):
    doc.add(
        "## 7. Ensembles and diversity",
        "",
        "Accuracy of the three models' averaged predicted probabilities and their mean "
        "pairwise disagreement on the validation split (mean over seeds).",
        "",
    )
    rows = []
    for exp in ("ablation", "steps-to-target", "tasks"):
        idx = _index(results, exp)
        for (setting, method, models), runs in sorted(idx.items()):
            if (
                method not in ("independent", *_JOINT_METHODS, "mutual-learning")
                or models != MODELS
            ):
                continue
            accs, dis, best = [], [], []
            for r in runs.values():
                path = os.path.join(r["_dir"], "arrays.npz")
                if not os.path.exists(path) or r["task"] not in ("synthetic", "sst2"):
                    continue
                arr = np.load(path)
                probs = [arr[f"probs/{m}"] for m in MODELS if f"probs/{m}" in arr]
                labels = _labels(r)
                if len(probs) < 2 or labels is None:
                    continue
                preds = [p.argmax(-1) for p in probs]
                accs.append(float((np.mean(probs, 0).argmax(-1) == labels).mean()))
                dis.append(float(np.mean([(a != b).mean() for a, b in combinations(preds, 2)])))
                best.append(max(float((p == labels).mean()) for p in preds))
            if accs:
                rows.append(
                    [setting, method, pct(np.mean(accs)), pct(np.mean(best)), pct(np.mean(dis))]
                )
    doc.table(["setting", "method", "ensemble accuracy", "best single model", "disagreement"], rows)


def _labels(r):
    arr = np.load(os.path.join(r["_dir"], "arrays.npz"))
    return arr["labels"] if "labels" in arr else None


def _figures_section(doc, results, workdir, fig_dir, steps_setting, compute_fig):
    doc.add("## 5. Figures", "")
    idx = _index(results, "ablation")
    setting = next(
        (
            s.name
            for s in reversed(_specs.ablation_settings())
            if (s.name, "mmo-type-shape", MODELS) in idx and (s.name, "independent", MODELS) in idx
        ),
        None,
    )
    figs = []
    if setting is not None:
        runs = {
            m: os.path.join(
                idx[(setting, m, MODELS)][min(idx[(setting, m, MODELS)])]["_dir"], "metrics.jsonl"
            )
            for m in ("independent", "mmo-type-shape")
        }
        figs.append(
            (
                "Fig. 2: training loss, mmo vs independent (" + setting + ", seed 0)",
                _figures.curves(
                    runs, fig_dir, "train", "loss", "fig2_loss.png", f"training loss ({setting})"
                ),
            )
        )
        figs.append(
            (
                "Fig. 3: validation accuracy (" + setting + ")",
                _figures.curves(
                    runs,
                    fig_dir,
                    "eval",
                    "main",
                    "fig3_accuracy.png",
                    f"validation accuracy ({setting})",
                ),
            )
        )
        mats = {}
        for method in ("independent", "mmo-type-shape"):
            mat = np.full((3, 3), np.nan)
            for i, a in enumerate(MODELS):
                mat[i, i] = 1.0
                for j, b in enumerate(MODELS):
                    vals = [
                        r["gradient_cosines"].get(a, {}).get(b)
                        for r in idx[(setting, method, MODELS)].values()
                    ]
                    vals = [v for v in vals if v is not None]
                    if vals and i != j:
                        mat[i, j] = float(np.mean(vals))
            mats[method] = mat
        figs.append(
            (
                "Fig. 4: gradient cosine on shared keys between models",
                _figures.gradient_flow(
                    mats, MODELS, os.path.join(fig_dir, "fig4_gradient_flow.png")
                ),
            )
        )
        kernels = {}
        for method in ("independent", "mmo-type-shape"):
            runs_m = idx[(setting, method, MODELS)]
            if 0 in runs_m and os.path.exists(os.path.join(runs_m[0]["_dir"], "arrays.npz")):
                arr = np.load(os.path.join(runs_m[0]["_dir"], "arrays.npz"))
                kernels[method] = {m: arr[f"attn/{m}"] for m in MODELS if f"attn/{m}" in arr}
        path = _figures.tsne(kernels, os.path.join(fig_dir, "fig5_tsne_attention.png"))
        if path:
            figs.append(("Fig. 5: t-SNE of attention kernels, independent vs mmo (seed 0)", path))
        path = _figures.learning_rates(
            runs["mmo-type-shape"], os.path.join(fig_dir, "fig6_learning_rates.png")
        )
        if path:
            figs.append(("Fig. 6: per-model learning rate under mmo", path))
    if compute_fig:
        figs.append(("Fig. 7: compute", compute_fig))
    for caption, path in figs:
        doc.add(f"**{caption}**", "", f"![{caption}]({os.path.relpath(path, workdir)})", "")
    if not figs:
        doc.add("No ablation runs yet: no figures.", "")


def write_report(workdir: str, opts) -> str:
    """Builds ``workdir/report.md`` and ``workdir/figures/`` from every finished run."""
    results = load_results(workdir)
    fig_dir = _figures.ensure_dir(os.path.join(workdir, "figures"))
    doc = _Doc()
    devices = sorted({r["device"] for r in results})
    presets = sorted({r["config"]["preset"] for r in results})
    doc.add(
        "# mmojax reproduction report",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} from "
        f"{len(results)} runs in `runs/` beside this file (raw per-run JSON: `result.json`, "
        f"curves: `metrics.jsonl`). Devices: {', '.join(devices) or 'none'}. "
        f"Seeds requested: {opts.seeds}. Nothing below is typed by hand except the "
        "paper's own numbers, quoted for comparison.",
        "",
        "Common settings (paper section 4.4): batch 16, gradient accumulation 2, weight "
        "decay 0.01, alpha 0.2, beta 0.1 every 10 updates, adaptive lr, weights bert 1.0 / "
        "gpt2 0.8 / roberta 1.2 (mmo), per-model clip 1.0; models from scratch, preset "
        f"{', '.join(presets) or 'n/a'} (`small`: hidden 128, 2/2/3 layers).",
        "",
    )
    _ablation(doc, results, workdir)
    if "tasks" in opts.experiments:
        _tasks(doc, results, opts)
    steps_setting = _steps(doc, results, opts, fig_dir)
    compute_fig = _compute(doc, results, opts, steps_setting, fig_dir)
    _figures_section(doc, results, workdir, fig_dir, steps_setting, compute_fig)
    _collapse(doc, results)
    _ensembles(doc, results)
    doc.add("## 8. What we found", "")
    doc.add(*(f"- {f}" for f in doc.findings), "")
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(doc.lines) + "\n")
    return path
