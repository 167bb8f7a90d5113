"""Section 8: the verdict table of the paper's claims and a summary computed from the numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mmojax.reproduce._sections import JOINT, TASK_NAMES, Finding, Section, table
from mmojax.reproduce._stats import CONTRADICTED, HELD, NOT_MEASURED, NOT_SUPPORTED


def verdicts(findings: Sequence[Finding]) -> Section:
    """Section 8: one verdict table of the paper's claims and a summary from the numbers."""
    claims = [f for f in findings if f.paper_claim]
    lines = [
        "## 8. Verdicts",
        "",
        "Each claim of the paper against our paired per-seed difference, mean [95% "
        "t-interval] (n seeds), in points unless marked. **held**: the interval lies on the "
        "claimed side of 0; **contradicted**: on the other side; **not supported**: it "
        "contains 0 (or the target was never reached); **not measured**: fewer than 2 seeds.",
        "",
    ]
    lines += table(
        ["claim", "paper", "ours", "verdict"],
        [
            [
                f.claim,
                f.paper,
                f.ours + (" (models at the floor)" if f.at_floor else ""),
                f"**{f.verdict}**",
            ]
            for f in claims
        ],
    )
    lines += ["### In short", ""]
    lines += [f"- {s}" for s in summarise(findings)]
    lines.append("")
    return Section(tuple(lines))


def summarise(findings: Sequence[Finding]) -> list[str]:
    """Plain-language conclusions, each computed from the findings' numbers."""
    out = []
    claims = [f for f in findings if f.paper_claim]
    if claims:
        counts = {
            v: sum(f.verdict == v for f in claims)
            for v in (HELD, NOT_SUPPORTED, CONTRADICTED, NOT_MEASURED)
        }
        out.append(
            f"Of the paper's {len(claims)} claims above, {counts[HELD]} held, "
            f"{counts[NOT_SUPPORTED]} were not supported, {counts[CONTRADICTED]} were "
            f"contradicted and {counts[NOT_MEASURED]} could not be measured."
        )
    real = [f for f in findings if f.kind == "task" and f.diff is not None]

    def cells(verdict_):
        by, floor = {}, set()
        for f in real:
            if f.verdict == verdict_:
                by.setdefault((f.task, f.model), []).append(f"{f.method} {f.ours}")
                if f.at_floor:
                    floor.add((f.task, f.model))
        return "; ".join(
            f"{TASK_NAMES[t]} {m} ({', '.join(v)})"
            + (": models at the floor, not evidence either way" if (t, m) in floor else "")
            for (t, m), v in sorted(by.items())
        )

    helps, hurts = cells(HELD), cells(CONTRADICTED)
    if real:
        out.append(
            "Joint training helps (95% interval above 0) on real tasks: "
            + (helps or "nowhere")
            + "."
        )
        out.append("It hurts (interval below 0): " + (hurts or "nowhere") + ".")
        n_cells = len({(f.task, f.model) for f in real})
        flat = sum(1 for f in real if f.verdict == NOT_SUPPORTED)
        out.append(
            f"Elsewhere ({flat} of {len(real)} method x task x model comparisons over "
            f"{n_cells} task x model cells) the interval contains 0: no detectable effect at "
            "this number of seeds."
        )
        score = {}
        for method in JOINT:
            fs = [f for f in real if f.method == method and not f.at_floor]
            if not fs:
                continue
            means = [f.diff["mean"] for f in fs if f.diff["n"]]
            score[method] = (
                sum(f.verdict == HELD for f in fs),
                sum(f.verdict == CONTRADICTED for f in fs),
                float(np.mean(means)) if means else math.nan,
                len(fs),
            )
        if score:
            floor = sorted({TASK_NAMES[f.task] for f in real if f.at_floor})
            out.append(_grouping_advice(score, floor))
    cost = [f for f in findings if f.kind == "cost"]
    if cost:
        out.append(
            "Time: relative to training the three models independently in one step, "
            + "; ".join(f"{f.method} takes {f.ours}" for f in cost)
            + " of the wall time (SST-2 runs, compilation included)."
        )
    comp = [f for f in findings if f.kind == "compute"]
    if comp:
        out.append(
            "Against the paper's Fig. 7: "
            + "; ".join(
                f"{f.claim.split('(')[1].rstrip(')')} = {f.ours} (paper {f.paper})" for f in comp
            )
            + "."
        )
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _grouping_advice(
    score: dict[str, tuple[int, int, float, int]], left_out: Sequence[str] = ()
) -> str:
    """Which grouping to use: fewest significant losses, then most gains, then the mean.

    ``score``: method -> (gains, losses, mean difference, comparisons). Methods
    equal on gains and losses whose mean differences are within half a point
    are reported as tied. ``left_out``: tasks whose comparisons were not scored
    because their models are at the floor.
    """
    rank = sorted(score, key=lambda m: (score[m][1], -score[m][0], -np.nan_to_num(score[m][2])))
    best = rank[0]
    tied = [  # in the order given
        m
        for m in score
        if score[m][:2] == score[best][:2] and abs(score[m][2] - score[best][2]) < 0.005
    ]
    detail = "; ".join(
        f"{m}: {_plural(g, 'gain')}, {_plural(lo, 'loss').replace('losss', 'losses')}, mean "
        f"difference {100 * d:+.1f} points over {n} comparisons"
        for m, (g, lo, d, n) in score.items()
    )
    choice = best if len(tied) == 1 else " or ".join(tied) + " (tied)"
    return (
        f"Grouping: use {choice}: fewest significant losses, then most significant gains, "
        f"then the largest mean difference over the real-task comparisons ({detail}"
        + (f"; {', '.join(left_out)} left out: models at the floor" if left_out else "")
        + ")."
    )
