"""The models of a run: from a checkpoint, or from a preset, each sized for its tokenizer."""

from __future__ import annotations

import logging
import os

from mmojax import models as mmodels
from mmojax.train._config import TrainConfig
from mmojax.train._tasks import TaskData

log = logging.getLogger(__name__)


def checkpoint_positions(config: TrainConfig) -> int | None:
    """The fewest input positions among the run's checkpoints (``None`` without any).

    Reads only each checkpoint's ``config.json``; a missing directory or file is
    reported here, before the run loads data.
    """
    from mmojax.models._hf import model_config_from_hf

    limits = []
    for name, path in (config.checkpoints or {}).items():
        fields = mmodels.read_config(os.path.expanduser(path))
        arch = fields.get("model_type", name)
        if arch in mmodels.ARCHS:  # another type is refused, with its name, when loading
            limits.append(model_config_from_hf(arch, fields).max_length)
    return min(limits) if limits else None


def build_run_models(config: TrainConfig, task: TaskData) -> dict[str, mmodels.Model]:
    """``{model: Model}`` of ``config.models``, in order.

    A model named in ``config.checkpoints`` loads that checkpoint's backbone
    (its head is new, see :func:`mmojax.models.load_pretrained`); the others are
    built from ``config.preset`` with ``config.model_size``, sized for their
    tokenizer's vocabulary and padding id. Every model's head fits the task.

    Raises:
      ValueError: a checkpoint of another architecture than the model's name,
        or one whose position table is shorter than the task's longest input.
      FileNotFoundError: a checkpoint directory or its files are missing.
    """
    out = {}
    for name in config.models:
        seed = mmodels.derive_seed(config.seed, name)
        path = (config.checkpoints or {}).get(name)
        if path is not None:
            model, report = mmodels.load_pretrained(
                os.path.expanduser(path),
                arch=name,
                task=task.model_task,
                num_labels=task.num_labels,
                name=name,
                seed=seed,
                dropout=config.dropout,
            )
            del report  # load_pretrained logs which weights were new and unused
            if model.config.max_length < task.max_length:
                raise ValueError(
                    f"checkpoints: {name}={path} has {model.config.max_length} positions, "
                    f"but the {task.name} inputs are up to {task.max_length} tokens long"
                )
        else:
            model_config = mmodels.preset(
                config.preset,
                name,
                vocab_size=task.vocab_size(name),
                max_length=task.max_length,
                pad_token_id=task.pad_id(name),
                dropout=config.dropout,
                **(config.model_size or {}),
            )
            model = mmodels.build_model(
                model_config, task.model_task, task.num_labels, seed, name=name
            )
        out[name] = model
    return out
