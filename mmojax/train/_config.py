"""Typed, validated configuration of a training run, and the optimizer it implies."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the optimizer (jax, optax) is imported when a config is built, not at import
    import optax

MODES = (
    "mmo",
    "mmo-type-shape",
    "mmo-role",
    "mmo-role-depth",
    "independent",
    "joint-no-sharing",
    "no-sharing",
    "no-sync",
    "no-adaptive-lr",
)
# The joint method named by its grouping; plain "mmo" is mmojax's default grouping.
MODE_GROUPINGS = {
    "mmo-type-shape": "type_shape",
    "mmo-role": "role",
    "mmo-role-depth": "role_depth",
}
DEFAULT_GROUPING = "role_depth"
MODEL_SIZE_FIELDS = ("hidden", "layers", "heads", "intermediate")
COUPLINGS = ("none", "mutual", "distill")
PAPER_WEIGHTS = {"bert": 1.0, "gpt2": 0.8, "roberta": 1.2}
EVALS_PER_RUN = 5  # evaluations of a run when eval_every is None (besides epoch ends)
# Old names of fields, accepted when a saved config.json is read.
_RENAMED = {"conv_window": "convergence_window", "conv_update_every": "convergence_update_every"}
# Fields a resumed run may change (the rest must match the checkpoint): how long it
# runs and what it reports, never what it computes. A longer ``epochs`` re-plans the
# learning-rate schedule over the new length from the current update on.
RESUMABLE_FIELDS = (
    "workdir",
    "epochs",
    "max_steps",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "max_nonfinite",
    "progress",
    "export",
    "mesh",
    "cohort_chunk",
    "coordinator",
    "num_processes",
    "process_id",
)
# The fields that say how this process joins a multi-process run: a property of
# the launch, not of the run, so a resumed run takes them from its command line.
PROCESS_FIELDS = ("coordinator", "num_processes", "process_id")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the paper's section 4.4.

    Units: every count (``max_steps``, ``warmup_steps``, ``sync_every``,
    ``eval_every``, ``log_every``, ``checkpoint_every``, the convergence
    window) is in *steps*, and a step is one optimizer update, i.e.
    ``gradient_accumulation_steps`` micro-batches of ``batch_size`` examples
    per model. ``eval_every=None`` evaluates about :data:`EVALS_PER_RUN`
    times per run, ``0`` only at each epoch end (and always at the end).

    ``model_weights`` may name only models of ``models``; the default (the
    paper's weights of bert, gpt2 and roberta) is kept for the models it names.

    Models: ``models`` names the models (``bert``, ``gpt2``, ``roberta``).
    A model named in ``checkpoints`` starts from that local Hugging Face
    checkpoint directory (its backbone weights, its configuration and its
    tokenizer; the task head is new); the others are built from ``preset``
    (with ``model_size`` overriding its sizes) and start from scratch, with
    the tokenizer named in ``tokenizers`` or else the WordPiece tokenizer the
    run trains on its training split (shared by all such models). With
    ``export``, every model is written as a Hugging Face checkpoint to
    ``workdir/export/<model>`` at the end of the run.

    Cohorts: ``members={"bert": 4}`` trains model ``bert`` as a
    :class:`mmojax.Cohort` of 4 members of its architecture, stacked and run
    as one vmapped model; member ``i`` is a model named ``bert/i`` everywhere
    (initialised with :func:`mmojax.models.derive_seed` of the run seed and
    ``"bert/i"``, its own dropout stream, metrics, results and export
    ``workdir/export/bert/i``). A checkpoint in ``checkpoints`` is loaded into
    every member (their heads seeded per member); ``model_weights`` gives all
    members of a cohort the cohort's weight. Cohorts do not support
    ``coupling`` or ``gradient_cosines``. :meth:`model_names` lists the
    models a run trains, members by their member names. ``cohort_chunk=C``
    runs each cohort's forward and backward over chunks of ``C`` members
    (same results; less activation memory at once, which on a CPU keeps a
    large cohort's step in cache; see :func:`mmojax.train.make_train_step`).

    Devices: ``mesh="model=M,data=D"`` trains on a ``(model, data)`` device
    mesh (see :mod:`mmojax.train._mesh`): every batch is split over ``D``
    data shards (``batch_size`` must be a multiple of ``D``), and the members
    of cohorts are spread over ``M`` model shards (``M > 1`` needs cohorts
    whose sizes are multiples of ``M``). ``coordinator``, ``num_processes``
    and ``process_id`` (all or none) describe a multi-process run, one process
    per host, all with the same configuration; the caller joins it with
    :func:`mmojax.train.initialize_distributed` before any JAX work (the CLI
    does), and only process 0 writes the run's files.

    Modes: ``mmo`` (everything on; ``grouping`` defaults to ``role_depth``),
    ``mmo-type-shape``, ``mmo-role`` and ``mmo-role-depth`` (everything on
    with that grouping; ``mmo-type-shape`` is the paper's), ``independent`` (each model plain AdamW
    with the same schedule: no sharing, sync, adaptive lr or model weights),
    ``joint-no-sharing`` (alpha = beta = 0, adaptive lr and weights kept), and
    the ablations ``no-sharing`` (alpha = 0), ``no-sync`` (beta = 0) and
    ``no-adaptive-lr``.

    ``holdout`` > 0 trains on the first part of the (seeded, shuffled)
    training split and evaluates on the held-out rest instead of the
    validation split: for tuning hyperparameters without touching the
    evaluation data. ``coupling`` adds a function-space loss between models:
    ``mutual`` (Deep Mutual Learning) or ``distill`` (KL to the teacher logits
    stored at ``teacher_logits``), weighted by ``coupling_weight`` at
    ``temperature``.
    """

    task: str = "synthetic"
    data: str | None = None
    models: tuple[str, ...] = ("bert", "gpt2", "roberta")
    preset: str = "small"
    mode: str = "mmo"
    epochs: int = 3
    seed: int = 0
    workdir: str = "runs/default"
    batch_size: int = 16
    gradient_accumulation_steps: int = 2
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    warmup_ratio: float | None = None
    cosine_decay: bool = True
    alpha: float = 0.2
    beta: float = 0.1
    sync_every: int = 10
    reduction: str = "mean"
    grouping: str | None = None  # None: the mode's, else "role_depth"; the paper's: "type_shape"
    model_weights: Mapping[str, float] | None = dataclasses.field(
        default_factory=lambda: dict(PAPER_WEIGHTS)
    )
    clip_norm: float | None = 1.0
    convergence_window: int = 20
    convergence_update_every: int = 10
    vocab_size: int = 8000
    max_train: int | None = None
    max_val: int | None = None
    eval_every: int | None = None
    eval_batch_size: int = 64
    log_every: int = 10
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    max_nonfinite: int = 20
    max_steps: int | None = None
    dropout: float = 0.1
    holdout: float = 0.0
    coupling: str = "none"
    coupling_weight: float = 1.0
    temperature: float = 1.0
    teacher_logits: str | None = None
    gradient_cosines: bool = False
    progress: bool = True
    checkpoints: Mapping[str, str] | None = None
    tokenizers: Mapping[str, str] | None = None
    model_size: Mapping[str, int] | None = None
    export: bool = True
    members: Mapping[str, int] | None = None
    mesh: str | None = None
    cohort_chunk: int | None = None
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.models, str):
            object.__setattr__(self, "models", tuple(m for m in self.models.split(",") if m))
        if not self.models:
            raise ValueError("models must name at least one model")
        from mmojax.models import ARCHS  # flax: imported when a config is built

        unknown = [m for m in self.models if m not in ARCHS]
        if unknown:
            raise ValueError(f"models: unknown model(s) {unknown}; valid: {list(ARCHS)}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models names a model more than once: {list(self.models)}")
        implied = MODE_GROUPINGS.get(self.mode)
        if self.grouping is None:
            object.__setattr__(self, "grouping", implied or DEFAULT_GROUPING)
        elif implied and self.grouping != implied:
            raise ValueError(
                f"grouping {self.grouping!r} contradicts mode {self.mode!r}, whose grouping "
                f"is {implied!r}; use mode 'mmo' with grouping {self.grouping!r}"
            )
        self._check_model_sources()
        self._check_members()
        for name, minimum in (
            ("epochs", 1),
            ("batch_size", 1),
            ("gradient_accumulation_steps", 1),
            ("vocab_size", 1),
            ("eval_batch_size", 1),
            ("log_every", 1),
            ("keep_checkpoints", 1),
            ("max_nonfinite", 1),
            ("seed", 0),
            ("warmup_steps", 0),
            ("checkpoint_every", 0),
            ("sync_every", 0),
            ("convergence_window", 2),
            ("convergence_update_every", 1),
        ):
            _check_int(name, getattr(self, name), minimum)
        for name in ("eval_every",):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 0)
        for name in ("max_steps", "max_train", "max_val"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if not (
            _is_number(self.learning_rate)
            and math.isfinite(self.learning_rate)
            and self.learning_rate > 0
        ):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (
            _is_number(self.weight_decay)
            and math.isfinite(self.weight_decay)
            and self.weight_decay >= 0
        ):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (_is_number(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not (_is_number(self.coupling_weight) and self.coupling_weight >= 0):
            raise ValueError(f"coupling_weight must be >= 0, got {self.coupling_weight!r}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.coupling == "distill" and not self.teacher_logits:
            raise ValueError(
                "coupling='distill' needs teacher_logits (an .npy of the teacher's "
                "logits on the training split)"
            )
        if self.model_weights is not None:
            weights = dict(self.model_weights)
            extra = sorted(set(weights) - set(self.models))
            if extra and weights != PAPER_WEIGHTS:  # the default names all three paper models
                raise ValueError(
                    f"model_weights names {extra}, which are not among the "
                    f"models {list(self.models)}"
                )
            object.__setattr__(
                self, "model_weights", {m: w for m, w in weights.items() if m in self.models}
            )
        self._check_mesh()
        self._check_cohort_chunk()
        check_processes(self.coordinator, self.num_processes, self.process_id)
        # Fail at construction, not mid-run, on bad optimizer hyperparameters.
        self.optimizer(total_updates=max(1000, self.warmup_steps + 1))

    def _check_model_sources(self) -> None:
        """Checks ``checkpoints``, ``tokenizers`` and ``model_size`` (names and values)."""
        for field in ("checkpoints", "tokenizers"):
            value = getattr(self, field)
            if value is None:
                continue
            value = {str(k): str(v) for k, v in dict(value).items()}
            extra = sorted(set(value) - set(self.models))
            if extra:
                raise ValueError(
                    f"{field} names {extra}, which are not among the models {list(self.models)}"
                )
            object.__setattr__(self, field, value or None)
        if self.model_size is not None:
            sizes = dict(self.model_size)
            bad = sorted(set(sizes) - set(MODEL_SIZE_FIELDS))
            if bad:
                raise ValueError(
                    f"model_size: unknown size(s) {bad}; valid: {list(MODEL_SIZE_FIELDS)}"
                )
            for key, value in sizes.items():
                _check_int(f"model_size {key}", value, 1)
            object.__setattr__(self, "model_size", sizes or None)

    def _check_members(self) -> None:
        """Checks ``members`` (names of ``models``, sizes >= 1, no coupling)."""
        if self.members is None:
            return
        members = {str(k): v for k, v in dict(self.members).items()}
        extra = sorted(set(members) - set(self.models))
        if extra:
            raise ValueError(
                f"members names {extra}, which are not among the models {list(self.models)}"
            )
        for name, k in members.items():
            _check_int(f"members of {name}", k, 1)
        unsupported = [
            what
            for what, on in (
                (f"coupling {self.coupling!r}", self.coupling != "none"),
                ("gradient_cosines", self.gradient_cosines),
            )
            if on
        ]
        if members and unsupported:
            raise ValueError(
                f"members: cohorts ({', '.join(f'{m}={k}' for m, k in members.items())}) "
                f"do not support {' or '.join(unsupported)}; train the cohorts without it, "
                "or the models without members"
            )
        object.__setattr__(self, "members", members or None)

    def _check_mesh(self) -> None:
        """Checks ``mesh`` against the batch size and the cohorts (not the devices)."""
        if self.mesh is None:
            return
        from mmojax.train._mesh import DATA_AXIS, MODEL_AXIS, parse_mesh

        if not isinstance(self.mesh, str):
            raise ValueError(f"mesh must be a string like 'model=2,data=2', got {self.mesh!r}")
        try:
            shape = parse_mesh(self.mesh)
        except ValueError as err:
            raise ValueError(str(err)) from None  # starts with "mesh:"
        m, d = shape[MODEL_AXIS], shape[DATA_AXIS]
        text = f"model={m},data={d}"
        if self.batch_size % d:
            raise ValueError(
                f"mesh {text} splits every batch over {d} data shards, so batch_size must be "
                f"a multiple of {d}; it is {self.batch_size} (--batch-size)"
            )
        if m > 1:
            members = self.members or {}
            if not members:
                raise ValueError(
                    f"mesh {text}: the model axis spreads the members of cohorts over {m} "
                    f"device groups, and this run has no cohort; give a model {m} members or "
                    f"a multiple of {m} (--members NAME={m}), or use model=1"
                )
            uneven = {n: k for n, k in members.items() if k % m}
            if uneven:
                raise ValueError(
                    f"mesh {text}: the model axis of size {m} must divide every cohort's "
                    f"members, and {', '.join(f'{n} has {k}' for n, k in uneven.items())} "
                    f"(--members)"
                )
        object.__setattr__(self, "mesh", text)

    def _check_cohort_chunk(self) -> None:
        """Checks ``cohort_chunk`` against the cohorts and the mesh."""
        if self.cohort_chunk is None:
            return
        _check_int("cohort_chunk", self.cohort_chunk, 1)
        if not self.members:
            raise ValueError(
                f"cohort_chunk={self.cohort_chunk} splits the members of cohorts into chunks, "
                "and this run has no cohort (--members NAME=K)"
            )
        shape = self.mesh_shape()
        if shape is not None and shape["model"] > 1:
            raise ValueError(
                f"cohort_chunk={self.cohort_chunk} loops over each cohort's members, which "
                f"mesh {self.mesh} spreads over {shape['model']} device groups already; "
                "use one or the other"
            )

    def mesh_shape(self) -> dict[str, int] | None:
        """``{"model": m, "data": d}`` of ``mesh``, or ``None`` without a mesh."""
        if self.mesh is None:
            return None
        from mmojax.train._mesh import parse_mesh

        return parse_mesh(self.mesh)

    def model_names(self) -> list[str]:
        """Every model the run trains, in order: a model of ``models``, or each member
        of a cohort by its member name (``bert/0`` ... ``bert/{k-1}``)."""
        from mmojax.optim._cohort import member_name

        members = self.members or {}
        out = []
        for name in self.models:
            if name in members:
                out.extend(member_name(name, i) for i in range(members[name]))
            else:
                out.append(name)
        return out

    def tokenizer_sources(self) -> dict[str, str]:
        """``{model: tokenizer path}`` of the models that do not use the run's own tokenizer."""
        out = dict(self.checkpoints or {})
        out.update(self.tokenizers or {})
        return out

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted({_RENAMED.get(k, k) for k in values} - fields)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        values = {_RENAMED.get(k, k): v for k, v in values.items()}
        if "models" in values and not isinstance(values["models"], str):
            values["models"] = tuple(values["models"])
        return cls(**values)

    def warmup_for(self, total_updates: int) -> int:
        """Warmup in updates: ``warmup_ratio * total`` when set, else ``warmup_steps``."""
        if self.warmup_ratio is not None:
            return int(round(self.warmup_ratio * total_updates))
        return self.warmup_steps

    def changed_fields(self, other: TrainConfig) -> list[str]:
        """The fields whose values differ between ``self`` and ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return [f.name for f in dataclasses.fields(self) if a[f.name] != b[f.name]]

    def evaluation_period(self, total_updates: int) -> int:
        """Updates between evaluations (0: epoch ends only), resolving ``eval_every=None``."""
        if self.eval_every is not None:
            return self.eval_every
        return max(1, math.ceil(total_updates / EVALS_PER_RUN))

    def optimizer(self, total_updates: int) -> optax.GradientTransformationExtraArgs:
        """The optimizer of this run's mode, with the schedule over ``total_updates``."""
        import mmojax  # jax: imported when an optimizer is built

        warmup = self.warmup_for(total_updates)
        share = {
            "alpha": self.alpha,
            "beta": self.beta,
            "adaptive": True,
            "model_weights": self.model_weights,
        }
        if self.mode == "independent":  # the mmo-<grouping> modes are mmo
            share = {"alpha": 0.0, "beta": 0.0, "adaptive": False, "model_weights": None}
        elif self.mode == "joint-no-sharing":
            share.update(alpha=0.0, beta=0.0)
        elif self.mode == "no-sharing":
            share.update(alpha=0.0)
        elif self.mode == "no-sync":
            share.update(beta=0.0)
        elif self.mode == "no-adaptive-lr":
            share.update(adaptive=False)
        decay = self.cosine_decay and total_updates > warmup
        return mmojax.multi_model_optimizer(
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            sync_every=self.sync_every,
            warmup_steps=warmup,
            total_steps=total_updates if decay else None,
            clip_norm=self.clip_norm,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            reduction=self.reduction,
            grouping=self.grouping,
            convergence_window=self.convergence_window,
            convergence_update_every=self.convergence_update_every,
            **share,
        )


def check_processes(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Checks the multi-process fields: all three or none, ``HOST:PORT``, an id in range.

    Raises:
      ValueError: starting with the name of the field at fault.
    """
    given = {
        "coordinator": coordinator,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == len(given):
        return
    if missing:
        raise ValueError(
            "a multi-process run needs coordinator, num_processes and process_id together "
            f"(--coordinator HOST:PORT --num-processes N --process-id I); missing "
            f"{', '.join(missing)}"
        )
    host, sep, port = str(coordinator).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"coordinator must be HOST:PORT (process 0's address), got {coordinator!r}"
        )
    _check_int("num_processes", num_processes, 1)
    _check_int("process_id", process_id, 0)
    if process_id >= num_processes:
        raise ValueError(
            f"process_id must be in 0..{num_processes - 1} for {num_processes} processes, "
            f"got {process_id}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
