"""Runs (or reuses) every training run an experiment needs and records its results."""

from __future__ import annotations

import json
import logging
import os
import shutil
from itertools import combinations
from typing import Any

import jax
import numpy as np

import mmojax
from mmojax import data as mdata
from mmojax import models as mmodels
from mmojax.reproduce import _specs
from mmojax.train import TrainConfig, _metrics, _tasks, train

log = logging.getLogger(__name__)
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
# The runs whose attention kernels the t-SNE figure (Fig. 5) draws: ablation, seed 0.
_FIG5_METHODS = ("independent", _specs.PAPER_METHOD)


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default, allow_nan=True)
    os.replace(tmp, path)  # a half-written result never counts as finished


def time_to_thresholds(records, main_metric: str, models) -> dict[str, dict[str, Any]]:
    """First eval (update, seconds) at which each model's main metric >= each threshold."""
    evals = [r for r in records if r.get("kind") == "eval"]
    out = {}
    for thr in THRESHOLDS:
        out[f"{thr:g}"] = {}
        for m in models:
            hit = next(
                (
                    r
                    for r in evals
                    if (r["models"].get(m, {}).get(main_metric) or 0.0) >= thr - 1e-9
                ),
                None,
            )
            out[f"{thr:g}"][m] = (
                None if hit is None else {"update": hit["update"], "time": hit["time"]}
            )
    return out


def collapse_cosines(params) -> dict[str, dict[str, float]]:
    """Per (type, shape) key: mean pairwise cosine of its members' final values."""
    plan = mmojax.sharing_plan(params)
    flat = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)]
    out = {}
    for group in plan.shared_groups:
        vecs = [flat[m.index] for m in group.members]
        cos = [
            float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
            for a, b in combinations(vecs, 2)
        ]
        cross = [
            float(
                flat[a.index]
                @ flat[b.index]
                / max(np.linalg.norm(flat[a.index]) * np.linalg.norm(flat[b.index]), 1e-30)
            )
            for a, b in combinations(group.members, 2)
            if a.model != b.model
        ]
        out[str(group.key)] = {
            "all": float(np.mean(cos)),
            "cross_model": float(np.mean(cross)) if cross else None,
            "members": len(vecs),
        }
    return out


def validation_labels(config: dict[str, Any]) -> np.ndarray | None:
    """The validation labels of a classification run, from the data loading it used.

    ``config`` is the run's ``TrainConfig.to_dict()`` with its ``data`` path
    usable from here; the same seed, ``max_train``, ``max_val`` and
    ``holdout`` select the same examples in the same order as the run's
    evaluation. ``None`` for tasks without one label per example (NER, QA).
    """
    if config["task"] not in ("synthetic", "sst2"):
        return None
    raw = _tasks.load_raw(
        config["task"], config["data"], config["seed"], config["max_train"], config["max_val"]
    )
    if config.get("holdout"):
        raw = _tasks.holdout_split(raw, config["holdout"], config["seed"])
    return np.asarray(raw.validation.labels, np.int32)


def portable_config(config: dict[str, Any], workdir: str) -> dict[str, Any]:
    """``config`` with its paths relative to the reproduction's ``workdir``.

    Committed results must not name the machine they ran on: the run's
    directory, data and teacher logits are recorded relative to ``workdir``
    (``runs/...``, ``../data/sst2``); relative paths are kept as given.
    """
    out = dict(config)
    for key in ("workdir", "data", "teacher_logits"):
        if isinstance(out.get(key), str) and os.path.isabs(out[key]):
            out[key] = os.path.relpath(out[key], workdir)
    return out


def attention_kernels(params) -> dict[str, np.ndarray]:
    """The square attention kernels of each model (for the t-SNE figure), stacked."""
    labels = mmojax.classify_parameters(params)
    out = {}
    for m in params:
        keys = jax.tree.leaves(labels[m], is_leaf=lambda x: isinstance(x, mmojax.ParamKey))
        leaves = jax.tree.leaves(params[m])
        mats = [
            np.asarray(x, np.float32).ravel()
            for k, x in zip(keys, leaves)
            if k.type == "attention" and len(k.shape) == 2 and k.shape[0] == k.shape[1]
        ]
        if mats:
            out[m] = np.stack(mats)
    return out


