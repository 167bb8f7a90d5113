"""The training loop: data, models, jitted steps, eval, metrics, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import jax
import numpy as np

import mmojax
from mmojax import data as mdata
from mmojax import models as mmodels
from mmojax.train import (
    _checkpoint,
    _interrupt,
    _mesh,
    _metrics,
    _models,
    _progress,
    _rundir,
    _step,
    _tasks,
)
from mmojax.train._config import TrainConfig

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """A model's loss or gradients stayed non-finite for too many steps."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run produced.

    Every ``{model: ...}`` is keyed by the models the run trained
    (:meth:`TrainConfig.model_names`): a cohort's members as ``bert/0`` ...

    Attributes:
      config: the run's configuration.
      final: ``{model: eval metrics}`` of the last evaluation.
      history: ``{model: [(update, main_metric)]}`` of every evaluation.
      steps: micro-batches trained; updates: optimizer updates.
      wall_time: seconds this process spent in :func:`train` (data, models,
        compilation, training, evaluation).
      skipped: ``{model: non-finite steps skipped}``.
      metrics_path: the metrics JSONL file; plots: ``{name: png path}`` (none
        but on process 0 of a multi-process run).
      parameter_counts: ``{model: parameters}``.
      total_wall_time: seconds over every process of the run (a resumed run
        adds the earlier ones' time).
      startup_time: seconds of this process before the first step began.
      baseline: ``(accuracy, label)`` of always predicting the most frequent
        validation class (classification tasks), else ``None``.
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
    total_wall_time: float = 0.0
    startup_time: float = 0.0
    baseline: tuple[float, str] | None = None

    def table(self) -> str:
        """The per-model summary table, with the majority-class baseline where there is one."""
        metric = _tasks.MAIN_METRIC[self.config.task]
        head = f"{'model':<18}{'params':>8}{metric:>10}{'val loss':>10}{'skipped':>9}"
        lines = [head, "-" * len(head)]
        for m in self.config.model_names():
            f = self.final.get(m, {})
            lines.append(
                f"{m:<18}{self.parameter_counts[m] / 1e6:>7.2f}M"
                f"{f.get(metric, float('nan')):>10.4f}{f.get('loss', float('nan')):>10.4f}"
                f"{self.skipped.get(m, 0):>9d}"
            )
        if self.baseline is not None:
            value, label = self.baseline
            lines.append(
                f"{'majority class':<18}{'':>8}{value:>10.4f}{'':>10}{'':>9}   (always {label!r})"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        """What ran and how long it took (the lines the CLI prints above the table)."""
        c = self.config
        earlier = self.total_wall_time - self.wall_time
        timing = (
            f"wall time {self.wall_time:.1f} s in this process ({self.startup_time:.1f} s "
            "of it before the first step: data, models"
        )
        timing += (
            ")"
            if not earlier
            else f"), {self.total_wall_time:.1f} s in all with {earlier:.1f} s before the resume"
        )
        return (
            f"{c.mode} on {c.task}: {self.updates} optimizer updates ({self.steps} "
            f"micro-batches of {c.batch_size} examples per model), seed {c.seed}\n{timing}"
        )


def _evaluate(
    eval_step, params, task: _tasks.TaskData, batch_size: int, names, members, place=None
):
    """``({model: metrics}, {model: class probabilities or None})`` on the validation split.

    ``names`` are the models trained (:meth:`TrainConfig.model_names`): a
    cohort's stacked outputs are split among its ``members``; ``place`` puts
    a host batch where the eval step takes it (default: as it is).
    """
    evaluators = {m: _tasks.Evaluator(task, _models.model_of(m)) for m in names}
    for batch in mdata.BatchIterator.for_eval(task.validation, batch_size):
        device_batch = batch if place is None else place(batch)
        outputs = _metrics.split_members(jax.device_get(eval_step(params, device_batch)), members)
        for m in names:
            evaluators[m].add(batch, outputs[m])
    return (
        {m: e.result() for m, e in evaluators.items()},
        {m: e.probabilities() for m, e in evaluators.items()},
    )


def _with_teacher(task: _tasks.TaskData, path: str) -> _tasks.TaskData:
    """Attaches the teacher's logits on the training split to every training batch."""
    logits = np.load(path)
    n = len(task.train.lengths)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(
            f"teacher logits {path} have shape {logits.shape}; expected "
            f"({n}, num_labels) for the training split"
        )
    train = dataclasses.replace(
        task.train,
        arrays={**task.train.arrays, "teacher_logits": logits.astype(np.float32)},
        pad_values={**task.train.pad_values, "teacher_logits": 0},
    )
    return dataclasses.replace(task, train=train)


def _coupling(config: TrainConfig):
    from mmojax.train import _coupling as coupling

    if config.coupling == "mutual":
        return coupling.mutual_learning_loss(config.coupling_weight, config.temperature)
    if config.coupling == "distill":
        return coupling.distillation_loss(config.coupling_weight, config.temperature)
    return None


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Runs (or resumes) one training run and returns its :class:`RunResult`.

    Writes under ``config.workdir``: ``config.json``, ``tokenizer.json``,
    ``metrics.jsonl``, ``checkpoints/`` and the PNG plots, and nothing before
    the configuration, the run directory, the devices (``config.mesh``) and
    the data have been checked.

    With ``config.mesh`` the state is laid out on the mesh (after a restore
    too: a checkpoint of another mesh is resharded), every training batch is
    split over its data axis and every evaluation batch too when
    ``eval_batch_size`` allows, else replicated. In a multi-process run
    (:func:`join_processes`) every process runs this loop on the same data;
    process 0 alone writes the run's files, every process its part of the
    checkpoints.

    Args:
      config: the run.
      resume: continue the run in ``config.workdir`` from its latest usable
        checkpoint. ``config`` may differ from the run's own only in
        :data:`~mmojax.train._config.RESUMABLE_FIELDS`.
      overwrite: a new run may replace the run (or files) in ``config.workdir``;
        without it a non-empty directory is refused.

    Raises:
      RunDirError: the workdir is a file, cannot be written, holds something
        (a new run without ``overwrite``) or holds no run (``resume``).
      ValueError: ``resume`` with settings that differ from the run's.
      NonFiniteError: if a model stays non-finite for ``max_nonfinite``
        consecutive steps (a checkpoint of the last finite state is saved).
      Interrupted: on SIGINT/SIGTERM, after saving a checkpoint of the last
        completed step (a second signal raises ``KeyboardInterrupt`` at once).
    """
    started = time.perf_counter()
    join_processes(config)
    workdir = os.path.abspath(config.workdir)
    _rundir.check(workdir, resume=resume, overwrite=overwrite)
    if resume:
        _rundir.resumed_config(
            _rundir.read_config(workdir), config, source=os.path.join(workdir, _rundir.CONFIG_FILE)
        )
    mesh = None if config.mesh is None else _mesh.make_mesh(config.mesh)  # enough devices?
    writer = jax.process_index() == 0  # process 0 writes the run's files
    tok_path = os.path.join(workdir, "tokenizer.json")
    checkpoints = _models.resolve_checkpoints(config)
    # A checkpoint's own tokenizer unless --tokenizers names another (see tokenizer_sources).
    own_tokenizers = {
        **checkpoints,
        **{m: _models.resolve_checkpoint(p) for m, p in (config.tokenizers or {}).items()},
    }
    if resume:  # the tokenizers the run saved, not whatever the paths hold now
        own_tokenizers = {m: own_tokenizer_path(workdir, m) for m in own_tokenizers}
    task = _tasks.prepare_task(
        config.task,
        config.data,
        seed=config.seed,
        vocab_size=config.vocab_size,
        max_train=config.max_train,
        max_val=config.max_val,
        tokenizer_path=tok_path if resume else None,
        holdout=config.holdout,
        models=config.models,
        model_tokenizers=own_tokenizers,
        max_length=_models.checkpoint_positions(checkpoints),
    )
    if config.teacher_logits:
        task = _with_teacher(task, config.teacher_logits)
    built = _models.build_run_models(config, task, checkpoints)
    names = config.model_names()  # the models trained, a cohort's members each by name
    members = config.members or {}
    log.info("models:\n%s", mmodels.parameter_table(built))
    if not resume:  # everything is validated: from here on the run writes
        _sync("mmojax: every process has checked the run directory")
        if writer:
            _rundir.create(workdir, overwrite=overwrite)
            if task.tokenizer is not None:
                mdata.save_tokenizer(task.tokenizer, tok_path)
            for m in own_tokenizers:
                mdata.save_tokenizer(task.tokenizers[m], own_tokenizer_path(workdir, m))
            _write_task_info(workdir, task)
            _rundir.write_config(workdir, config)
        _sync("mmojax: process 0 has prepared the run directory")

    # A cohort's members share one apply function (one architecture and config).
    apply_fns = {_models.model_of(n): built[n].apply_fn for n in names}
    fns = {m: _step.ModelFns(apply_fns[m], _tasks.loss_fn(task.model_task)) for m in config.models}
    params = _models.run_params(config, built)
    if config.mode != "independent" and len(names) > 1:
        log.info("sharing plan:\n%s", mmojax.sharing_plan(params, grouping=config.grouping))
    batches = mdata.BatchIterator(task.train, config.batch_size, seed=config.seed)
    accum = config.gradient_accumulation_steps
    per_epoch = batches.num_batches_per_epoch
    total_steps = config.epochs * per_epoch  # micro-batches
    total_updates = max(1, total_steps // accum)
    tx = config.optimizer(total_updates)
    state = _step.init_train_state(params, tx, config.seed)
    if mesh is not None:
        state = _placed(state, mesh)
    ckpt = _checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
    )
    start, earlier_time = 0, 0.0
    if resume:
        try:
            ckpt.check_layout(any(m.config.arch == "gpt2" for m in built.values()))
            state, meta, start = ckpt.restore(state)
            if "config" in meta:
                _rundir.resumed_config(meta["config"], config, source=f"checkpoint {start}")
            if task.tokenizer is not None and meta.get("tokenizer") not in (
                None,
                task.tokenizer.to_str(),
            ):
                raise _checkpoint.CheckpointError(
                    f"{tok_path} differs from the tokenizer saved in checkpoint {start}; "
                    "restore the run's own tokenizer.json to resume"
                )
        except BaseException:
            ckpt.close()
            raise
        if mesh is not None:  # restore gives the template's layout; placed either way
            state = _placed(state, mesh)
        batches.restore(meta["position"])
        earlier_time = float(meta.get("wall_time", 0.0))
        if writer:
            _rundir.write_config(workdir, config)
        log.info("resumed from update %d (micro-batch %d) of %s", start // accum, start, workdir)
    metrics = _metrics.MetricsWriter(
        os.path.join(workdir, "metrics.jsonl"), start if resume else None, enabled=writer
    )
    train_step = _step.make_train_step(
        fns,
        tx,
        extra_loss=_coupling(config),
        gradient_cosines=config.gradient_cosines,
        mesh=mesh,
        cohort_chunk=config.cohort_chunk,
    )
    eval_step = _step.make_eval_step(fns, _tasks.eval_outputs_fn(task.model_task), mesh=mesh)
    place_eval = _eval_placement(mesh, config.eval_batch_size)
    stop_at = (
        total_steps if config.max_steps is None else min(total_steps, config.max_steps * accum)
    )
    eval_period = config.evaluation_period(max(1, stop_at // accum)) * accum
    log_period = config.log_every * accum
    checkpoint_period = config.checkpoint_every * accum
    history = {m: [] for m in names}
    final: dict[str, dict[str, float]] = {}
    probabilities: dict[str, Any] = {}
    first_step_at: float | None = None

    def elapsed() -> float:  # seconds since the run began, over all its processes
        return earlier_time + time.perf_counter() - started

    consumed = batches.position  # data position of the last *completed* step

    def save(step):
        ckpt.save(
            step,
            state,
            {
                "position": consumed,
                "step": step,
                "config": config.to_dict(),
                "tokenizer": None if task.tokenizer is None else task.tokenizer.to_str(),
                "wall_time": elapsed(),
                _checkpoint.LAYOUT_KEY: _checkpoint.LAYOUT,
            },
        )

    def run_eval(step, epoch):
        nonlocal final, probabilities
        final, probabilities = _evaluate(
            eval_step, state.params, task, config.eval_batch_size, names, members, place_eval
        )
        for m, res in final.items():
            history[m].append((step // accum, res[task.main_metric]))
        metrics.write(
            {
                "kind": "eval",
                "step": step,
                "update": step // accum,
                "epoch": epoch,
                "time": elapsed(),
                "models": final,
            }
        )
        return final

    pending: list[Any] = []
    progress = _progress.Progress(
        stop_at // accum, start // accum, task.main_metric, enabled=config.progress and writer
    )
    step = start
    if resume:
        metrics.write(
            {
                "kind": "event",
                "step": step,
                "update": step // accum,
                "event": "resumed",
                "time": elapsed(),
            }
        )
    stop = _interrupt.StopRequest()
    try:
        with stop:
            # the signal every process stops on, agreed after every step (and before the first)
            stopping = _interrupt.agreed_stop(stop)
            while step < stop_at and stopping is None:
                if first_step_at is None:
                    first_step_at = time.perf_counter()
                batch = next(batches)
                if mesh is not None:
                    batch = _mesh.shard_batch(batch, mesh)
                state, step_metrics = train_step(state, batch)
                consumed = batches.position
                pending.append(step_metrics)
                step += 1
                progress.update(step // accum)
                stopping = _interrupt.agreed_stop(stop)
                if len(pending) >= log_period or step == stop_at or stopping:
                    summary = _metrics.summarise(
                        [_metrics.split_members(s, members) for s in jax.device_get(pending)]
                    )
                    metrics.write(
                        {
                            "kind": "train",
                            "step": step,
                            "update": step // accum,
                            "epoch": step / per_epoch,
                            "time": elapsed(),
                            "micro_batches": len(pending),
                            "models": summary,
                        }
                    )
                    pending = []
                    progress.show(train_loss={m: s["loss"] for m, s in summary.items()})
                    _check_finite(state, summary, step, config, metrics, save, members)
                if (
                    (eval_period and step % eval_period == 0)
                    or step % per_epoch == 0
                    or step == stop_at
                ):
                    res = run_eval(step, step / per_epoch)
                    progress.show(validation={m: r[task.main_metric] for m, r in res.items()})
                if checkpoint_period and step % checkpoint_period == 0:
                    save(step)
        if stopping:
            raise _stopped(stopping, step, accum, save, metrics, workdir)
        if not final:  # resumed a finished run: nothing trained, still report where it stands
            run_eval(step, step / per_epoch)
        save(step)
    finally:
        progress.close()
        ckpt.close()
    plots = _plots_for(metrics.path, workdir) if writer else {}
    if config.export:
        trained = _host(state.params)  # every process takes part in gathering a mesh's arrays
        if writer:
            export_run(workdir, built, trained, task)
    skipped = {
        m: int(v) for m, v in _metrics.split_members(jax.device_get(state.skipped), members).items()
    }
    wall = time.perf_counter() - started
    startup = (first_step_at or time.perf_counter()) - started
    return RunResult(
        config,
        final,
        history,
        step,
        step // accum,
        wall,
        skipped,
        metrics.path,
        plots,
        {m: mmodels.parameter_count(built[m].params) for m in names},
        state,
        probabilities,
        total_wall_time=earlier_time + wall,
        startup_time=startup,
        baseline=_tasks.majority_baseline(task),
    )


TASK_FILE = "task.json"


def _write_task_info(workdir: str, task: _tasks.TaskData) -> None:
    """What rebuilding the run's models needs besides the config (``mmojax export``)."""
    info = {
        "task": task.name,
        "model_task": task.model_task,
        "num_labels": task.num_labels,
        "label_names": list(task.label_names),
        "max_length": task.max_length,
    }
    with open(os.path.join(workdir, TASK_FILE), "w") as f:
        json.dump(info, f, indent=1)


def own_tokenizer_path(workdir: str, model: str) -> str:
    """Where a run keeps the tokenizer of a model that does not use the shared one."""
    return os.path.join(workdir, "tokenizers", f"{model}.json")


def export_run(workdir: str, built, params, task: _tasks.TaskData, out: str | None = None) -> dict:
    """Writes each model as a Hugging Face checkpoint under ``out`` (default ``workdir/export``).

    Each ``out/<model>`` holds ``config.json`` (with the label names),
    the Flax weights with the task head, and the model's tokenizer; see
    :func:`mmojax.models.export_model`. Member ``i`` of a cohort ``bert`` is
    the model ``bert/i``, written to ``out/bert/i``. ``params`` are a train
    state's (a cohort stacked); ``built`` is :func:`~mmojax.train._models.build_run_models`'.
    Returns ``{model: directory}``.
    """
    out = os.path.join(workdir, "export") if out is None else out
    params = _models.member_params(jax.device_get(params))
    dirs = {}
    for name, model in built.items():
        tokenizer = task.tokenizers.get(_models.model_of(name), task.tokenizer)
        dirs[name] = mmodels.export_model(
            model,
            params[name],
            os.path.join(out, name),
            tokenizer=tokenizer,
            label_names=task.label_names or None,
        )
    log.info("exported %s as Hugging Face checkpoints to %s", ", ".join(dirs), out)
    return {m: str(d) for m, d in dirs.items()}


def _stopped(signal_name, step, accum, save, metrics, workdir) -> _interrupt.Interrupted:
    """Saves the state of the last completed step after a signal; the exception to raise."""
    try:
        save(step)
        saved = True
    except Exception as err:  # noqa: BLE001 - report it; the exception says nothing was saved
        log.error(
            "could not save a checkpoint at update %d: %s: %s",
            step // accum,
            type(err).__name__,
            err,
        )
        saved = False
    metrics.write(
        {
            "kind": "event",
            "step": step,
            "update": step // accum,
            "event": "interrupted",
            "signal": signal_name,
            "saved": saved,
        }
    )
    return _interrupt.Interrupted(signal_name, step // accum, saved, workdir)


def _check_finite(state, summary, step, config, metrics, save, members) -> None:
    for m, s in summary.items():
        if s.get("nonfinite_steps"):
            message = (
                f"{m}: non-finite loss or gradients in {s['nonfinite_steps']} of the "
                f"last micro-batches (up to micro-batch {step}); those were skipped"
            )
            log.warning(message)
            metrics.write(
                {
                    "kind": "event",
                    "step": step,
                    "event": "nonfinite",
                    "model": m,
                    "message": message,
                }
            )
    streaks = {
        m: int(v)
        for m, v in _metrics.split_members(jax.device_get(state.nonfinite), members).items()
    }
    bad = {m: n for m, n in streaks.items() if n >= config.max_nonfinite}
    if bad:
        save(step)  # every model's parameters are finite: skipped updates were not applied
        raise NonFiniteError(
            f"models {sorted(bad)} had non-finite losses or gradients for {bad} consecutive "
            f"micro-batches (limit {config.max_nonfinite}); stopped at micro-batch {step}. The "
            f"last finite state is checkpointed in {config.workdir}/checkpoints, but resuming "
            f"keeps this run's settings. Start a new run (another workdir, or overwrite this "
            f"one) with a lower learning rate (now {config.learning_rate:g}; --learning-rate) "
            f"or gradient clipping (now {config.clip_norm}; --clip-norm)."
        )


def _plots_for(metrics_path: str, workdir: str) -> dict[str, str]:
    try:
        from mmojax.train import _plots
    except ImportError:  # pragma: no cover - plots are part of the package
        return {}
    return {k: str(v) for k, v in _plots.plot_run(metrics_path, workdir).items()}


def join_processes(config: TrainConfig) -> None:
    """Joins the multi-process run that ``config`` describes (nothing without ``coordinator``).

    Calls :func:`mmojax.train.initialize_distributed`, which must come before
    any JAX computation of the process; a process that has joined already is
    left as it is. Where JAX runs on the CPU only, the CPU backend's
    collectives are gloo's.

    Raises:
      ValueError: the process belongs to a run of another number of processes.
    """
    if config.coordinator is not None and not jax.distributed.is_initialized():
        _mesh.initialize_distributed(
            config.coordinator, config.num_processes, config.process_id, cpu=_cpu_only()
        )
    if config.num_processes is not None and jax.process_count() != config.num_processes:
        raise ValueError(
            f"num_processes is {config.num_processes}, but this process is one of "
            f"{jax.process_count()}: it joined another run before this one"
        )


def _cpu_only() -> bool:
    """Whether JAX can run on the CPU only here (read without starting a backend)."""
    import importlib.metadata
    import importlib.util

    platforms = (jax.config.jax_platforms or "").lower()
    if platforms:
        return set(platforms.split(",")) <= {"cpu"}
    plugins = list(importlib.metadata.entry_points(group="jax_plugins"))
    return not plugins and importlib.util.find_spec("libtpu") is None


def _sync(name: str) -> None:
    """A barrier of every process of a multi-process run (nothing in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _placed(state: Any, mesh: jax.sharding.Mesh) -> Any:
    """``state`` laid out on ``mesh`` (:func:`~mmojax.train._mesh.state_shardings`).

    A leaf already placed so (a checkpoint restored into a placed template) is
    kept as it is; any other (a host value, an array on one device) is placed.
    """
    shardings = _mesh.state_shardings(state, mesh)

    def place(leaf, sharding):
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        return _mesh.put_global(leaf, sharding)

    return jax.tree.map(place, state, shardings)


def _eval_placement(mesh: jax.sharding.Mesh | None, batch_size: int):
    """How an evaluation batch (``batch_size`` rows, padded) goes to the eval step:
    as it is without a mesh, split over the data axis when its size allows, else
    replicated on every device of the mesh."""
    if mesh is None:
        return None
    if batch_size % mesh.shape[_mesh.DATA_AXIS] == 0:
        return lambda batch: _mesh.shard_batch(batch, mesh)
    everywhere = _mesh.replicated(mesh)
    return lambda batch: _mesh.put_global(batch, jax.tree.map(lambda _: everywhere, batch))


def _host(tree: Any) -> Any:
    """Host (numpy) copies of a tree of arrays, whole on every process.

    In a multi-process run every process must call it: arrays split over
    processes (a cohort on the model axis) are gathered.
    """
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
