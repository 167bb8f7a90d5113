"""The ``mmojax`` command line: ``train``, ``reproduce``, ``export``, ``predict``, ``evaluate``.

A thin layer: it parses arguments into a :class:`~mmojax.train.TrainConfig`,
calls :func:`mmojax.train.train` and prints the final per-model table. Parsing
(and ``--help``) imports no model, data or checkpoint library; those load once
a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmojax.train import _config

_REPRO_EXPERIMENTS = ("ablation", "tasks", "steps-to-target", "compute")
_NEEDS_DATA = ("tasks", "steps-to-target", "compute", "all")

DESCRIPTION = """\
mmojax: train several transformer models jointly (BERT-, GPT-2- and RoBERTa-style),
sharing gradients between compatible parameters, synchronising them periodically and
scaling each model's learning rate by its convergence (the MultiModelOptimizer paper).

examples:
  mmojax train --task synthetic --workdir runs/demo
  mmojax train --task sst2 --data ../shared/data/sst2 --mode independent --epochs 1
  mmojax train --workdir runs/demo --resume
"""

TRAIN_EPILOG = """\
A step is one optimizer update: --gradient-accumulation-steps micro-batches of --batch-size
examples per model. Every count (--max-steps, --warmup-steps, --sync-every, --eval-every,
--log-every, --checkpoint-every, --convergence-window) is in steps.

A new run refuses a --workdir that is not empty (--resume continues the run there, --overwrite
deletes it first). --resume keeps the run's saved settings; of the other flags it accepts only
--epochs (to extend the run: the learning-rate schedule is re-planned over the new length),
--max-steps, --eval-every, --log-every, --checkpoint-every, --keep-checkpoints,
--max-nonfinite, --no-progress, --no-export, --mesh (the checkpoint is resharded),
--cohort-chunk and the process flags, and refuses any other flag whose value differs.

Cohorts: --members bert=4 trains model bert as 4 members of its architecture, stacked and run
as one vmapped model; member i is the model bert/i in the metrics, the results, the plots and
the export (WORKDIR/export/bert/i). Each member starts from its own seed (or, with bert=DIR in
--models, from the same checkpoint with its own head); --model-weights bert=W weighs every
member. Cohorts do not support --coupling or --gradient-cosines. --cohort-chunk C runs the
members' forward and backward C at a time (less memory at once; on a CPU, faster for large
cohorts).

