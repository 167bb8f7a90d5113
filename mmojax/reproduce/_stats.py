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


HELD, NOT_SUPPORTED, CONTRADICTED, NOT_MEASURED = (
    "held",
    "not supported",
    "contradicted",
    "not measured",
)


def verdict(diff: dict[str, float], claimed_sign: int = 1) -> str:
    """Whether a paired difference supports a claimed direction at 95%.

    ``held``: the 95% interval lies on the claimed side of 0; ``contradicted``:
    on the other side; ``not supported``: it contains 0; ``not measured``:
    fewer than 2 paired seeds.
    """
    if diff["n"] < 2 or math.isnan(diff["lo"]):
        return NOT_MEASURED
    if claimed_sign * diff["lo"] > 0:
        return HELD
    if claimed_sign * diff["hi"] < 0:
        return CONTRADICTED
    return NOT_SUPPORTED


def fmt_diff(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """``+mean [lo, hi] (n=k)``: a difference with its 95% interval and n."""
    if s["n"] == 0:
        return "n/a (n=0)"
    if s["n"] == 1 or math.isnan(s["lo"]):
        return f"{scale * s['mean']:+.{digits}f} (n={s['n']})"
    return (
        f"{scale * s['mean']:+.{digits}f} [{scale * s['lo']:+.{digits}f}, "
        f"{scale * s['hi']:+.{digits}f}] (n={s['n']})"
    )


def pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def fmt_summary(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std [lo, hi] (n)`` in percent by default."""
    if s["n"] == 0:
        return "n/a (n=0)"
    if s["n"] == 1:
        return f"{scale * s['mean']:.{digits}f} (n=1)"
    return (
        f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} "
        f"[{scale * s['lo']:.{digits}f}, {scale * s['hi']:.{digits}f}] (n={s['n']})"
    )
