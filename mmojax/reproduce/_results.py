"""Queries over the recorded runs of a reproduction: load, index, per-seed values.

Everything the report says comes from these: each finished run's
``result.json`` (and its ``arrays.npz`` for predictions and labels), and the
learning-rate tuning records under ``tuning/``. Nothing here reloads a data set.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections import defaultdict
from typing import Any

import numpy as np

from mmojax.reproduce import _specs

MODELS = _specs.MODELS
Key = tuple[str, str, tuple[str, ...]]  # (setting, method, models)


@dataclasses.dataclass(frozen=True)
class Results:
    """The finished runs of one reproduction and its learning-rate tuning.

    Attributes:
      runs: every run's ``result.json`` as a dict, plus ``_dir`` (its folder).
      tuning: ``{setting: tuning record}`` (``tuning/<setting>.json``).
    """

    runs: tuple[dict[str, Any], ...] = ()
    tuning: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def index(self, experiment: str) -> dict[Key, dict[int, dict[str, Any]]]:
        """``{(setting, method, models): {seed: run}}`` for one experiment.

        When a seed ran at several learning rates (a search widened after the
        first runs), the run at the setting's tuned rate is the one kept;
        without one, the collision is an error rather than a silent pick.
        """
        idx: dict[Key, dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in self.runs:
            if r["experiment"] != experiment:
                continue
            cell = idx[(r["setting"], r["method"], tuple(r["models"]))]
            other = cell.get(r["seed"])
            if other is not None:
                best = self.tuning.get(r["setting"], {}).get("best")
                kept = [x for x in (other, r) if x["learning_rate"] == best]
                if len(kept) != 1:
                    raise ValueError(
                        f"{r['run_id']} and {other['run_id']} are the same run at two "
                        "learning rates and neither is the tuned one; remove one"
                    )
                r = kept[0]
            cell[r["seed"]] = r
        return dict(idx)

    def settings(self, experiment: str) -> list[str]:
        """The settings of ``experiment`` that have runs, sorted."""
        return sorted({r["setting"] for r in self.runs if r["experiment"] == experiment})

    def method_runs(
        self, experiment: str, setting: str, method: str, model: str
    ) -> dict[int, dict[str, Any]]:
        """``{seed: run}`` that trained ``model`` under ``method``.

        Distillation trains the students together and the teacher (RoBERTa)
        alone: for the teacher, its own ``independent`` run.
        """
        idx = self.index(experiment)
        if method == "distillation" and model == _specs.TEACHER:
            return idx.get((setting, "independent", (_specs.TEACHER,)), {})
        if method == "distillation":
            students = tuple(m for m in MODELS if m != _specs.TEACHER)
            return idx.get((setting, method, students), {})
        return idx.get((setting, method, MODELS), {})

    def values(
        self, experiment: str, setting: str, method: str, model: str, metric: str | None = None
    ) -> dict[int, float | None]:
        """``{seed: final validation metric of model}`` (default: the task's main metric)."""
        return {
            s: final_metric(r, model, metric)
            for s, r in self.method_runs(experiment, setting, method, model).items()
        }

    def sst2_source(self) -> tuple[str, str]:
        """``(experiment, setting)`` whose runs give the SST-2 rows of Table 2.

        The ``tasks/sst2`` runs when there are any, else the steps-to-target runs
        (the same training, evaluated more often).
        """
        if "sst2" in self.settings("tasks"):
            return "tasks", "sst2"
        return "steps-to-target", "sst2-steps"


def final_metric(run: dict[str, Any] | None, model: str, metric: str | None = None):
    """The final validation ``metric`` (default: the main one) of ``model`` in ``run``."""
    if run is None or model not in run["final"]:
        return None
    return run["final"][model].get(metric or run["main_metric"])


def paired_values(a: dict[int, Any], b: dict[int, Any]) -> tuple[list[float], list[float]]:
    """The values of the seeds present (and not None) in both, in seed order."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    return [a[s] for s in seeds], [b[s] for s in seeds]


def arrays(run: dict[str, Any]) -> dict[str, np.ndarray]:
    """The run's ``arrays.npz`` (predicted probabilities, labels, kernels); {} if none."""
    path = os.path.join(run["_dir"], "arrays.npz")
    if not os.path.exists(path):
        return {}
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load(workdir: str) -> Results:
    """Every finished run under ``workdir/runs`` and every record under ``workdir/tuning``."""
    runs = []
    pattern = os.path.join(workdir, "runs", "**", "result.json")
    for path in sorted(glob.glob(pattern, recursive=True)):
        with open(path) as f:
            res = json.load(f)
        res["_dir"] = os.path.dirname(path)
        runs.append(res)
    tuning = {}
    for path in sorted(glob.glob(os.path.join(workdir, "tuning", "*.json"))):
        with open(path) as f:
            t = json.load(f)
        tuning[t["setting"]] = t
    return Results(tuple(runs), tuning)
