"""The report's diagnostic sections: compute, figures, collapse, ensembles (pure functions).

Like :mod:`~mmojax.reproduce._sections`: each builder returns a
:class:`~mmojax.reproduce._sections.Section`; nothing here reads files except
through the ``arrays`` query it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import NamedTuple

import numpy as np

from mmojax.reproduce import _paper, _results
from mmojax.reproduce._sections import JOINT, MODELS, PAPER, Finding, Section, table
from mmojax.reproduce._stats import pct, summary, verdict


class Compute(NamedTuple):
    """Wall times of the compute comparison (seconds, per approach, paired seeds)."""

    seeds: tuple[int, ...]
    wall: dict[str, dict[int, float]]  # approach -> {seed: seconds}
    device: str

    def normalised(self) -> dict[str, float]:
        base = np.mean(list(self.wall[PAPER].values()))
        return {k: float(np.mean(list(v.values())) / base) for k, v in self.wall.items()}


def compute_times(results: _results.Results) -> Compute | None:
    """Wall times of sequential/parallel independent and the joint methods (paired seeds).

    Sequential independent = the three single-model runs one after another;
    parallel independent = the three models in one jitted step, nothing shared.
    """
    idx = results.index("steps-to-target")
    setting = next((k[0] for k in idx if k[2] == MODELS), None)
    if setting is None:
        return None
    alone = [idx.get((setting, "independent", (m,)), {}) for m in MODELS]
    joint = idx.get((setting, "independent", MODELS), {})
    paper = idx.get((setting, PAPER, MODELS), {})
    seeds = set(joint) & set(paper)
    for a in alone:
        seeds &= set(a)
    seeds = tuple(sorted(seeds))
    if not seeds:
        return None
    wall = {"sequential independent": {s: sum(a[s]["wall_time"] for a in alone) for s in seeds}}
    wall["parallel independent"] = {s: joint[s]["wall_time"] for s in seeds}
    for method in JOINT:
        runs = idx.get((setting, method, MODELS), {})
        if all(s in runs for s in seeds):
            wall[method] = {s: runs[s]["wall_time"] for s in seeds}
    return Compute(seeds, wall, paper[seeds[0]]["device"])


def compute(results: _results.Results, target: float) -> Section:
    """Section 4: wall time per approach (paper Fig. 7) and the time cost of joint training."""
    c = compute_times(results)
    lines, findings = [], []
    if c is not None:
        norm = c.normalised()
        lines += [
            "## 4. Compute (paper Fig. 7)",
            "",
            "Measured wall time of whole runs (training, compilation and evaluation) on "
            f"{c.device}, SST-2 steps-to-target runs, seeds {list(c.seeds)} (n={len(c.seeds)}); "
            "sequential independent = the three single-model runs one after another, "
            "parallel independent = the three models in one jitted step without sharing.",
            "",
        ]
        lines += table(
            ["approach", "wall time (s)", f"normalised ({PAPER} = 1)", "paper", "n"],
            [
                [
                    k,
                    f"{np.mean(list(v.values())):.1f}",
                    f"{norm[k]:.2f}",
                    _paper.COMPUTE.get(k, ""),
                    len(v),
                ]
                for k, v in c.wall.items()
            ],
        )
        for name in ("sequential independent", "parallel independent"):
            ratio = [c.wall[name][s] / c.wall[PAPER][s] - 1.0 for s in c.seeds]
            d = summary(ratio)
            findings.append(
                Finding(
                    f"{PAPER} is cheaper than {name} (wall time ratio {name} / {PAPER})",
                    f"{_paper.COMPUTE[name]:.1f}x",
                    f"{1 + d['mean']:.2f}x"
                    + (
                        f" [{1 + d['lo']:.2f}, {1 + d['hi']:.2f}]"
                        if not math.isnan(d["lo"])
                        else ""
                    )
                    + f" (n={d['n']})",
                    verdict(d, +1),
                    True,
                    "compute",
                    method=PAPER,
                    diff=d,
                )
            )
        thr = f"{target:g}"
        idx = results.index("steps-to-target")
        setting = next(k[0] for k in idx if k[2] == MODELS)
        rows = []
        for name in ("parallel independent", *JOINT):
            method = "independent" if name == "parallel independent" else name
            runs = idx.get((setting, method, MODELS), {})
            times = [
                max((runs[s]["time_to"][thr][m] or {"time": math.inf})["time"] for m in MODELS)
                for s in c.seeds
                if s in runs
            ]
            if times:
                mean = np.mean(times)
                rows.append([name, "never" if not np.isfinite(mean) else f"{mean:.1f}", len(times)])
        lines += [f"Wall time until every model reached {pct(target, 0)} (mean):", ""]
        lines += table(["approach", "seconds", "n"], rows)
    cost = _cost(results, c.seeds if c is not None else None)
    if cost:
        which = (
            f"the seeds of the compute comparison above ({list(c.seeds)}; wall times compare "
            "only between runs made under the same machine load; runs of the other seeds "
            "may have shared the machine with other work)"
            if c is not None
            else "every seed"
        )
        lines += [
            "### Time cost of joint training",
            "",
            "Per seed: the joint method's wall time / the same seed's parallel-independent "
            "run (the three models in one step, nothing shared), SST-2 steps-to-target runs, "
            f"{which}; mean [95% interval] (n).",
            "",
        ]
        lines += table(["method", "wall time / parallel independent"], cost.items())
        for method, text in cost.items():
            findings.append(Finding(method, "", text, "", False, "cost", "sst2", "", method))
    if lines:
        lines = ["## 4. Compute (paper Fig. 7)", "", *lines] if c is None else lines
    return Section(tuple(lines), tuple(findings))


def _cost(results, seeds: Sequence[int] | None) -> dict[str, str]:
    """Per joint method: wall time / parallel independent, per seed (``seeds``: which)."""
    idx = results.index("steps-to-target")
    setting = next((k[0] for k in idx if k[2] == MODELS), None)
    ind = idx.get((setting, "independent", MODELS), {})
    out = {}
    for method in JOINT:
        runs = idx.get((setting, method, MODELS), {})
        both = sorted(set(runs) & set(ind) & set(seeds if seeds is not None else ind))
        if not both:
            continue
        s = summary([runs[k]["wall_time"] / ind[k]["wall_time"] for k in both])
        ci = f" [{s['lo']:.2f}, {s['hi']:.2f}]" if not math.isnan(s["lo"]) else ""
        out[method] = f"{s['mean']:.2f}x{ci} (n={s['n']})"
    return out


def figures(figs: Sequence[tuple[str, str]]) -> Section:
    """Section 5: the figures (``(caption, path relative to the report)``)."""
    lines = ["## 5. Figures", ""]
    for caption, path in figs:
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    if not figs:
        lines += ["No ablation runs yet: no figures.", ""]
    return Section(tuple(lines))


def collapse(results: _results.Results) -> Section:
    """Section 6: do shared parameters become copies of each other?"""
    lines = [
        "## 6. Collapse diagnostics",
        "",
        "For every (type, shape) key shared by several models: the mean pairwise cosine "
        "similarity of its members' final values across models (mean over seeds; n per "
        "column), independent vs the joint methods. Values near 1.00 mean the members became "
        "copies of each other. Below each table: the final training loss each model reached "
        "(mean over seeds), to see whether a model lost capacity.",
        "",
    ]
    for exp in ("ablation", "steps-to-target", "tasks"):
        idx = results.index(exp)
        for setting in results.settings(exp):
            methods = [m for m in ("independent", *JOINT) if idx.get((setting, m, MODELS))]
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
            n = {m: len(idx[(setting, m, MODELS)]) for m in methods}
            lines += [f"### {exp}: {setting}", ""]
            lines += table(["key (type, shape)", *(f"{m} (n={n[m]})" for m in methods)], rows)
            loss_rows = []
            for m in methods:
                runs = idx[(setting, m, MODELS)].values()
                loss_rows.append(
                    [
                        f"{m} (n={n[m]})",
                        *(
                            f"{np.mean([r['final_train_loss'][x] for r in runs]):.3f}"
                            for x in MODELS
                        ),
                    ]
                )
            lines += table(["final training loss", *MODELS], loss_rows)
    return Section(tuple(lines))


def ensemble_scores(probs: Sequence[np.ndarray], labels: np.ndarray) -> tuple[float, float, float]:
    """``(ensemble accuracy, best single accuracy, mean pairwise disagreement)``.

    The ensemble averages the models' predicted class probabilities.
    """
    preds = [p.argmax(-1) for p in probs]
    ens = float((np.mean(probs, 0).argmax(-1) == labels).mean())
    best = max(float((p == labels).mean()) for p in preds)
    dis = float(np.mean([(a != b).mean() for a, b in combinations(preds, 2)]))
    return ens, best, dis


def ensembles(results: _results.Results, arrays=_results.arrays) -> Section:
    """Section 7: accuracy of the averaged predictions and the models' disagreement.

    ``arrays(run)`` gives a run's stored predictions and labels (a parameter so
    that tests can pass them in memory).
    """
    lines = [
        "## 7. Ensembles and diversity",
        "",
        "Accuracy of the three models' averaged predicted probabilities and their mean "
        "pairwise disagreement on the validation split (mean over n seeds), classification "
        "runs.",
        "",
    ]
    rows = []
    for exp in ("ablation", "steps-to-target", "tasks"):
        for (setting, method, models), runs in sorted(results.index(exp).items()):
            if method not in ("independent", *JOINT, "mutual-learning") or models != MODELS:
                continue
            scores = []
            for r in runs.values():
                if r["task"] not in ("synthetic", "sst2"):
                    continue
                arr = arrays(r)
                probs = [arr[f"probs/{m}"] for m in MODELS if f"probs/{m}" in arr]
                if len(probs) < 2 or "labels" not in arr:
                    continue
                scores.append(ensemble_scores(probs, arr["labels"]))
            if scores:
                ens, best, dis = np.mean(scores, 0)
                rows.append([setting, method, pct(ens), pct(best), pct(dis), len(scores)])
    lines += table(
        ["setting", "method", "ensemble accuracy", "best single model", "disagreement", "n"], rows
    )
    return Section(tuple(lines))


def budget(results: _results.Results) -> Section:
    """The runs behind the report and the wall time they took, per experiment and setting.

    Minutes come from each run's ``wall_time`` (compilation and evaluation
    included); the load is the 1-minute load average recorded when the run
    finished, so runs made beside other work read as such.
    """
    rows_by_key: dict[tuple, list[dict]] = {}
    for r in results.runs:
        n = len(r["models"])
        size = r["config"].get("max_train")
        key = (r["experiment"], r["setting"], n, size)
        rows_by_key.setdefault(key, []).append(r)
    lines = [
        "### The runs behind this report and their wall time",
        "",
        f"On {', '.join(sorted({r['device'] for r in results.runs})) or 'no device'}; "
        "minutes per run include compilation and evaluation; load = the machine's 1-minute "
        "load average when the run finished (recorded from the second pass on).",
        "",
    ]
    rows = []
    for (exp, setting, n, size), runs in sorted(rows_by_key.items(), key=str):
        minutes = [r["wall_time"] / 60 for r in runs]
        loads = [r["load_average"][0] for r in runs if r.get("load_average")]
        load = f"{np.mean(loads):.1f} (n={len(loads)})" if loads else "not recorded"
        models = "1 model" if n == 1 else f"{n} models"
        rows.append(
            [
                f"{exp} / {setting}",
                models,
                "all" if size is None else f"{size:,}",
                len(runs),
                f"{np.mean(minutes):.1f} ({min(minutes):.1f}-{max(minutes):.1f})",
                f"{sum(minutes):.0f}",
                load,
            ]
        )
    total = sum(r["wall_time"] for r in results.runs) / 60
    lines += table(
        [
            "experiment / setting",
            "models",
            "training examples",
            "runs",
            "minutes per run, mean (min-max)",
            "total minutes",
            "load",
        ],
        rows,
    )
    lines += [f"In all: {len(results.runs)} runs, {total:.0f} minutes.", ""]
    return Section(tuple(lines))
