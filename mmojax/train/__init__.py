"""Joint training of several models: train step, loop, checkpoints, configuration.

The names below are imported on first use (PEP 562), so that the command
line can read :class:`TrainConfig`'s defaults for ``--help`` without loading
flax, transformers and orbax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmojax.train._checkpoint import Checkpointer as Checkpointer
    from mmojax.train._checkpoint import CheckpointError as CheckpointError
    from mmojax.train._config import MODES as MODES
    from mmojax.train._config import PAPER_WEIGHTS as PAPER_WEIGHTS
    from mmojax.train._config import TrainConfig as TrainConfig
    from mmojax.train._interrupt import Interrupted as Interrupted
    from mmojax.train._loop import NonFiniteError as NonFiniteError
    from mmojax.train._loop import RunResult as RunResult
    from mmojax.train._loop import train as train
    from mmojax.train._mesh import batch_shardings as batch_shardings
    from mmojax.train._mesh import initialize_distributed as initialize_distributed
    from mmojax.train._mesh import make_mesh as make_mesh
    from mmojax.train._mesh import parse_mesh as parse_mesh
    from mmojax.train._mesh import put_global as put_global
    from mmojax.train._mesh import shard_batch as shard_batch
    from mmojax.train._mesh import shard_state as shard_state
    from mmojax.train._mesh import state_shardings as state_shardings
    from mmojax.train._rundir import RunDirError as RunDirError
    from mmojax.train._step import ModelFns as ModelFns
    from mmojax.train._step import TrainState as TrainState
    from mmojax.train._step import init_train_state as init_train_state
    from mmojax.train._step import make_eval_step as make_eval_step
    from mmojax.train._step import make_train_step as make_train_step
    from mmojax.train._tasks import TASKS as TASKS
    from mmojax.train._tasks import TaskData as TaskData
    from mmojax.train._tasks import prepare_task as prepare_task

_SOURCES = {
    "CheckpointError": "_checkpoint",
    "Checkpointer": "_checkpoint",
    "Interrupted": "_interrupt",
    "MODES": "_config",
    "ModelFns": "_step",
    "NonFiniteError": "_loop",
    "PAPER_WEIGHTS": "_config",
    "RunDirError": "_rundir",
    "RunResult": "_loop",
    "TASKS": "_tasks",
    "TaskData": "_tasks",
    "TrainConfig": "_config",
    "TrainState": "_step",
    "init_train_state": "_step",
    "make_eval_step": "_step",
    "make_train_step": "_step",
    "prepare_task": "_tasks",
    "make_mesh": "_mesh",
    "parse_mesh": "_mesh",
    "state_shardings": "_mesh",
    "batch_shardings": "_mesh",
    "shard_state": "_mesh",
    "shard_batch": "_mesh",
    "put_global": "_mesh",
    "initialize_distributed": "_mesh",
    "train": "_loop",
}

__all__ = tuple(sorted(_SOURCES))


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        value = getattr(importlib.import_module(f"mmojax.train.{_SOURCES[name]}"), name)
    elif name.startswith("_") and not name.startswith("__"):
        try:  # a private submodule, e.g. mmojax.train._loop
            value = importlib.import_module(f"mmojax.train.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"mmojax.train.{name}":
                raise
            raise AttributeError(f"module 'mmojax.train' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'mmojax.train' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
