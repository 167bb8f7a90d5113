"""The ``mmojax`` command line: ``mmojax train ...``.

A thin layer: it parses arguments into a :class:`~mmojax.train.TrainConfig`,
calls :func:`mmojax.train.train` and prints the final per-model table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from mmojax.train import _config

_REPRO_EXPERIMENTS = ("ablation", "tasks", "steps-to-target", "compute")

DESCRIPTION = """\
mmojax: train several transformer models jointly (BERT-, GPT-2- and RoBERTa-style),
sharing gradients between compatible parameters, synchronising them periodically and
scaling each model's learning rate by its convergence (the MultiModelOptimizer paper).

examples:
  mmojax train --task synthetic --workdir runs/demo
  mmojax train --task sst2 --data ../shared/data/sst2 --mode independent --epochs 1
  mmojax train --workdir runs/demo --resume
"""


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"weights must look like bert=1.0,gpt2=0.8; got {text!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight of {name!r} is not a number: {value!r}") from None
    return out


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "0") else float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmojax", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = _config.TrainConfig()
    t = sub.add_parser("train", help="train models jointly (or independently)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = t.add_argument_group("run")
    g.add_argument("--task", choices=("synthetic", "sst2", "ner", "qa"), default=d.task)
    g.add_argument("--data", default=None,
                   help="data directory (sst2: train.tsv/dev.tsv; ner: train.txt/valid.txt; "
                        "qa: train.json/dev.json); not needed for synthetic")
    g.add_argument("--models", default=",".join(d.models), help="comma-separated: bert,gpt2,roberta")
    g.add_argument("--preset", default=d.preset, choices=("tiny", "small", "base"),
                   help="model sizes")
    g.add_argument("--mode", choices=_config.MODES, default=d.mode)
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many micro-batches")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--workdir", default=d.workdir)
    g.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    g.add_argument("--max-train", type=int, default=None, help="use at most N training examples")
    g.add_argument("--max-val", type=int, default=None, help="use at most N validation examples")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    o = t.add_argument_group("optimizer (paper section 4.4 defaults)")
    o.add_argument("--lr", type=float, default=d.learning_rate, help="base learning rate")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help="per model, per micro-batch")
    o.add_argument("--grad-accum", type=int, default=d.gradient_accumulation_steps)
    o.add_argument("--weight-decay", type=float, default=d.weight_decay)
    o.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="in optimizer updates")
    o.add_argument("--warmup-ratio", type=float, default=None,
                   help="warmup as a fraction of all updates (overrides --warmup-steps)")
    o.add_argument("--no-decay", action="store_true", help="no cosine decay after warmup")
    o.add_argument("--alpha", type=float, default=d.alpha, help="gradient-sharing coefficient")
    o.add_argument("--beta", type=float, default=d.beta, help="synchronisation coefficient")
    o.add_argument("--sync-every", type=int, default=d.sync_every, help="in optimizer updates")
    o.add_argument("--reduction", choices=("mean", "sum"), default=d.reduction)
    o.add_argument("--grouping", choices=("type_shape", "role", "role_depth"),
                   default=d.grouping,
                   help="which parameters share: aligned roles and layers (default), aligned roles, "
                        "or the paper's (type, shape) keys")
    o.add_argument("--weights", type=_weights,
                   default=",".join(f"{k}={v}" for k, v in _config.PAPER_WEIGHTS.items()),
                   help="model weights")
    o.add_argument("--clip-norm", type=_optional_float, default=d.clip_norm,
                   help="per-model gradient clipping ('none' disables)")
    o.add_argument("--conv-window", type=int, default=d.conv_window,
                   help="losses in the convergence slope fit")
    o.add_argument("--conv-update-every", type=int, default=d.conv_update_every)
    e = t.add_argument_group("evaluation, logging, checkpoints")
    e.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="evaluate every N updates (0: each epoch end only)")
    e.add_argument("--log-every", type=int, default=d.log_every, help="fetch metrics every N steps")
    e.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="checkpoint every N steps (0: at the end and on Ctrl-C only)")
    e.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    e.add_argument("--max-nonfinite", type=int, default=d.max_nonfinite,
                   help="stop when a model is non-finite this many consecutive steps")
    e.add_argument("--gradient-cosines", action="store_true",
                   help="log the gradient cosine between every pair of models on shared keys")
    c = t.add_argument_group("function-space coupling and tuning")
    c.add_argument("--coupling", choices=_config.COUPLINGS, default=d.coupling,
                   help="mutual: Deep Mutual Learning; distill: KL to --teacher-logits")
    c.add_argument("--coupling-weight", type=float, default=d.coupling_weight)
    c.add_argument("--temperature", type=float, default=d.temperature)
    c.add_argument("--teacher-logits", default=None,
                   help=".npy of the teacher's logits on the training split")
    c.add_argument("--holdout", type=float, default=d.holdout,
                   help="train on the rest and evaluate on this fraction of the training "
                        "split (for tuning without the validation split)")

    r = sub.add_parser("reproduce", help="run the paper's experiments with seeds; write a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("experiment", choices=(*_REPRO_EXPERIMENTS, "all", "report"),
                   help="'report' rebuilds report.md from the finished runs only")
    r.add_argument("--seeds", type=int, default=5)
    r.add_argument("--workdir", default="runs/reproduce")
    r.add_argument("--data-dir", default=None, help="folder with sst2/, conll2003/ (squad/)")
    r.add_argument("--max-train", type=int, default=None,
                   help="cap on training examples for the real tasks")
    r.add_argument("--target", type=float, default=0.9, help="steps-to-target accuracy")
    r.add_argument("--eval-every", type=int, default=25, help="updates between evaluations")
    r.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    r.add_argument("--settings", default=None,
                   help="comma-separated subset of the ablation settings")
    r.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    r.add_argument("--synthetic-train", type=int, default=None,
                   help="smaller synthetic set (for a quick look; the paper uses 500)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--no-compile-cache", action="store_true",
                   help="do not keep compiled executables in WORKDIR/jax-cache (never kept "
                        "for steps-to-target and compute, whose wall times include compiling)")
    r.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished run's final checkpoint (deleted by default)")
    return parser


def config_from_args(args: argparse.Namespace) -> _config.TrainConfig:
    if isinstance(args.weights, str):
        args.weights = _weights(args.weights)
    return _config.TrainConfig(
        task=args.task, data=args.data, models=tuple(m for m in args.models.split(",") if m),
        preset=args.preset, mode=args.mode, epochs=args.epochs, seed=args.seed,
        workdir=args.workdir, batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        warmup_ratio=args.warmup_ratio, cosine_decay=not args.no_decay, alpha=args.alpha,
        beta=args.beta, sync_every=args.sync_every, reduction=args.reduction,
        grouping=args.grouping,
        model_weights=args.weights, clip_norm=args.clip_norm, conv_window=args.conv_window,
        conv_update_every=args.conv_update_every, max_train=args.max_train,
        max_val=args.max_val, eval_every=args.eval_every, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        max_nonfinite=args.max_nonfinite, max_steps=args.max_steps,
        gradient_cosines=args.gradient_cosines, coupling=args.coupling,
        coupling_weight=args.coupling_weight, temperature=args.temperature,
        teacher_logits=args.teacher_logits, holdout=args.holdout,
        progress=not args.no_progress)


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("absl", "jax._src.xla_bridge", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if args.command == "reproduce":
        return _reproduce(args)
    from mmojax import train as mtrain  # heavy imports after argument parsing

    try:
        if args.resume:
            path = os.path.join(args.workdir, "config.json")
            if not os.path.exists(path):
                parser.error(f"--resume: {path} does not exist (nothing to resume)")
            with open(path) as f:
                saved = json.load(f)
            saved["progress"] = not args.no_progress
            if args.max_steps is not None:
                saved["max_steps"] = args.max_steps
            config = _config.TrainConfig.from_dict(saved)
        else:
            config = config_from_args(args)
        result = mtrain.train(config, resume=args.resume)
    except (ValueError, TypeError, FileNotFoundError, mtrain.CheckpointError) as err:
        print(f"mmojax: error: {err}", file=sys.stderr)
        return 2
    except mtrain.NonFiniteError as err:
        print(f"mmojax: stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nmmojax: interrupted; resume with: mmojax train --workdir {args.workdir} "
              "--resume", file=sys.stderr)
        return 130
    print(f"\n{config.mode} on {config.task}, {result.steps} steps "
          f"({result.updates} optimizer updates), seed {config.seed}")
    print(result.table())
    print(f"\nmetrics: {result.metrics_path}")
    for name, path in result.plots.items():
        print(f"plot ({name}): {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from mmojax import reproduce as repro
    from mmojax.reproduce import _specs

    experiments = _REPRO_EXPERIMENTS if args.experiment in ("all", "report") else (
        args.experiment,)
    try:
        opts = repro.ReproduceOptions(
            experiments=experiments, seeds=args.seeds, workdir=args.workdir,
            data_dir=args.data_dir, max_train=args.max_train, target=args.target,
            eval_every=args.eval_every,
            methods=tuple(args.methods.split(",")) if args.methods else _specs.ABLATION_METHODS,
            settings=tuple(args.settings.split(",")) if args.settings else None,
            preset=args.preset, synthetic_train=args.synthetic_train,
            progress=not args.no_progress, compile_cache=not args.no_compile_cache,
            keep_checkpoints=args.keep_checkpoints)
        if args.experiment == "report":
            path = repro.write_report(os.path.abspath(args.workdir), opts)
        else:
            path = repro.reproduce(opts)
    except (ValueError, FileNotFoundError) as err:
        print(f"mmojax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmmojax: interrupted; run the same command again to continue (finished runs "
              "are kept)", file=sys.stderr)
        return 130
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