Devices: --mesh model=M,data=D trains on M x D devices: each batch is split over D (so
--batch-size must be a multiple of D) and the members of cohorts are spread over M (each
cohort's members a multiple of M). On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N
gives N host devices. Several processes (one per host): start the same command on every host
with --coordinator HOST:PORT (process 0's) --num-processes N --process-id I; process 0 writes
the run's files, every process its part of the checkpoints (WORKDIR must be shared).

Ctrl-C (or SIGTERM) stops after the current step and saves a checkpoint to resume from.
"""

# Parser destinations that are TrainConfig fields under another name or form.
_INVERTED = {"no_decay": "cosine_decay", "no_progress": "progress", "no_export": "export"}
_NOT_FIELDS = ("command", "resume", "overwrite")


def _flag(field: str) -> str:
    """The command-line flag of a TrainConfig field."""
    inverted = {v: k for k, v in _INVERTED.items()}
    return "--" + inverted.get(field, field).replace("_", "-")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        return None if text.lower() in ("none", "auto") else parse(text)

    optional.__name__ = parse.__name__
    return optional


def _float_in(low: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if low_open else value >= low)):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if low_open else '>='} {low:g}, got {text}"
            )
        return value

    parse.__name__ = "number"
    return parse


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"must look like bert=1.0,gpt2=0.8; got {text!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"weight of {name.strip()!r} is not a number: {value!r}"
            ) from None
    return out


def _pairs(text: str, what: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"must look like {what}; got {text!r}")
        out[name.strip()] = value.strip()
    return out


def _paths(text: str) -> dict[str, str]:
    return _pairs(text, "gpt2=DIR,roberta=DIR")


def _sizes(text: str) -> dict[str, int]:
    out = {}
    for name, value in _pairs(text, "hidden=384,layers=6").items():
        try:
            out[name] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
    return out


def _members(text: str) -> dict[str, int]:
    """``--members`` as ``{model: members}``."""
    out = {}
    for name, value in _pairs(text, "bert=4,gpt2=2").items():
        try:
            out[name] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"members of {name} must be an integer, got {value!r}"
            ) from None
    return out


def _model_specs(text: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``--models`` as ``(names, {name: checkpoint dir})``."""
    names, checkpoints = [], {}
    for part in text.split(","):
        name, sep, path = part.strip().partition("=")
        if not name:
            continue
        names.append(name.strip())
        if sep:
            checkpoints[name.strip()] = path.strip()
    return tuple(names), checkpoints


def _clip_norm(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    return _float_in(0.0, low_open=True)(text)


def _defaults() -> dict[str, Any]:
    """TrainConfig's field defaults, read without building (and validating) a config."""
    out = {}
    for f in dataclasses.fields(_config.TrainConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _add_train_parser(sub) -> argparse.ArgumentParser:
    d = _defaults()
    nonneg, positive = _int_at_least(0), _int_at_least(1)
    t = sub.add_parser(
        "train",
        help="train models jointly (or independently)",
        description="Train several models jointly (or independently).",
        epilog=TRAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    g = t.add_argument_group("run")
    g.add_argument(
        "--task",
        choices=("synthetic", "sst2", "ner", "qa"),
        default=d["task"],
        help="what to train on",
    )
    g.add_argument(
        "--data",
        default=None,
        help="data directory (sst2: train.tsv/dev.tsv; ner: train.txt/valid.txt; "
        "qa: train.json/dev.json); not needed for synthetic",
    )
    g.add_argument(
        "--models",
        default=",".join(d["models"]),
        help="comma-separated: bert,gpt2,roberta; NAME=DIR starts that model from a local "
        "Hugging Face checkpoint (its weights and tokenizer; a new task head), e.g. "
        "bert=../shared/pretrained/minilm-l6-h384-uncased,gpt2,roberta",
    )
    g.add_argument(
        "--tokenizers",
        type=_paths,
        default=None,
        help="NAME=DIR,...: a from-scratch model tokenizes with this checkpoint's tokenizer "
        "instead of the run's own WordPiece (e.g. gpt2=DIR with GPT-2's tokenizer.json)",
    )
    g.add_argument(
        "--model-size",
        type=_sizes,
        default=None,
        help="sizes of the from-scratch models, overriding --preset: "
        "hidden=384,layers=6,heads=12,intermediate=1536 (any of them)",
    )
    g.add_argument(
        "--members",
        type=_members,
        default=None,
        help="NAME=K,...: train model NAME as a cohort of K members of its architecture "
        "(named NAME/0 ... NAME/K-1), each with its own seed, run as one vmapped model",
    )
    g.add_argument(
        "--cohort-chunk",
        type=_optional(positive),
        default=None,
        help="C: run each cohort's forward and backward over chunks of C members instead of "
        "one vmap of all (same results, less memory at once; on a CPU faster for large "
        "cohorts; not with a mesh's model axis)",
    )
    g.add_argument(
        "--preset", default=d["preset"], choices=("tiny", "small", "base"), help="model sizes"
    )
    g.add_argument(
        "--mode",
        choices=_config.MODES,
        default=d["mode"],
        help="mmo-type-shape: the paper's method and grouping; mmo-role-depth (= mmo) and "
        "mmo-role: the method with aligned groupings; the others switch parts of it off",
    )
    g.add_argument(
        "--epochs", type=positive, default=d["epochs"], help="passes over the training data"
    )
    g.add_argument(
        "--max-steps",
        type=_optional(positive),
        default="none",
        help="stop after this many optimizer updates (none: train all --epochs)",
    )
    g.add_argument(
        "--seed", type=nonneg, default=d["seed"], help="initialisation, data order and dropout"
    )
    g.add_argument("--workdir", default=d["workdir"], help="run directory (outputs, checkpoints)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --workdir from its latest checkpoint",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="delete the run in --workdir and start a new one"
    )
    g.add_argument(
        "--max-train",
        type=_optional(positive),
        default="none",
        help="use at most N training examples (none: all)",
    )
    g.add_argument(
        "--max-val",
        type=_optional(positive),
        default="none",
        help="use at most N validation examples (none: all)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--no-export",
        action="store_true",
        help="do not write the models as Hugging Face checkpoints to WORKDIR/export at the end",
    )
    o = t.add_argument_group("optimizer (paper section 4.4 defaults)")
    o.add_argument(
        "--learning-rate",
        type=_float_in(0.0, low_open=True),
        default=d["learning_rate"],
        help="base learning rate",
    )
    o.add_argument(
        "--batch-size",
        type=positive,
        default=d["batch_size"],
        help="examples per model per micro-batch",
    )
    o.add_argument(
        "--gradient-accumulation-steps",
        type=positive,
        default=d["gradient_accumulation_steps"],
        help="micro-batches per optimizer update",
    )
    o.add_argument(
        "--weight-decay", type=_float_in(0.0), default=d["weight_decay"], help="AdamW weight decay"
    )
    o.add_argument(
        "--warmup-steps",
        type=nonneg,
        default=d["warmup_steps"],
        help="linear warmup, in optimizer updates",
    )
    o.add_argument(
        "--warmup-ratio",
        type=_optional(_float_in(0.0)),
        default="none",
        help="warmup as a fraction of all updates (overrides --warmup-steps)",
    )
    o.add_argument("--no-decay", action="store_true", help="no cosine decay after warmup")
    o.add_argument(
        "--alpha", type=float, default=d["alpha"], help="gradient-sharing coefficient, in [0, 1]"
    )
    o.add_argument(
        "--beta", type=float, default=d["beta"], help="synchronisation coefficient, in [0, 1]"
    )
    o.add_argument(
        "--sync-every",
        type=nonneg,
        default=d["sync_every"],
        help="optimizer updates between synchronisations (0: never)",
    )
    o.add_argument(
        "--reduction",
        choices=("mean", "sum"),
        default=d["reduction"],
        help="how a group's gradients pool",
    )
    o.add_argument(
        "--grouping",
        choices=("type_shape", "role", "role_depth"),
        default=None,
        help="which parameters share: aligned roles and layers, aligned roles, "
        "or the paper's (type, shape) keys (default: the --mode's; role_depth for mmo)",
    )
    o.add_argument(
        "--model-weights",
        type=_weights,
        default=",".join(f"{k}={v}" for k, v in d["model_weights"].items()),
        help="per-model weights, name=value,...; only models of --models",
    )
    o.add_argument(
        "--clip-norm",
        type=_clip_norm,
        default=str(d["clip_norm"]),
        help="per-model gradient clipping ('none' disables)",
    )
    o.add_argument(
        "--convergence-window",
        type=_int_at_least(2),
        default=d["convergence_window"],
        help="losses (optimizer updates) in the convergence slope fit",
    )
    o.add_argument(
        "--convergence-update-every",
        type=positive,
        default=d["convergence_update_every"],
        help="optimizer updates between convergence-rate updates",
    )
    e = t.add_argument_group("evaluation, logging, checkpoints")
    e.add_argument(
        "--eval-every",
        type=_optional(nonneg),
        default="auto",
        help="evaluate every N optimizer updates besides each epoch end and the "
        f"end (0: only those; auto: about {_config.EVALS_PER_RUN} times a run)",
    )
    e.add_argument(
        "--log-every",
        type=positive,
        default=d["log_every"],
        help="optimizer updates per metrics record",
    )
    e.add_argument(
        "--checkpoint-every",
        type=nonneg,
        default=d["checkpoint_every"],
        help="optimizer updates between checkpoints (0: at the end and on Ctrl-C only)",
    )
    e.add_argument(
        "--keep-checkpoints",
        type=positive,
        default=d["keep_checkpoints"],
        help="checkpoints kept (the newest)",
    )
    e.add_argument(
        "--max-nonfinite",
        type=positive,
        default=d["max_nonfinite"],
        help="stop when a model is non-finite this many consecutive micro-batches",
    )
    e.add_argument(
        "--gradient-cosines",
        action="store_true",
        help="log the gradient cosine between every pair of models on shared keys",
    )
    p = t.add_argument_group("devices and processes")
    p.add_argument(
        "--mesh",
        type=_optional(str),
        default=None,
        help="model=M,data=D: train on a device mesh, each batch split over D devices and "
        "the members of cohorts over M (none: one device)",
    )
    p.add_argument(
        "--coordinator",
        default=None,
        help="HOST:PORT of process 0 in a run of several processes (one per host; with "
        "--num-processes and --process-id)",
    )
    p.add_argument("--num-processes", type=positive, default=None, help="processes of the run")
    p.add_argument(
        "--process-id", type=nonneg, default=None, help="this process, 0 .. --num-processes - 1"
    )
    c = t.add_argument_group("function-space coupling and tuning")
    c.add_argument(
        "--coupling",
        choices=_config.COUPLINGS,
        default=d["coupling"],
        help="mutual: Deep Mutual Learning; distill: KL to --teacher-logits",
    )
    c.add_argument(
        "--coupling-weight",
        type=_float_in(0.0),
        default=d["coupling_weight"],
        help="weight of the coupling loss",
    )
    c.add_argument(
        "--temperature",
        type=_float_in(0.0, low_open=True),
        default=d["temperature"],
        help="softmax temperature of the coupling loss",
    )
    c.add_argument(
        "--teacher-logits", default=None, help=".npy of the teacher's logits on the training split"
    )
    c.add_argument(
        "--holdout",
        type=float,
        default=d["holdout"],
        help="train on the rest and evaluate on this fraction of the training "
        "split (for tuning without the validation split)",
    )
    return t


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help; descriptions and epilogs as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmojax", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    r = sub.add_parser(
        "reproduce",
        help="run the paper's experiments with seeds; write a report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument(
        "experiment",
        choices=(*_REPRO_EXPERIMENTS, "all", "report"),
        help="'report' rebuilds report.md from the finished runs only",
    )
    r.add_argument("--seeds", type=_int_at_least(1), default=5, help="seeds per configuration")
    r.add_argument("--workdir", default="runs/reproduce", help="where runs and the report go")
    r.add_argument(
        "--data-dir",
        default=None,
        help="folder with sst2/, conll2003/ (squad/); needed by " + ", ".join(_NEEDS_DATA),
    )
    r.add_argument(
        "--max-train",
        type=_optional(_int_at_least(1)),
        default="none",
        help="cap on training examples for the real tasks",
    )
    r.add_argument("--target", type=float, default=0.9, help="steps-to-target accuracy")
    r.add_argument(
        "--eval-every", type=_int_at_least(1), default=25, help="updates between evaluations"
    )
    r.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    r.add_argument(
        "--settings",
        default=None,
        help="comma-separated settings: ablation (literal-paper, converging-tuned, "
        "literal-tuned, converging-paper) and tasks (sst2, ner, qa, sst2-20k; sst2-20k "
        "runs only when named)",
    )
    r.add_argument(
        "--preset", default="small", choices=("tiny", "small", "base"), help="model sizes"
    )
    r.add_argument(
        "--synthetic-train",
        type=_optional(_int_at_least(1)),
        default="none",
        help="smaller synthetic set (for a quick look; the paper uses 500)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled executables in WORKDIR/jax-cache (never kept "
        "for steps-to-target and compute, whose wall times include compiling)",
    )
    r.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each finished run's final checkpoint (deleted by default)",
    )
    _add_use_parsers(sub)
    return parser


def _add_use_parsers(sub) -> None:
    """``export``, ``predict`` and ``evaluate``: using the models a run trained."""
    x = sub.add_parser(
        "export",
        help="write a run's models as Hugging Face checkpoints",
        description="Write each model of a run (its latest checkpoint) as a Hugging Face "
        "checkpoint: config.json with the label names, Flax weights with the task head, "
        "and the model's tokenizer. transformers loads them with from_pretrained.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    x.add_argument("--workdir", required=True, help="the run directory")
    x.add_argument("--out", default=None, help="output folder (default: WORKDIR/export)")
    for name, text in (
        ("predict", "label text with each model and their ensemble"),
        ("evaluate", "score each model and their ensemble on a data split"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--workdir", help="a run directory (its export/ folder; exported first if missing)"
        )
        where.add_argument(
            "--models", help="a folder of exported models, or one exported model directory"
        )
        if name == "predict":
            p.add_argument(
                "--input",
                default="-",
                help="file with one input per line ('-': standard input): a sentence "
                "(classification, NER: words split on spaces) or 'question<TAB>context' (QA)",
            )
        else:
            p.add_argument("--task", required=True, choices=("synthetic", "sst2", "ner", "qa"))
            p.add_argument("--data", default=None, help="data directory (as for mmojax train)")
            p.add_argument(
                "--split", default="validation", choices=("validation", "train"), help="split"
            )
            p.add_argument(
                "--max-examples",
                type=_optional(_int_at_least(1)),
                default=None,
                help="score only the first N examples",
            )


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig fields from parsed train arguments (any subset of them)."""
    out = {}
    for dest, value in values.items():
        if dest in _NOT_FIELDS:
            continue
        if dest in _INVERTED:
            out[_INVERTED[dest]] = not value
        elif dest == "models":
            out["models"], checkpoints = _model_specs(value)
            if checkpoints:
                out["checkpoints"] = checkpoints
        else:
            out[dest] = value
    return out


def config_from_args(args: argparse.Namespace) -> _config.TrainConfig:
    """The TrainConfig of parsed ``mmojax train`` arguments (a new run)."""
    return _config.TrainConfig(**_fields(vars(args)))


def _given(argv: Sequence[str]) -> dict[str, Any]:
    """The ``mmojax train`` options that ``argv`` (``["train", ...]``) sets explicitly."""
    train = _add_train_parser(argparse.ArgumentParser(prog="mmojax").add_subparsers())
    # No defaults: the namespace holds only what the command line gave.
    for action in train._actions:  # argparse has no public list of actions
        action.default = argparse.SUPPRESS
    return vars(train.parse_args(list(argv)[1:]))


def _resume_config(args: argparse.Namespace, argv: Sequence[str]):
    """The saved config of the run in ``--workdir`` with the flags that may change applied.

    Raises:
      ValueError: naming every flag whose value differs from the run's and that a
        resumed run cannot change.
    """
    from mmojax.train import _rundir

    workdir = args.workdir
    saved = _rundir.read_config(workdir)
    given = _fields(_given(argv))
    given.pop("workdir", None)
    # How this process joins the run is the launch's, never the saved run's.
    changes = {"workdir": workdir, **{f: getattr(args, f) for f in _config.PROCESS_FIELDS}}
    refused = []
    for field, value in given.items():
        if field in _config.RESUMABLE_FIELDS:
            changes[field] = value
        elif (
            field == "model_weights"
            and {m: w for m, w in value.items() if m in saved.models} == saved.model_weights
        ):
            continue
        elif value != getattr(saved, field):
            given_text = (
                _flag(field) if isinstance(value, bool) else f"{_flag(field)} {_show(value)}"
            )
            refused.append(f"{given_text} (the run's {field}: {_show(getattr(saved, field))})")
    if refused:
        allowed = ", ".join(_flag(f) for f in _config.RESUMABLE_FIELDS if f != "workdir")
        raise ValueError(
            f"--resume continues the run in {workdir} with its own settings, and these flags "
            f"differ from them: {'; '.join(refused)}. On resume only {allowed} may change; to "
            "train with other settings start a new run (another --workdir, or --overwrite)"
        )
    if "epochs" in changes and changes["epochs"] < saved.epochs:
        raise ValueError(
            f"--epochs {changes['epochs']} is less than the run's {saved.epochs}: "
            "--resume can extend a run, not shorten it (use --max-steps)"
        )
    return _rundir.with_changes(saved, changes)


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


_FIELD_NAMES = {f.name for f in dataclasses.fields(_config.TrainConfig)}


def _name_flag(message: str) -> str:
    """Prefixes a config error that starts with a field name with that field's flag."""
    match = re.match(r"(\w+)\b", message)
    if match and match.group(1) in _FIELD_NAMES:
        return f"argument {_flag(match.group(1))}: {message}"
    return message


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"mmojax: {record.levelname.lower()}: {text}"
        return f"mmojax: {text}"


def _setup_logging() -> None:
    """Shows mmojax's own INFO messages on stderr, and other libraries' warnings.

    orbax and absl install a handler on the root logger when imported, which
    makes ``logging.basicConfig`` a no-op; so mmojax's logger gets its own
    handler (and does not propagate, to print each message once).
    """
    logger = logging.getLogger("mmojax")
    for handler in [h for h in logger.handlers if getattr(h, "_mmojax_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    handler._mmojax_cli = True  # marks the handler this function owns
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("absl", "jax._src.xla_bridge", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "reproduce":
        if args.experiment in _NEEDS_DATA and not args.data_dir:
            parser.error(
                f"reproduce {args.experiment} needs --data-dir DIR (a folder with "
                "sst2/ and conll2003/); only 'ablation' runs without data"
            )
        if args.data_dir and not os.path.isdir(args.data_dir):
            parser.error(f"--data-dir {args.data_dir} is not a directory")
        _setup_logging()
        return _reproduce(args)
    if args.command in ("export", "predict", "evaluate"):
        _setup_logging()
        return _use(args)
    if args.resume and args.overwrite:  # mmojax train
        parser.error(
            "--resume and --overwrite exclude each other: --resume continues the run "
            "in --workdir, --overwrite deletes it"
        )
    _setup_logging()
    return _train(args, argv)


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from mmojax import train as mtrain  # heavy imports after argument parsing
    from mmojax.train import _loop

    workdir = args.workdir
    try:
        config = _resume_config(args, argv) if args.resume else config_from_args(args)
        _loop.join_processes(config)  # before any JAX computation
        result = mtrain.train(config, resume=args.resume, overwrite=args.overwrite)
    except mtrain.Interrupted as stop:
        if stop.saved:
            print(
                f"\nmmojax: stopped by {stop.signal_name} at update {stop.update}; a "
                f"checkpoint is saved. Resume with: mmojax train --workdir {workdir} "
                "--resume",
                file=sys.stderr,
            )
        else:
            print(
                f"\nmmojax: stopped by {stop.signal_name} at update {stop.update}; no "
                f"checkpoint could be saved. {_resume_hint(workdir)}",
                file=sys.stderr,
            )
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"\nmmojax: interrupted. {_resume_hint(workdir)}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, mtrain.CheckpointError) as err:
        print(f"mmojax: error: {_name_flag(str(err))}", file=sys.stderr)
        return 2
    except mtrain.NonFiniteError as err:
        print(f"mmojax: stopped: {err}", file=sys.stderr)
        return 1
    print(f"\n{result.summary()}")
    print(result.table())
    print(f"\nmetrics: {result.metrics_path}")
    for name, path in result.plots.items():
        print(f"plot ({name}): {path}")
    return 0


def _resume_hint(workdir: str) -> str:
    """Whether (and how) the run in ``workdir`` can be resumed, from what is on disk."""
    ckpt = os.path.join(workdir, "checkpoints")
    steps = [d for d in os.listdir(ckpt) if d.isdigit()] if os.path.isdir(ckpt) else []
    if steps and os.path.exists(os.path.join(workdir, "config.json")):
        return (
            f"The run has a checkpoint (the latest after micro-batch {max(map(int, steps))})"
            f"; resume with: mmojax train --workdir {workdir} --resume"
        )
    return "No checkpoint was saved: there is nothing to resume."


def _use(args: argparse.Namespace) -> int:
    """``mmojax export | predict | evaluate``."""
    from mmojax.train import CheckpointError, RunDirError
    from mmojax.train import _inference as inference

    try:
        if args.command == "export":
            for name, path in inference.export_workdir(args.workdir, args.out).items():
                print(f"{name}: {path}")
            return 0
        predictors = inference.load_predictors(args.workdir or args.models)
        if args.command == "evaluate":
            scores = inference.evaluate(
                predictors,
                args.task,
                args.data,
                max_examples=args.max_examples,
                split=args.split,
            )
            print(_score_table(scores))
            return 0
        lines = _read_lines(args.input)
        print(_predictions(inference, predictors, lines))
        return 0
    except (ValueError, TypeError, OSError, CheckpointError, RunDirError) as err:
        print(f"mmojax: error: {err}", file=sys.stderr)
        return 2


def _read_lines(source: str) -> list[str]:
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    lines = [line.rstrip("\n") for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"no input lines in {'standard input' if source == '-' else source}")
    return lines


def _predictions(inference, predictors, lines: list[str]) -> str:
    """Tab-separated predictions: the input, then each model's, then the ensemble's."""
    names = [*predictors, "ensemble"]
    labels = next(iter(predictors.values())).label_names
    task = next(iter(predictors.values())).model.task
    rows = ["\t".join(["input", *names])]
    if task == "classification":
        probs = inference.classify(predictors, lines)
        for i, line in enumerate(lines):
            cells = [
                f"{labels[int(probs[n][i].argmax())]} ({probs[n][i].max():.2f})" for n in names
            ]
            rows.append("\t".join([line, *cells]))
    elif task == "token_classification":
        sentences = [line.split() for line in lines]
        probs = inference.tag(predictors, sentences)
        for i, words in enumerate(sentences):
            cells = [
                " ".join(f"{w}/{labels[int(k)]}" for w, k in zip(words, probs[n][i].argmax(-1)))
                for n in names
            ]
            rows.append("\t".join([lines[i], *cells]))
    else:
        from mmojax import data as mdata

        examples = []
        for i, line in enumerate(lines):
            question, sep, context = line.partition("\t")
            if not sep:
                raise ValueError(f"QA input line {i + 1} must be 'question<TAB>context'")
            examples.append(mdata.QAExample(str(i), context, question, (), ()))
        answers = inference.answer(predictors, examples)
        for i, line in enumerate(lines):
            rows.append("\t".join([line.partition("\t")[0], *(answers[n][i] for n in names)]))
    return "\n".join(rows)


def _score_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    metrics = list(next(iter(scores.values())))
    head = f"{'model':<12}" + "".join(f"{m:>14}" for m in metrics)
    lines = [head, "-" * len(head)]
    for name, values in scores.items():
        lines.append(f"{name:<12}" + "".join(f"{values[m]:>14.4f}" for m in metrics))
    return "\n".join(lines)


def _reproduce(args: argparse.Namespace) -> int:
    from mmojax import reproduce as repro
    from mmojax.reproduce import _specs

    experiments = _REPRO_EXPERIMENTS if args.experiment in ("all", "report") else (args.experiment,)
    try:
        opts = repro.ReproduceOptions(
            experiments=experiments,
            seeds=args.seeds,
            workdir=args.workdir,
            data_dir=args.data_dir,
            max_train=args.max_train,
            target=args.target,
            eval_every=args.eval_every,
            methods=tuple(args.methods.split(",")) if args.methods else _specs.ABLATION_METHODS,
            settings=tuple(args.settings.split(",")) if args.settings else None,
            preset=args.preset,
            synthetic_train=args.synthetic_train,
            progress=not args.no_progress,
            compile_cache=not args.no_compile_cache,
            keep_checkpoints=args.keep_checkpoints,
        )
        if args.experiment == "report":
            path = repro.write_report(os.path.abspath(args.workdir), opts)
        else:
            path = repro.reproduce(opts)
    except (ValueError, FileNotFoundError) as err:
        print(f"mmojax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nmmojax: interrupted; run the same command again to continue (finished runs "
            "are kept)",
            file=sys.stderr,
        )
        return 130
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
