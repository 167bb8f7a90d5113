"""The training loop: data, models, jitted steps, eval, metrics, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from mmojax import data as mdata
from mmojax import models as mmodels
from mmojax.train import _checkpoint, _step, _tasks
from mmojax.train._config import TrainConfig

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """A model's loss or gradients stayed non-finite for too many steps."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run produced.

    Attributes:
      config: the run's configuration.
      final: ``{model: eval metrics}`` of the last evaluation.
      history: ``{model: [(update, main_metric)]}`` of every evaluation.
      steps: micro-batches trained; updates: optimizer updates.
      wall_time: seconds of training (this process, eval included).
      skipped: ``{model: non-finite steps skipped}``.
      metrics_path: the metrics JSONL file; plots: ``{name: png path}``.
      parameter_counts: ``{model: parameters}``.
    """

    config: TrainConfig
    final: dict[str, dict[str, float]]
    history: dict[str, list[tuple[int, float]]]
    steps: int
    updates: int
    wall_time: float
    skipped: dict[str, int]
    metrics_path: str
    plots: dict[str, str]
    parameter_counts: dict[str, int]
    state: Any = None
    probabilities: dict[str, np.ndarray] | None = None

    def table(self) -> str:
        """The per-model summary table."""
        metric = _tasks.MAIN_METRIC[self.config.task]
        head = f"{'model':<10}{'params':>10}{metric:>10}{'val loss':>10}{'updates':>9}" \
               f"{'skipped':>9}{'wall s':>9}"
        lines = [head, "-" * len(head)]
        for m in self.config.models:
            f = self.final.get(m, {})
            lines.append(f"{m:<10}{self.parameter_counts[m] / 1e6:>9.2f}M"
                         f"{f.get(metric, float('nan')):>10.4f}{f.get('loss', float('nan')):>10.4f}"
                         f"{self.updates:>9d}{self.skipped.get(m, 0):>9d}{self.wall_time:>9.1f}")
        return "\n".join(lines)


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _MetricsLog:
    """Appends JSON records to the run's metrics file (one object per line)."""

    def __init__(self, path: str, keep_until_step: int | None):
        self.path = path
        if keep_until_step is None:
            open(path, "w").close()
        elif os.path.exists(path):
            # A resumed run rewrites what came after its checkpoint.
            with open(path) as f:
                kept = [line for line in f if line.strip()
                        and json.loads(line).get("step", 0) <= keep_until_step]
            with open(path, "w") as f:
                f.writelines(kept)

    def write(self, record: Mapping[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(_json_safe(dict(record))) + "\n")


def _summarise(pending: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Host-side means over the fetched steps (last value for rates)."""
    fetched = jax.device_get(pending)
    out = {}
    for m in fetched[0]:
        rows = [step[m] for step in fetched]
        summary = {}
        for key in rows[0]:
            values = np.array([float(r[key]) for r in rows])
            if key in ("lr", "conv_rate"):
                summary[key] = float(values[-1])
            elif key == "finite":
                summary["nonfinite_steps"] = int(np.sum(values == 0))
            else:
                ok = np.isfinite(values)
                summary[key] = float(values[ok].mean()) if ok.any() else float("nan")
        out[m] = summary
    return out


def _evaluate(eval_step, params, task: _tasks.TaskData, batch_size: int, names):
    """``({model: metrics}, {model: class probabilities or None})`` on the validation split."""
    evaluators = {m: _tasks.Evaluator(task) for m in names}
    for batch in mdata.BatchIterator.for_eval(task.validation, batch_size):
        outputs = jax.device_get(eval_step(params, batch))
        for m in names:
            evaluators[m].add(batch, outputs[m])
    return ({m: e.result() for m, e in evaluators.items()},
            {m: e.probabilities() for m, e in evaluators.items()})


def _with_teacher(task: _tasks.TaskData, path: str) -> _tasks.TaskData:
    """Attaches the teacher's logits on the training split to every training batch."""
    logits = np.load(path)
    n = len(task.train.lengths)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"teacher logits {path} have shape {logits.shape}; expected "
                         f"({n}, num_labels) for the training split")
    train = dataclasses.replace(
        task.train, arrays={**task.train.arrays, "teacher_logits": logits.astype(np.float32)},
        pad_values={**task.train.pad_values, "teacher_logits": 0})
    return dataclasses.replace(task, train=train)


def _coupling(config: TrainConfig):
    from mmojax.train import _coupling as coupling

    if config.coupling == "mutual":
        return coupling.mutual_learning_loss(config.coupling_weight, config.temperature)
    if config.coupling == "distill":
        return coupling.distillation_loss(config.coupling_weight, config.temperature)
    return None


def train(config: TrainConfig, *, resume: bool = False) -> RunResult:
    """Runs (or resumes) one training run and returns its :class:`RunResult`.

    Writes under ``config.workdir``: ``config.json``, ``tokenizer.json``,
    ``metrics.jsonl``, ``checkpoints/`` and the PNG plots.

    Raises:
      NonFiniteError: if a model stays non-finite for ``max_nonfinite``
        consecutive steps (a checkpoint of the last finite state is saved).
      KeyboardInterrupt: after saving a checkpoint, on Ctrl-C.
    """
    workdir = os.path.abspath(config.workdir)
    os.makedirs(workdir, exist_ok=True)
    tok_path = os.path.join(workdir, "tokenizer.json")
    if resume and not os.path.exists(tok_path):
        raise _checkpoint.CheckpointError(f"cannot resume: {tok_path} does not exist")
    task = _tasks.prepare_task(
        config.task, config.data, seed=config.seed, vocab_size=config.vocab_size,
        max_train=config.max_train, max_val=config.max_val,
        tokenizer_path=tok_path if resume else None, holdout=config.holdout)
    if config.teacher_logits:
        task = _with_teacher(task, config.teacher_logits)
    if not resume:
        mdata.save_tokenizer(task.tokenizer, tok_path)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f, indent=2)

    built = mmodels.build_models(
        list(config.models), preset=config.preset, task=task.model_task,
        vocab_size=task.tokenizer.get_vocab_size(), max_length=task.max_length,
        num_labels=task.num_labels, seed=config.seed, dropout=config.dropout)
    log.info("models:\n%s", mmodels.parameter_table(built))
    fns = {m: _step.ModelFns(built[m].apply_fn, _tasks.loss_fn(task.model_task))
           for m in config.models}
    params = {m: built[m].params for m in config.models}

    batches = mdata.BatchIterator(task.train, config.batch_size, seed=config.seed)
    per_epoch = batches.num_batches_per_epoch
    total_steps = config.epochs * per_epoch
    total_updates = max(1, total_steps // config.gradient_accumulation_steps)
    tx = config.optimizer(total_updates)
    state = _step.init_train_state(params, tx, config.seed)
    ckpt = _checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    keep=config.keep_checkpoints)
    start = 0
    if resume:
        state, meta, start = ckpt.restore(state)
        if meta.get("tokenizer") not in (None, task.tokenizer.to_str()):
            raise _checkpoint.CheckpointError(
                f"{tok_path} differs from the tokenizer saved in checkpoint {start}; restore "
                "the run's own tokenizer.json to resume")
        batches.restore(meta["position"])
        log.info("resumed from step %d (data position %s)", start, meta["position"])
    metrics = _MetricsLog(os.path.join(workdir, "metrics.jsonl"), start if resume else None)
    train_step = _step.make_train_step(fns, tx, extra_loss=_coupling(config),
                                       gradient_cosines=config.gradient_cosines)
    eval_step = _step.make_eval_step(fns, _tasks.eval_outputs_fn(task.model_task))
    stop_at = total_steps if config.max_steps is None else min(total_steps, config.max_steps)
    accum = config.gradient_accumulation_steps
    eval_every_steps = config.eval_every * accum
    history = {m: [] for m in config.models}
    final: dict[str, dict[str, float]] = {}
    probabilities: dict[str, Any] = {}
    t0 = time.perf_counter()

    consumed = batches.position  # data position of the last *completed* step

    def save(step):
        ckpt.save(step, state, {"position": consumed, "step": step, "config": config.to_dict(),
                                "tokenizer": task.tokenizer.to_str()})

    def run_eval(step, epoch):
        nonlocal final, probabilities
        final, probabilities = _evaluate(eval_step, state.params, task, config.eval_batch_size,
                                         config.models)
        for m, res in final.items():
            history[m].append((step // accum, res[task.main_metric]))
        metrics.write({"kind": "eval", "step": step, "update": step // accum, "epoch": epoch,
                       "time": time.perf_counter() - t0, "models": final})
        return final

    pending: list[Any] = []
    bar = tqdm(total=stop_at, initial=start, disable=not config.progress, desc="train",
               dynamic_ncols=True)
    step = start
    try:
        while step < stop_at:
            batch = next(batches)
            state, step_metrics = train_step(state, batch)
            consumed = batches.position
            pending.append(step_metrics)
            step += 1
            bar.update(1)
            epoch_end = step % per_epoch == 0
            if len(pending) >= config.log_every or epoch_end or step == stop_at:
                summary = _summarise(pending)
                pending = []
                metrics.write({"kind": "train", "step": step, "update": step // accum,
                               "epoch": step / per_epoch, "time": time.perf_counter() - t0,
                               "models": summary})
                bar.set_postfix({m: f"{s['loss']:.3f}" for m, s in summary.items()})
                _check_finite(state, summary, step, config, metrics, save)
            if (eval_every_steps and step % eval_every_steps == 0) or epoch_end \
                    or step == stop_at:
                res = run_eval(step, step / per_epoch)
                bar.set_postfix({m: f"{r[task.main_metric]:.3f}" for m, r in res.items()})
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save(step)
        if not final:  # resumed a finished run: nothing trained, still report where it stands
            run_eval(step, step / per_epoch)
        save(step)
    except KeyboardInterrupt:
        log.warning("interrupted at step %d: saving a checkpoint to resume from", step)
        try:
            jax.block_until_ready(state)
            save(step)
        except Exception as err:  # noqa: BLE001 - e.g. interrupted while buffers were donated
            log.error("could not save a checkpoint at step %d (%s); the previous checkpoint "
                      "is kept", step, err)
        raise
    finally:
        bar.close()
        ckpt.close()
    wall = time.perf_counter() - t0
    plots = _plots_for(metrics.path, workdir)
    skipped = {m: int(v) for m, v in jax.device_get(state.skipped).items()}
    return RunResult(config, final, history, step, step // accum, wall, skipped, metrics.path,
                     plots, {m: mmodels.parameter_count(params[m]) for m in config.models},
                     state, probabilities)


def _check_finite(state, summary, step, config, metrics, save) -> None:
    for m, s in summary.items():
        if s.get("nonfinite_steps"):
            message = (f"{m}: non-finite loss or gradients in {s['nonfinite_steps']} of the "
                       f"last steps (up to step {step}); those updates were skipped")
            log.warning(message)
            metrics.write({"kind": "event", "step": step, "event": "nonfinite", "model": m,
                           "message": message})
    streaks = {m: int(v) for m, v in jax.device_get(state.nonfinite).items()}
    bad = {m: n for m, n in streaks.items() if n >= config.max_nonfinite}
    if bad:
        save(step)  # every model's parameters are finite: skipped updates were not applied
        raise NonFiniteError(
            f"models {sorted(bad)} had non-finite losses or gradients for {bad} consecutive "
            f"steps (limit {config.max_nonfinite}); stopped at step {step}. The last finite "
            f"state is checkpointed in {config.workdir}/checkpoints. Try a lower learning "
            f"rate or clip_norm.")


def _plots_for(metrics_path: str, workdir: str) -> dict[str, str]:
    try:
        from mmojax.train import _plots
    except ImportError:  # pragma: no cover - plots are part of the package
        return {}
    return {k: str(v) for k, v in _plots.plot_run(metrics_path, workdir).items()}
