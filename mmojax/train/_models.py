"""The models of a run: from a checkpoint, or from a preset, each sized for its tokenizer."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from mmojax import models as mmodels
from mmojax.optim._cohort import Cohort, member_name, stack_models, unstack_models
from mmojax.train._config import TrainConfig
from mmojax.train._tasks import TaskData

log = logging.getLogger(__name__)


# A hub model name: "name" or "owner/name" (a path that exists is always a path).
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_HUB_FILES = ["*.json", "*.txt", "*.safetensors", "flax_model.msgpack", "pytorch_model.bin"]


def resolve_checkpoint(path: str) -> str:
    """The local directory of a checkpoint given as a path or, where a hub is reachable, a name.

    An existing path (or one that does not look like a hub name) is returned as
    it is: loading reports what is missing. A hub name (``owner/name``) is
    fetched into the Hugging Face cache with ``huggingface_hub.snapshot_download``
    (configuration, tokenizer and weight files only); offline, or when the hub
    does not have it, the error says so and how to pass a local directory.
    """
    local = os.path.expanduser(path)
    if os.path.exists(local) or not _HUB_NAME.match(path):
        return local
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, allow_patterns=_HUB_FILES)
    except Exception as err:  # noqa: BLE001 - any failure means: no such local or hub model
        raise FileNotFoundError(
            f"{path!r} is not a local directory, and the Hugging Face hub could not provide it "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
            f"mmojax needs a local checkpoint directory: download it where a hub is reachable "
            f"(`huggingface-cli download {path} --local-dir DIR`) and pass DIR"
        ) from None


def resolve_checkpoints(config: TrainConfig) -> dict[str, str]:
    """``{model: local directory}`` of the run's checkpoints (see :func:`resolve_checkpoint`)."""
    return {m: resolve_checkpoint(p) for m, p in (config.checkpoints or {}).items()}


def checkpoint_positions(checkpoints: Mapping[str, str]) -> int | None:
    """The fewest input positions among local checkpoints (``None`` without any).

    Reads only each checkpoint's ``config.json``; a missing directory or file is
    reported here, before the run loads data.
    """
    from mmojax.models._hf import model_config_from_hf

    limits = []
    for name, path in checkpoints.items():
        fields = mmodels.read_config(path)
        arch = fields.get("model_type", name)
        if arch in mmodels.ARCHS:  # another type is refused, with its name, when loading
            limits.append(model_config_from_hf(arch, fields).max_length)
    return min(limits) if limits else None


def build_run_models(
    config: TrainConfig, task: TaskData, checkpoints: Mapping[str, str] | None = None
) -> dict[str, mmodels.Model]:
    """``{name: Model}`` of every model the run trains (:meth:`TrainConfig.model_names`), in order.

    A model named in ``checkpoints`` (default: ``config.checkpoints``, resolved)
    loads that checkpoint's backbone
    (its head is new, see :func:`mmojax.models.load_pretrained`); the others are
    built from ``config.preset`` with ``config.model_size``, sized for their
    tokenizer's vocabulary and padding id. Every model's head fits the task.

    A cohort (``config.members``) gives one entry per member, ``bert/0`` ...
    ``bert/{k-1}``, each the model of that architecture initialised (or, from
    a checkpoint, its new head) with the seed :func:`mmojax.models.derive_seed`
    gives its member name; :func:`run_params` stacks them.

    Raises:
      ValueError: a checkpoint of another architecture than the model's name,
        or one whose position table is shorter than the task's longest input.
      FileNotFoundError: a checkpoint directory or its files are missing.
    """
    if checkpoints is None:
        checkpoints = resolve_checkpoints(config)
    out = {}
    for member in config.model_names():
        name = model_of(member)
        seed = mmodels.derive_seed(config.seed, member)
        path = checkpoints.get(name)
        if path is not None:
            model, report = mmodels.load_pretrained(
                path,
                arch=name,
                task=task.model_task,
                num_labels=task.num_labels,
                name=member,
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
                model_config, task.model_task, task.num_labels, seed, name=member
            )
        out[member] = model
    return out


def model_of(name: str) -> str:
    """The model of ``config.models`` a run's model belongs to: ``bert`` for ``bert/2``."""
    return name.partition("/")[0]


def run_params(config: TrainConfig, built: Mapping[str, mmodels.Model]) -> dict[str, Any]:
    """``{model: params}`` of ``config.models`` as the train state holds them.

    A cohort's members (``built["bert/0"]`` ...) are stacked into one
    :class:`mmojax.Cohort`; a plain model's parameters are taken as they are.
    """
    members = config.members or {}
    out = {}
    for name in config.models:
        if name in members:
            out[name] = stack_models(
                [built[member_name(name, i)].params for i in range(members[name])]
            )
        else:
            out[name] = built[name].params
    return out


def member_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: params}`` of every model of a train state's ``params``, a cohort's
    members unstacked under their member names (the inverse of :func:`run_params`)."""
    out = {}
    for name, value in params.items():
        if isinstance(value, Cohort):
            for i, member in enumerate(unstack_models(value)):
                out[member_name(name, i)] = member
        else:
            out[name] = value
    return out
