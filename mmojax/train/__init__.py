"""Joint training of several models: train step, loop, checkpoints, configuration."""

from mmojax.train._checkpoint import CheckpointError as CheckpointError
from mmojax.train._checkpoint import Checkpointer as Checkpointer
from mmojax.train._config import MODES as MODES
from mmojax.train._config import PAPER_WEIGHTS as PAPER_WEIGHTS
from mmojax.train._config import TrainConfig as TrainConfig
from mmojax.train._loop import NonFiniteError as NonFiniteError
from mmojax.train._loop import RunResult as RunResult
from mmojax.train._loop import train as train
from mmojax.train._step import ModelFns as ModelFns
from mmojax.train._step import TrainState as TrainState
from mmojax.train._step import init_train_state as init_train_state
from mmojax.train._step import make_eval_step as make_eval_step
from mmojax.train._step import make_train_step as make_train_step
from mmojax.train._tasks import TASKS as TASKS
from mmojax.train._tasks import TaskData as TaskData
from mmojax.train._tasks import prepare_task as prepare_task

__all__ = (
    "MODES",
    "PAPER_WEIGHTS",
    "TASKS",
    "CheckpointError",
    "Checkpointer",
    "ModelFns",
    "NonFiniteError",
    "RunResult",
    "TaskData",
    "TrainConfig",
    "TrainState",
    "init_train_state",
    "make_eval_step",
    "make_train_step",
    "prepare_task",
    "train",
)
