"""The ``mmojax reproduce`` driver: plan every run, execute with progress, write the report."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
from tqdm.auto import tqdm

from mmojax.reproduce import _report, _specs
from mmojax.reproduce._runner import Runner

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReproduceOptions:
    """Options of one reproduction.

    Attributes:
      experiments: which of :data:`~mmojax.reproduce._specs.EXPERIMENTS`.
      seeds: seeds per configuration (paired across methods).
      workdir: where runs, figures, raw JSON and ``report.md`` go.
      data_dir: folder holding ``sst2/``, ``conll2003/`` (and ``squad/``).
      max_train: cap on training examples for the real tasks (``None``: all).
      target: the steps-to-target accuracy (the paper: 0.9).
      eval_every: validation period in updates for steps-to-target.
      methods: the ablation methods (default: all); ``tasks`` and
        ``steps-to-target`` always run ``independent`` and ``mmo-type-shape``
        and add the other groupings (``mmo-role``, ``mmo-role-depth``) listed
        here (a task setting may restrict its methods further).
      settings: only these settings (ablation and task settings; ``None``: the
        default ones, see :func:`~mmojax.reproduce._specs.ablation_settings`).
      compile_cache: keep XLA executables in ``workdir/jax-cache`` so that runs
        differing only in seed or data compile once (about halves a short
        synthetic run on CPU). Never used when ``steps-to-target`` or ``compute``
        is among the experiments: their wall times must include compilation
        the same way for every method.
      keep_checkpoints: keep each finished run's final checkpoint (its trained
        models) instead of deleting it once the run is recorded.
    """

    experiments: tuple[str, ...]
    seeds: int = 5
    workdir: str = "runs/reproduce"
    data_dir: str | None = None
    max_train: int | None = None
    target: float = 0.9
    eval_every: int = 25
    methods: tuple[str, ...] = _specs.ABLATION_METHODS
    settings: tuple[str, ...] | None = None
    preset: str = "small"
    synthetic_train: int | None = None
    lr_grid: tuple[float, ...] = _specs.LR_GRID
    progress: bool = True
    compile_cache: bool = True
    keep_checkpoints: bool = False

    def __post_init__(self):
        bad = [e for e in self.experiments if e not in _specs.EXPERIMENTS]
        if bad:
            raise ValueError(f"unknown experiments {bad}; choose from {_specs.EXPERIMENTS} or all")
        unknown = [m for m in self.methods if m not in _specs.METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {tuple(_specs.METHODS)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")


def _selected(setting: _specs.Setting, opts: ReproduceOptions) -> bool:
    """Whether ``setting`` runs: named in ``opts.settings``, or a default one when none are."""
    return setting.name in opts.settings if opts.settings is not None else setting.default


def plan_runs(opts: ReproduceOptions, runner: Runner) -> list[tuple[_specs.RunSpec, str]]:
    """Every run, in execution order, as ``(spec, why)``; tunes learning rates as needed."""
    seeds = range(opts.seeds)
    plan = []
    if "ablation" in opts.experiments:
        # Seeds outermost: an interrupted reproduction already has paired seeds for
        # every method.
        for seed in seeds:
            for setting in _specs.ablation_settings():
                if not _selected(setting, opts):
                    continue
                for method in opts.methods:
                    models = _specs.MODELS
                    if method == "distillation":  # the teacher is trained separately
                        models = tuple(m for m in models if m != _specs.TEACHER)
                    plan.append((setting, method, seed, models, "ablation"))
    real = []
    # independent and the paper's method always; the other groupings when asked for
    # (the default).
    task_methods = [
        m
        for m in _specs.TASK_METHODS
        if m in ("independent", _specs.PAPER_METHOD) or m in opts.methods
    ]
    if "tasks" in opts.experiments:
        for setting in _specs.task_settings(opts.max_train):
            if not _selected(setting, opts):
                continue
            if runner.data_path(setting.task) is None:
                log.warning("no %s data under %s: its row says so", setting.task, opts.data_dir)
                continue
            methods = [m for m in task_methods if setting.methods is None or m in setting.methods]
            real += [(setting, m, s, _specs.MODELS, "tasks") for s in seeds for m in methods]
    if {"steps-to-target", "compute"} & set(opts.experiments):
        for setting in _specs.steps_settings(opts.max_train, opts.eval_every):
            if runner.data_path(setting.task) is None:
                raise FileNotFoundError(
                    f"steps-to-target and compute need SST-2: no sst2/ under {opts.data_dir!r}"
                )
            real += [
                (setting, m, s, _specs.MODELS, "steps-to-target")
                for s in seeds
                for m in task_methods
            ]
            if "compute" in opts.experiments:
                for model in _specs.MODELS:  # sequential independent: each model alone
                    real += [
                        (setting, "independent", s, (model,), "steps-to-target") for s in seeds[:2]
                    ]
    plan += real
    out = []
    for setting, method, seed, models, experiment in plan:
        lr = _specs.PAPER_LR
        if setting.lr == "tuned":
            tune = setting
            if setting.tune_as:
                tune = next(
                    s for s in _specs.task_settings(opts.max_train) if s.name == setting.tune_as
                )
            lr = runner.tune_lr(tune, opts.lr_grid)["best"]
        spec = _specs.RunSpec(experiment, setting, method, seed, models, lr)
        out.append((spec, f"{setting.name} {method} seed {seed}"))
    return out


def portable_options(opts: ReproduceOptions) -> dict:
    """``opts`` as recorded in ``options.json``: no absolute machine paths.

    ``workdir`` is kept as given when relative (else ``"."``); ``data_dir`` is
    recorded relative to the workdir, as every run's ``result.json`` records it.
    """
    out = dataclasses.asdict(opts)
    out["workdir"] = "." if os.path.isabs(opts.workdir) else opts.workdir
    if opts.data_dir:
        out["data_dir"] = os.path.relpath(
            os.path.abspath(opts.data_dir), os.path.abspath(opts.workdir)
        )
    out["paths"] = "data_dir is relative to the workdir (this file's folder)"
    return out


def _use_compile_cache(path: str) -> None:
    """Turns on JAX's persistent compilation cache at ``path`` unless one is configured."""
    if jax.config.jax_compilation_cache_dir:
        return  # the user's own cache (JAX_COMPILATION_CACHE_DIR) wins
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def reproduce(opts: ReproduceOptions) -> str:
    """Runs what ``opts`` asks (skipping finished runs), writes ``report.md``, returns its path."""
    overrides = {"preset": opts.preset}
    if opts.synthetic_train is not None:
        overrides["synthetic"] = {
            "max_train": opts.synthetic_train,
            "max_val": max(8, opts.synthetic_train // 5),
        }
    runner = Runner(opts.workdir, opts.data_dir, overrides, opts.keep_checkpoints)
    if opts.compile_cache and not {"steps-to-target", "compute"} & set(opts.experiments):
        _use_compile_cache(os.path.join(runner.workdir, "jax-cache"))
    with open(os.path.join(runner.workdir, "options.json"), "w") as f:
        json.dump(portable_options(opts), f, indent=1)
    plan = plan_runs(opts, runner)
    bar = tqdm(plan, desc="runs", disable=not opts.progress, dynamic_ncols=True)
    for spec, label in bar:
        bar.set_postfix_str(label)
        runner.run(spec, gradient_cosines=len(spec.models) > 1)
    return _report.write_report(runner.workdir, opts)
