"""Typed, validated configuration of a training run, and the optimizer it implies."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import optax

import mmojax

MODES = ("mmo", "independent", "joint-no-sharing", "no-sharing", "no-sync", "no-adaptive-lr")
COUPLINGS = ("none", "mutual", "distill")
PAPER_WEIGHTS = {"bert": 1.0, "gpt2": 0.8, "roberta": 1.2}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the paper's section 4.4.

    Counts: ``warmup_steps``, ``sync_every``, ``eval_every`` and the
    convergence window are in optimizer updates (one update per
    ``gradient_accumulation_steps`` micro-batches); ``log_every``,
    ``checkpoint_every`` and ``max_steps`` are in micro-batches.

    Modes: ``mmo`` (everything on), ``independent`` (each model plain AdamW
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
    grouping: str = "role_depth"  # the paper's: "type_shape"
    model_weights: Mapping[str, float] | None = dataclasses.field(
        default_factory=lambda: dict(PAPER_WEIGHTS))
    clip_norm: float | None = 1.0
    conv_window: int = 20
    conv_update_every: int = 10
    vocab_size: int = 8000
    max_train: int | None = None
    max_val: int | None = None
    eval_every: int = 0
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

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.models, str):
            object.__setattr__(self, "models", tuple(m for m in self.models.split(",") if m))
        if not self.models:
            raise ValueError("models must name at least one model")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "vocab_size",
                     "eval_batch_size", "log_every", "keep_checkpoints", "max_nonfinite"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "sync_every",
                     "conv_update_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.coupling == "distill" and not self.teacher_logits:
            raise ValueError("coupling='distill' needs teacher_logits (an .npy of the teacher's "
                             "logits on the training split)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.model_weights is not None:
            object.__setattr__(self, "model_weights", {
                m: w for m, w in dict(self.model_weights).items() if m in self.models})
        # Fail at construction, not mid-run, on bad optimizer hyperparameters.
        self.optimizer(total_updates=max(1000, self.warmup_steps + 1))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        values = dict(values)
        if "models" in values and not isinstance(values["models"], str):
            values["models"] = tuple(values["models"])
        return cls(**values)

    def warmup_for(self, total_updates: int) -> int:
        """Warmup in updates: ``warmup_ratio * total`` when set, else ``warmup_steps``."""
        if self.warmup_ratio is not None:
            return int(round(self.warmup_ratio * total_updates))
        return self.warmup_steps

    def optimizer(self, total_updates: int) -> optax.GradientTransformationExtraArgs:
        """The optimizer of this run's mode, with the schedule over ``total_updates``."""
        warmup = self.warmup_for(total_updates)
        share = {"alpha": self.alpha, "beta": self.beta, "adaptive": True,
                 "model_weights": self.model_weights}
        if self.mode == "independent":
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
            convergence_window=max(2, self.conv_window),
            convergence_update_every=max(1, self.conv_update_every),
            **share,
        )
