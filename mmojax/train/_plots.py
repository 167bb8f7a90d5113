"""Plots of a training run's metrics (the file is read and parsed by :mod:`._metrics`).

Figures are drawn on ``matplotlib.figure.Figure`` objects and written with the
Agg canvas directly, so neither ``pyplot`` nor the global backend is touched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmojax.train._metrics import (
    KINDS,
    main_metric,
    model_names,
    read_metrics,
    series,
    weighted_series,
)

Records = Sequence[Mapping[str, Any]]
RecordsOrPath = Union[str, "os.PathLike[str]", Records]

_DPI = 110


def _load(source: RecordsOrPath) -> list[Mapping[str, Any]]:
    """Records from a path or an in-memory sequence of records."""
    if isinstance(source, (str, os.PathLike)):
        return read_metrics(source)
    return list(source)


def smooth(
    values: np.ndarray, window: int | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Trailing (weighted) moving average over ``window`` points, shorter at the start.

    Args:
      values: 1-D array.
      window: window length; ``None`` uses about 1/20 of the series (1 to 50).
      weights: per-point weights (e.g. the micro-batches a train record
        averages), so a record of one micro-batch counts for one micro-batch;
        ``None``: equal weights.

    Returns:
      An array of the same length.
    """
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    if window is None:
        window = min(max(len(values) // 20, 1), 50)
    if window <= 1 or len(values) < 2:
        return values.copy()
    wsum = np.concatenate([[0.0], np.cumsum(weights)])
    vsum = np.concatenate([[0.0], np.cumsum(weights * values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (vsum[idx] - vsum[lo]) / (wsum[idx] - wsum[lo])


def _colors(names: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per name (tab10 cycle), stable across figures."""
    return {n: f"C{i % 10}" for i, n in enumerate(names)}


def _new_figure(width: float = 7.5, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _title(title: str | None, what: str) -> str:
    return f"{title}: {what}" if title else what


def _plot_loss(records, names, colors, out: Path, title) -> Path | None:
    train = weighted_series(records, "train", "loss")
    evals = series(records, "eval", "loss")
    if not train and not evals:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    for name in names:
        if name in train:
            x, y, w = train[name]
            if len(y) > 1:
                ax.plot(x, y, color=colors[name], alpha=0.2, linewidth=0.8)
            ax.plot(
                x, smooth(y, weights=w), color=colors[name], linewidth=1.8, label=f"{name} (train)"
            )
        if name in evals:
            x, y = evals[name]
            ax.plot(
                x,
                y,
                color=colors[name],
                linestyle="--",
                marker="o",
                markersize=3,
                linewidth=1.4,
                label=f"{name} (eval)",
            )
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("loss")
    ax.set_title(_title(title, "loss (train smoothed, raw faint; eval dashed)"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out)


def _plot_accuracy(records, names, colors, out: Path, title) -> Path | None:
    evals = series(records, "eval", "main")
    if not evals:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    for name in names:
        if name in evals:
            x, y = evals[name]
            ax.plot(
                x,
                y,
                color=colors[name],
                marker="o",
                markersize=3,
                linewidth=1.6,
                label=f"{name} ({main_metric(records, name)})",
            )
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("eval metric (accuracy or F1)")
    ax.set_title(_title(title, "validation metric"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out)


def _plot_lr(records, names, colors, out: Path, title) -> Path | None:
    lrs = series(records, "train", "lr")
    if not lrs:
        return None
    positive = np.concatenate([y[y > 0] for _, y in lrs.values()])
    log = positive.size > 0 and positive.max() > 10 * positive.min()
    fig = _new_figure()
    ax = fig.add_subplot()
    for name in names:
        if name in lrs:
            x, y = lrs[name]
            if log:
                x, y = x[y > 0], y[y > 0]
            ax.plot(x, y, color=colors[name], linewidth=1.6, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("learning rate" + (" (log scale)" if log else ""))
    ax.set_title(_title(title, "per-model learning rate"))
    ax.grid(True, alpha=0.3, which="both" if log else "major")
    ax.legend(fontsize="small")
    return _save(fig, out)


def plot_run(
    metrics: RecordsOrPath, out_dir: str | os.PathLike[str], title: str | None = None
) -> dict[str, Path]:
    """Draws the standard figures of one run.

    * ``loss.png``: train loss per model against the update (moving average,
      raw values faint) and eval loss dashed;
    * ``accuracy.png``: each model's eval ``f1`` if reported, else ``accuracy``;
    * ``learning_rate.png``: per-model learning rate, log scale when the
      positive values span more than 10x.

    A figure without data is skipped and not returned.

    Args:
      metrics: a metrics JSON-lines path, or the records themselves.
      out_dir: output folder, created if needed.
      title: optional run name prefixed to every figure title.

    Returns:
      ``{"loss" | "accuracy" | "learning_rate": path}`` of the files written.
    """
    records = _load(metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = model_names(records)
    colors = _colors(names)
    written = {}
    for key, draw in (
        ("loss", _plot_loss),
        ("accuracy", _plot_accuracy),
        ("learning_rate", _plot_lr),
    ):
        path = draw(records, names, colors, out / f"{key}.png", title)
        if path is not None:
            written[key] = path
    return written


def plot_comparison(
    runs: Mapping[str, RecordsOrPath],
    out_dir: str | os.PathLike[str],
    metric: str = "loss",
    kind: str = "train",
    filename: str | None = None,
    title: str | None = None,
) -> Path:
    """Compares runs (e.g. ``"mmo"`` against ``"independent"``) model by model.

    One subplot per model (every model of any run), one line per run; train
    series are smoothed with the raw values faint.

    Args:
      runs: ``{run_name: metrics path or records}``, in legend order.
      out_dir: output folder, created if needed.
      metric: the per-model field, e.g. ``"loss"`` or ``"accuracy"``; ``"main"``
        uses each model's ``f1`` if reported, else ``accuracy``.
      kind: ``"train"`` or ``"eval"``.
      filename: the PNG name; default ``compare_{kind}_{metric}.png``.
      title: optional figure title.

    Returns:
      The path of the PNG written.

    Raises:
      ValueError: if ``runs`` is empty, ``kind`` is unknown, or no run has any
        value of ``metric``.
    """
    if not runs:
        raise ValueError("runs is empty: nothing to compare")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    data = {run: weighted_series(_load(src), kind, metric) for run, src in runs.items()}
    names = list(dict.fromkeys(m for per_model in data.values() for m in per_model))
    if not names:
        raise ValueError(f"no {kind} values of {metric!r} in any run of {list(runs)}")
    colors = _colors(list(runs))
    ncols = min(len(names), 3)
    nrows = math.ceil(len(names) / ncols)
    fig = _new_figure(4.2 * ncols + 0.6, 3.4 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    ylabel = "eval metric" if metric == "main" else metric.replace("_", " ")
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        name = names[i]
        for run, per_model in data.items():
            if name not in per_model:
                continue
            x, y, w = per_model[name]
            if kind == "train":
                if len(y) > 1:
                    ax.plot(x, y, color=colors[run], alpha=0.2, linewidth=0.8)
                ax.plot(x, smooth(y, weights=w), color=colors[run], linewidth=1.6, label=run)
            else:
                ax.plot(x, y, color=colors[run], marker="o", markersize=3, linewidth=1.4, label=run)
        ax.set_title(name)
        ax.set_xlabel("optimizer update")
        ax.set_ylabel(f"{kind} {ylabel}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or f"{kind} {ylabel} by model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / (filename or f"compare_{kind}_{metric}.png"))
