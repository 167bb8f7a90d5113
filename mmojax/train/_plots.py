"""Plots of a training run's metrics file (JSON lines).

A run writes one JSON object per line. The records read here are

* ``{"kind": "train", "step", "update", "epoch", "time", "models": {name: {...}}}``
  with per-model ``loss``, ``accuracy``, ``lr``, ``conv_rate``, ``grad_norm``;
* ``{"kind": "eval", ...}`` of the same layout with per-model ``loss``,
  ``accuracy`` and optionally ``f1`` / ``exact_match``;
* ``{"kind": "event", ...}`` and any other kind, which the plots ignore.

Figures are drawn on ``matplotlib.figure.Figure`` objects and written with the
Agg canvas directly, so neither ``pyplot`` nor the global backend is touched.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Records = Sequence[Mapping[str, Any]]
RecordsOrPath = Union[str, "os.PathLike[str]", Records]

KINDS = ("train", "eval")
_MAIN_METRICS = ("f1", "accuracy")  # the eval metric shown, first present wins
_DPI = 110


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Reads a metrics JSON-lines file.

    Args:
      path: the file; blank lines are skipped.

    Returns:
      The records, in file order.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if a line is not valid JSON or not a JSON object; the message
        names the file and the (1-based) line number.
    """
    path = Path(path)
    records = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: malformed JSON in metrics file ({err.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            records.append(record)
    return records


def _load(source: RecordsOrPath) -> list[Mapping[str, Any]]:
    """Records from a path or an in-memory sequence of records."""
    if isinstance(source, (str, os.PathLike)):
        return read_metrics(source)
    return list(source)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _x_of(record: Mapping[str, Any]) -> float | None:
    """The record's x coordinate: the optimizer update (else the step)."""
    for field in ("update", "step"):
        if _finite(record.get(field)):
            return float(record[field])
    return None


def model_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The model names of the train/eval records, in order of first appearance."""
    names: dict[str, None] = {}
    for record in records:
        if record.get("kind") in KINDS and isinstance(record.get("models"), Mapping):
            names.update(dict.fromkeys(record["models"]))
    return list(names)


def main_metric(records: Iterable[Mapping[str, Any]], model: str) -> str | None:
    """The headline eval metric of ``model``: ``"f1"`` if ever reported, else
    ``"accuracy"``; ``None`` if neither has a finite value."""
    seen = set()
    for record in records:
        if record.get("kind") != "eval":
            continue
        values = (record.get("models") or {}).get(model) or {}
        seen.update(k for k in _MAIN_METRICS if _finite(values.get(k)))
    return next((k for k in _MAIN_METRICS if k in seen), None)


def series(
    records: Iterable[Mapping[str, Any]], kind: str, metric: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-model ``(x, y)`` arrays of one metric.

    Args:
      records: metrics records.
      kind: ``"train"`` or ``"eval"``.
      metric: the per-model field, e.g. ``"loss"``; ``"main"`` picks each
        model's :func:`main_metric`.

    Returns:
      ``{model: (updates, values)}`` for the models with at least one finite
      value; missing, ``null`` and non-finite values are dropped.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    records = [r for r in records if r.get("kind") == kind]
    names = model_names(records)
    fields = {m: (main_metric(records, m) if metric == "main" else metric) for m in names}
    points: dict[str, list[tuple[float, float]]] = {m: [] for m in names}
    for record in records:
        x = _x_of(record)
        models = record.get("models")
        if x is None or not isinstance(models, Mapping):
            continue
        for name, values in models.items():
            y = values.get(fields.get(name)) if isinstance(values, Mapping) else None
            if _finite(y):
                points[name].append((x, float(y)))
    return {m: (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
            for m, pts in points.items() if pts}


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Trailing moving average (shorter windows at the start).

    Args:
      values: 1-D array.
      window: window length; ``None`` uses about 1/20 of the series (1 to 50).

    Returns:
      An array of the same length.
    """
    values = np.asarray(values, dtype=float)
    if window is None:
        window = min(max(len(values) // 20, 1), 50)
    if window <= 1 or len(values) < 2:
        return values.copy()
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


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
    train, evals = series(records, "train", "loss"), series(records, "eval", "loss")
    if not train and not evals:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    for name in names:
        if name in train:
            x, y = train[name]
            if len(y) > 1:
                ax.plot(x, y, color=colors[name], alpha=0.2, linewidth=0.8)
            ax.plot(x, smooth(y), color=colors[name], linewidth=1.8, label=f"{name} (train)")
        if name in evals:
            x, y = evals[name]
            ax.plot(x, y, color=colors[name], linestyle="--", marker="o", markersize=3,
                    linewidth=1.4, label=f"{name} (eval)")
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
            ax.plot(x, y, color=colors[name], marker="o", markersize=3, linewidth=1.6,
                    label=f"{name} ({main_metric(records, name)})")
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
    for key, draw in (("loss", _plot_loss), ("accuracy", _plot_accuracy),
                      ("learning_rate", _plot_lr)):
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
    data = {run: series(_load(src), kind, metric) for run, src in runs.items()}
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
            x, y = per_model[name]
            if kind == "train":
                if len(y) > 1:
                    ax.plot(x, y, color=colors[run], alpha=0.2, linewidth=0.8)
                ax.plot(x, smooth(y), color=colors[run], linewidth=1.6, label=run)
            else:
                ax.plot(x, y, color=colors[run], marker="o", markersize=3, linewidth=1.4,
                        label=run)
        ax.set_title(name)
        ax.set_xlabel("optimizer update")
        ax.set_ylabel(f"{kind} {ylabel}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or f"{kind} {ylabel} by model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / (filename or f"compare_{kind}_{metric}.png"))
