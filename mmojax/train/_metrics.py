"""A run's metrics file (JSON lines): the writer, the reader and the summaries.

One JSON object per line:

* ``{"kind": "train", "step", "update", "epoch", "time", "micro_batches",
  "models": {name: {...}}}``: per-model means over the ``micro_batches``
  micro-batches since the previous train record (``loss``, ``accuracy``,
  ``grad_norm``; the last ``lr`` and ``conv_rate``; ``nonfinite_steps``);
* ``{"kind": "eval", ...}`` of the same layout with per-model ``loss`` and
  ``accuracy`` or ``f1`` (``exact_match`` for QA);
* ``{"kind": "event", ...}`` (non-finite steps, resumes, interrupts) and any
  other kind, which readers of train/eval series ignore.

The member ``i`` of a cohort (``--members bert=4``) is a model of its own
here, named ``bert/i`` (:func:`split_members`).

``step`` counts micro-batches and ``update`` optimizer updates; ``time`` is
seconds since the run began, summed over the processes of a resumed run.
Everything that parses the file (plots, the reproduction's report) reads it
through this module.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmojax.optim._cohort import member_name

KINDS = ("train", "eval")
_MAIN_METRICS = ("f1", "accuracy")  # the eval metric that counts, first present wins
_LAST_VALUE = ("lr", "conv_rate")  # summarised by their last value, not the mean


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and non-finite floats as None."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def split_members(values: Mapping[str, Any], members: Mapping[str, int]) -> dict[str, Any]:
    """``{model: tree}`` with each cohort's tree split into its members' trees.

    Args:
      values: host values per model (a step's metrics, evaluation outputs,
        counters); a cohort's leaves have its members on the leading axis.
      members: ``{model: k}`` of the cohorts.

    Returns:
      ``{name: tree}`` in the order of ``values``, cohort ``bert`` replaced by
      ``bert/0`` ... ``bert/{k-1}``, member ``i``'s tree holding every leaf's
      row ``i``.

    Examples:
      >>> out = split_members({"bert": {"loss": np.array([1.0, 2.0])}, "gpt2": {"loss": 3.0}},
      ...                     {"bert": 2})
      >>> {m: float(v["loss"]) for m, v in out.items()}
      {'bert/0': 1.0, 'bert/1': 2.0, 'gpt2': 3.0}
    """
    out = {}
    for name, tree in values.items():
        if name not in members:
            out[name] = tree
            continue
        for i in range(members[name]):
            out[member_name(name, i)] = _row(tree, i)
    return out


def _row(tree: Any, i: int) -> Any:
    """Row ``i`` of every array of a nested dict (or of one array)."""
    if isinstance(tree, Mapping):
        return {k: _row(v, i) for k, v in tree.items()}
    return np.asarray(tree)[i]


class MetricsWriter:
    """Appends records to a run's metrics file.

    Args:
      path: the file.
      keep_until_step: ``None`` starts an empty file; a step (micro-batches)
        keeps the records up to it and drops the rest, so a resumed run
        rewrites what came after its checkpoint.
      enabled: ``False`` touches no file (the processes of a multi-process
        run other than process 0, which writes the run's files).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        keep_until_step: int | None = None,
        *,
        enabled: bool = True,
    ):
        self.path = os.fspath(path)
        self.enabled = enabled
        if not enabled:
            return
        if keep_until_step is None:
            open(self.path, "w").close()
        elif os.path.exists(self.path):
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= keep_until_step]
            with open(self.path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(json_safe(dict(record))) + "\n")


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


def summarise(fetched: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per-model summary of several steps' metrics (host values, one dict per step).

    Means over the steps of the finite values; the last value of ``lr`` and
    ``conv_rate``; ``finite`` becomes ``nonfinite_steps``, the count of
    steps whose loss or gradients were not finite.
    """
    out = {}
    for m in fetched[0]:
        rows = [step[m] for step in fetched]
        summary = {}
        for key in rows[0]:
            values = np.array([float(r[key]) for r in rows])
            if key in _LAST_VALUE:
                summary[key] = float(values[-1])
            elif key == "finite":
                summary["nonfinite_steps"] = int(np.sum(values == 0))
            else:
                ok = np.isfinite(values)
                summary[key] = float(values[ok].mean()) if ok.any() else float("nan")
        out[m] = summary
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def weighted_series(
    records: Iterable[Mapping[str, Any]], kind: str, metric: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Like :func:`series`, with each point's weight: the micro-batches its record
    summarises (1 for records that do not say, e.g. evaluations)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    records = [r for r in records if r.get("kind") == kind]
    names = model_names(records)
    fields = {m: (main_metric(records, m) if metric == "main" else metric) for m in names}
    points: dict[str, list[tuple[float, float, float]]] = {m: [] for m in names}
    for record in records:
        x = _x_of(record)
        models = record.get("models")
        if x is None or not isinstance(models, Mapping):
            continue
        weight = record.get("micro_batches")
        weight = float(weight) if _finite(weight) and weight > 0 else 1.0
        for name, values in models.items():
            y = values.get(fields.get(name)) if isinstance(values, Mapping) else None
            if _finite(y):
                points[name].append((x, float(y), weight))
    return {
        m: tuple(np.array([p[i] for p in pts]) for i in range(3))
        for m, pts in points.items()
        if pts
    }


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
    return {m: (x, y) for m, (x, y, _) in weighted_series(records, kind, metric).items()}
