"""The models of a run: from a checkpoint, or from a preset, each sized for its tokenizer."""

from __future__ import annotations

import logging
import os

from mmojax import models as mmodels
from mmojax.train._config import TrainConfig
from mmojax.train._tasks import TaskData

log = logging.getLogger(__name__)


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