class Runner:
    """Executes :class:`~mmojax.reproduce._specs.RunSpec` s under ``workdir/runs``.

    A run whose ``result.json`` exists is not redone; an unfinished one is
    resumed from its checkpoint when it has one. Once a run is recorded its
    checkpoint is deleted (tens of MB per real-task run) unless
    ``keep_checkpoints``.
    """

    def __init__(
        self,
        workdir: str,
        data_dir: str | None,
        overrides: dict[str, Any] | None = None,
        keep_checkpoints: bool = False,
    ):
        self.workdir = os.path.abspath(workdir)
        self.keep_checkpoints = keep_checkpoints
        self.data_dir = data_dir
        # {"preset": ..., "<task>": {config overrides for that task}}
        self.overrides = dict(overrides or {})
        os.makedirs(os.path.join(self.workdir, "runs"), exist_ok=True)

    def data_path(self, task: str) -> str | None:
        if task == "synthetic":
            return None
        folder = {"sst2": "sst2", "ner": "conll2003", "qa": "squad"}[task]
        path = os.path.join(self.data_dir or "", folder)
        return path if self.data_dir and os.path.isdir(path) else None

    def run_dir(self, spec: _specs.RunSpec) -> str:
        return os.path.join(self.workdir, "runs", spec.run_id)

    def result(self, spec: _specs.RunSpec) -> dict[str, Any] | None:
        path = os.path.join(self.run_dir(spec), "result.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return None

    def _config(self, spec: _specs.RunSpec, **extra) -> TrainConfig:
        values = {k: v for k, v in self.overrides.items() if not isinstance(v, dict)}
        values.update(self.overrides.get(spec.setting.task, {}))
        values.update(extra)
        return spec.config(self.run_dir(spec), self.data_path(spec.setting.task), **values)

    def run(self, spec: _specs.RunSpec, **extra) -> dict[str, Any]:
        done = self.result(spec)
        if done is not None:
            return done
        run_dir = self.run_dir(spec)
        if spec.method == "distillation":
            extra["teacher_logits"] = self.teacher_logits(spec)
        config = self._config(spec, **extra)
        resume = os.path.exists(os.path.join(run_dir, "checkpoints")) and os.path.exists(
            os.path.join(run_dir, "config.json")
        )
        try:
            # A run directory without a resumable run holds only this run's leftovers.
            result = train(config, resume=resume, overwrite=not resume)
        except Exception:
            if not resume:
                raise
            log.warning("could not resume %s; starting it again", spec.run_id)
            result = train(config, overwrite=True)
        return self._record(spec, config, result)

    def _record(self, spec, config: TrainConfig, result) -> dict[str, Any]:
        records = _metrics.read_metrics(result.metrics_path)
        main = _tasks.MAIN_METRIC[config.task]
        trains = [r for r in records if r.get("kind") == "train"]
        final_train = (
            {
                m: float(
                    np.nanmean(
                        [
                            r["models"][m]["loss"]
                            for r in trains[-3:]
                            if r["models"][m].get("loss") is not None
                        ]
                    )
                )
                for m in config.models
            }
            if trains
            else {}
        )
        gcos = {}
        for m in config.models:
            for key in trains[0]["models"][m] if trains else {}:
                if key.startswith("gcos/"):
                    vals = [
                        r["models"][m][key] for r in trains if r["models"][m].get(key) is not None
                    ]
                    gcos.setdefault(m, {})[key[5:]] = float(np.mean(vals)) if vals else None
        params = jax.device_get(result.state.params)
        out = {
            "run_id": spec.run_id,
            "experiment": spec.experiment,
            "setting": spec.setting.name,
            "method": spec.method,
            "seed": spec.seed,
            "learning_rate": spec.learning_rate,
            "models": list(config.models),
            "task": config.task,
            "main_metric": main,
            "config": portable_config(config.to_dict(), self.workdir),
            "final": result.final,
            "history": result.history,
            "steps": result.steps,
            "updates": result.updates,
            "wall_time": result.total_wall_time,
            "skipped": result.skipped,
            "final_train_loss": final_train,
            "time_to": time_to_thresholds(records, main, config.models),
            "collapse": collapse_cosines(params) if len(config.models) > 1 else {},
            "gradient_cosines": gcos,
            "parameter_counts": result.parameter_counts,
            "device": str(jax.devices()[0]),
            # Wall times are comparable only between runs made under similar load.
            "load_average": list(os.getloadavg()),
            "nice": os.nice(0),
        }
        arrays = {f"probs/{m}": p for m, p in (result.probabilities or {}).items() if p is not None}
        if arrays:  # the labels beside the predictions: the report never reloads data
            labels = validation_labels(config.to_dict())
            if labels is not None:
                arrays["labels"] = labels
        fig5 = spec.method in _FIG5_METHODS and spec.models == _specs.MODELS
        if spec.experiment == "ablation" and spec.seed == 0 and fig5:
            arrays.update({f"attn/{m}": k for m, k in attention_kernels(params).items()})
        run_dir = self.run_dir(spec)
        np.savez_compressed(os.path.join(run_dir, "arrays.npz"), **arrays)
        _write_json(os.path.join(run_dir, "result.json"), out)
        if not self.keep_checkpoints:
            # The run is finished: nothing resumes from it, and result.json holds its
            # config (config.json names this machine's paths; the tokenizer is rebuilt
            # from the data).
            shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
            for name in ("config.json", "tokenizer.json"):
                if os.path.exists(os.path.join(run_dir, name)):
                    os.remove(os.path.join(run_dir, name))
        return out

    def teacher_logits(self, spec: _specs.RunSpec) -> str:
        """Trains the teacher (RoBERTa alone) and returns its logits on the training split."""
        teacher = _specs.RunSpec(
            spec.experiment,
            spec.setting,
            "independent",
            spec.seed,
            (_specs.TEACHER,),
            spec.learning_rate,
        )
        path = os.path.join(self.run_dir(teacher), "teacher_logits.npy")
        if os.path.exists(path):
            return path
        config = self._config(teacher)
        result = train(config, overwrite=True)
        task = _tasks.prepare_task(  # before _record: it reuses the run's tokenizer
            config.task,
            config.data,
            seed=config.seed,
            vocab_size=config.vocab_size,
            max_train=config.max_train,
            max_val=config.max_val,
            tokenizer_path=os.path.join(config.workdir, "tokenizer.json"),
        )
        built = mmodels.build_models(
            [_specs.TEACHER],
            preset=config.preset,
            task=task.model_task,
            vocab_size=task.tokenizer.get_vocab_size(),
            max_length=task.max_length,
            num_labels=task.num_labels,
            seed=config.seed,
            dropout=config.dropout,
        )
        apply = jax.jit(lambda p, b: built[_specs.TEACHER].apply_fn(p, b, train=False))
        params = result.state.params[_specs.TEACHER]
        logits = np.zeros((len(task.train.lengths), task.num_labels), np.float32)
        for batch in mdata.BatchIterator.for_eval(task.train, 128):
            out = np.asarray(apply(params, batch))
            real = batch["example_index"] >= 0
            logits[batch["example_index"][real]] = out[real]
        np.save(path, logits)
        self._record(teacher, config, result)
        return path

    def tune_lr(
        self, setting: _specs.Setting, grid: tuple[float, ...] = _specs.LR_GRID
    ) -> dict[str, Any]:
        """Picks the lr of ``independent`` on a held-out 10% of the training split (seed 0).

        ``setting.lr_grid``, when set, replaces ``grid``. A stored search that
        lacks a rate of the grid is completed (its finished runs are reused).
        """
        grid = setting.lr_grid or grid
        path = os.path.join(self.workdir, "tuning", f"{setting.name}.json")
        if os.path.exists(path):
            with open(path) as f:
                stored = json.load(f)
            if {f"{lr:g}" for lr in grid} <= set(stored["scores"]):
                return stored
        scores, losses = {}, {}
        for lr in grid:
            spec = _specs.RunSpec("tuning", setting, "independent", 0, _specs.MODELS, lr)
            res = self.run(spec, holdout=0.1)
            main = res["main_metric"]
            scores[f"{lr:g}"] = float(np.mean([res["final"][m][main] for m in res["models"]]))
            losses[f"{lr:g}"] = float(np.mean([res["final"][m]["loss"] for m in res["models"]]))
        best = max(scores, key=lambda k: (scores[k], -losses[k]))
        out = {
            "setting": setting.name,
            "scores": scores,
            "losses": losses,
            "best": float(best),
            "criterion": "mean held-out main metric of the three models (ties: lower "
            "held-out loss), independent, seed 0",
        }
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_json(path, out)
        return out
