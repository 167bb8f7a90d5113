"""Small statistics for the report: mean, spread, t intervals, paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def summary(values: Sequence[float]) -> dict[str, float]:
    """``n``, ``mean``, ``std`` (ddof 1) and the 95% t-interval of the mean."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "lo": math.nan, "hi": math.nan}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Summary of the per-seed differences ``a - b`` (seeds paired by position)."""
    return summary([x - y for x, y in zip(a, b) if x is not None and y is not None])


def verdict(diff: dict[str, float], claimed_sign: int = 1) -> str:
    """Whether a paired difference supports a claimed direction at 95%."""
    if diff["n"] < 2 or math.isnan(diff["lo"]):
        return "undetermined (fewer than 2 seeds)"
    if claimed_sign * diff["lo"] > 0 or claimed_sign * diff["hi"] < 0:
        return "held" if claimed_sign * diff["mean"] > 0 else "contradicted"
    return "not supported (the 95% interval includes 0)"


def pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def fmt_summary(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std [lo, hi] (n)`` in percent by default."""
    if s["n"] == 0:
        return "n/a"
    if s["n"] == 1:
        return f"{scale * s['mean']:.{digits}f} (n=1)"
    return (
        f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} "
        f"[{scale * s['lo']:.{digits}f}, {scale * s['hi']:.{digits}f}] (n={s['n']})"
    )
