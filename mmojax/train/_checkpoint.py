"""Checkpoints with orbax: the training state plus JSON metadata, keep last N.

The state's ``jax.Array`` leaves go to orbax as they are, sharded or not, and
are restored with the sharding of the template's leaf, so a state saved on
one mesh restores onto another (orbax reads each device's part of an array).
Host (numpy) leaves are saved and restored as numpy arrays.

In a multi-process run every process calls :meth:`Checkpointer.save` and
:meth:`Checkpointer.restore` with the same arguments (orbax coordinates the
writes; the directory must be one every process sees, e.g. a shared file
system or a bucket); only process 0 moves unusable checkpoints aside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored."""


# What a run's checkpoint metadata says of the layout of its GPT-2 Conv1D kernels: mmojax
# holds them (in, out); runs saved before it did (no entry) held Hugging Face's (out, in).
LAYOUT_KEY = "gpt2_conv1d_kernels"
LAYOUT = "in_out"


# Loggers that report every failed read of a corrupt checkpoint (orbax logs through
# absl; its asyncio workers log each failed task): one warning of ours says it instead.
_NOISY_LOGGERS = ("absl", "orbax", "asyncio", "tensorstore")


@contextlib.contextmanager
def _quiet_restore() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class Checkpointer:
    """Saves and restores ``(state, meta)`` under ``directory``.

    The state pytree is stored as a flat ``{index: array}`` dict and restored
    into the structure of a template state, so any pytree (NamedTuples
    included) round-trips; a template whose leaves do not match (another
    config) is reported, not silently reshaped. Checkpoints that cannot be
    restored are moved to ``unusable_directory`` once an older one has been
    restored, so the run can save those steps again.
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep = keep
        self.manager = self._open()

    @property
    def unusable_directory(self) -> str:
        return self.directory + "-unusable"

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=True, enable_async_checkpointing=False
            ),
            # Named up front, so a new manager can read a checkpoint's array metadata.
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Saves ``state`` (its arrays as they are placed) and ``meta`` as checkpoint ``step``.

        A step that is already saved (the same state, e.g. a periodic
        checkpoint on the last step) is not saved again. In a multi-process
        run every process calls this with its view of the same global state.
        """
        if step in self.steps():
            return
        items = {str(i): _saveable(x) for i, x in enumerate(jax.tree.leaves(state))}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(dict(meta))
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def meta(self, step: int) -> dict[str, Any] | None:
        """Checkpoint ``step``'s metadata alone (``None``: it cannot be read)."""
        try:
            with _quiet_restore():
                out = self.manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is restore()'s to report
            return None
        return dict(out["meta"])

    def check_layout(self, holds_gpt2: bool) -> None:
        """Refuses checkpoints that hold GPT-2's Conv1D kernels ``(out, in)``.

        Runs saved before mmojax held those kernels ``(in, out)`` cannot be
        restored into today's state (a square kernel would come back transposed
        without an error), so they are refused, each left where it is.

        Args:
          holds_gpt2: whether the run's models include a GPT-2 (else nothing to check).

        Raises:
          CheckpointError: naming the first such checkpoint.
        """
        if not holds_gpt2:
            return
        for step in self.steps()[::-1]:
            meta = self.meta(step)
            if meta is not None and meta.get(LAYOUT_KEY) != LAYOUT:
                raise CheckpointError(
                    f"checkpoint {step} in {self.directory} was saved by an earlier mmojax, "
                    "which held GPT-2's Conv1D kernels (out, in); this one holds them (in, out) "
                    "and cannot restore it. Resume it with the mmojax that wrote it, or start "
                    "the run again (--overwrite); nothing was changed"
                )

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any], int]:
        """Restores the latest usable checkpoint (or ``step``) into ``template``'s structure.

        Each ``jax.Array`` leaf of ``template`` gives the sharding its value is
        restored with (the values of a checkpoint saved on another mesh, or on
        one device, are resharded); a host leaf is restored as a numpy array.
        A latest checkpoint that fails to load (corrupt, incomplete, wrong
        shapes) is skipped and the previous one tried; when an older one is
        restored, the unusable newer ones are moved to
        :attr:`unusable_directory` and one warning says so.

        Raises:
          CheckpointError: if there is no checkpoint or none can be restored.
        """
        candidates = [step] if step is not None else self.steps()[::-1]
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        leaves, treedef = jax.tree.flatten(template)
        abstract = {str(i): _abstract(x) for i, x in enumerate(leaves)}
        errors: list[tuple[int, str]] = []
        for s in candidates:
            try:
                with _quiet_restore():
                    _check_metadata(self.manager.item_metadata(s)["state"], abstract)
                    out = self.manager.restore(
                        s,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                        ),
                    )
                items = out["state"]
                restored = [_restored(items[str(i)], abstract[str(i)]) for i in range(len(leaves))]
            except Exception as err:  # noqa: BLE001 - any failure means "try the previous one"
                errors.append((s, f"{type(err).__name__}: {_first_line(err)}"))
                continue
            if errors:
                self._move_aside([e[0] for e in errors], s, errors[0][1])
            return jax.tree.unflatten(treedef, restored), dict(out["meta"]), s
        raise CheckpointError(
            f"no usable checkpoint in {self.directory}: "
            + "; ".join(f"step {s}: {e}" for s, e in errors)
        )

    def _move_aside(self, bad: list[int], restored: int, first_error: str) -> None:
        """Moves the unusable checkpoints ``bad`` out of the manager's directory.

        Process 0 moves them (and warns) once every process has stopped
        reading them; every process waits for it before reopening the
        manager, so all see the same steps.
        """
        self.manager.close()
        _barrier(f"mmojax checkpoint: done reading {bad}")
        moved = _move_steps(self.directory, self.unusable_directory, bad)
        _barrier(f"mmojax checkpoint: moved {bad} aside")
        self.manager = self._open()
        if moved:
            log.warning(
                "checkpoint(s) %s in %s could not be restored (%s); resumed from checkpoint "
                "%d and moved the unusable one(s) to %s",
                bad,
                self.directory,
                first_error,
                restored,
                ", ".join(moved),
            )

    def close(self) -> None:
        self.manager.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


def _saveable(leaf: Any) -> Any:
    """A state leaf as orbax saves it: a ``jax.Array`` as it is, anything else as numpy."""
    return leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)


def _abstract(leaf: Any) -> Any:
    """What orbax restores a leaf into: a ``jax.Array``'s shape, dtype and sharding,
    or a numpy array for a host leaf."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    host = np.asarray(leaf)
    return np.zeros(host.shape, host.dtype)


def _describe(shape: tuple[int, ...], dtype: Any) -> str:
    return f"{tuple(shape)} {np.dtype(dtype)}"


def _check_metadata(saved: Any, abstract: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` unless the saved arrays match ``abstract`` in number,
    shape and dtype (orbax would cast a dtype, and a shape is a config's)."""
    if saved is None:
        raise ValueError("no array metadata (an incomplete checkpoint?)")
    if set(saved.keys()) != set(abstract):
        raise ValueError(f"{len(saved.keys())} arrays, expected {len(abstract)}")
    for i in range(len(abstract)):
        have, want = saved[str(i)], abstract[str(i)]
        if tuple(have.shape) != tuple(want.shape) or np.dtype(have.dtype) != np.dtype(want.dtype):
            raise ValueError(
                f"array {i} has shape {_describe(have.shape, have.dtype)}, expected "
                f"{_describe(want.shape, want.dtype)} (different config?)"
            )


def _restored(value: Any, want: Any) -> Any:
    """A restored leaf, checked against what was asked for (a host leaf as numpy)."""
    if not isinstance(value, jax.Array):
        value = np.asarray(value)
    if value.shape != tuple(want.shape) or np.dtype(value.dtype) != np.dtype(want.dtype):
        raise ValueError(
            f"restored array has shape {_describe(value.shape, value.dtype)}, expected "
            f"{_describe(want.shape, want.dtype)} (different config?)"
        )
    return value


def _barrier(name: str) -> None:
    """Waits for every process (nothing to wait for in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _move_steps(directory: str, unusable: str, bad: list[int]) -> list[str]:
    """Process 0 moves checkpoints ``bad`` from ``directory`` into ``unusable``
    (a name taken gets ``.1``, ``.2``, ...); returns the new paths (none on
    other processes)."""
    if jax.process_index() != 0:
        return []
    os.makedirs(unusable, exist_ok=True)
    moved = []
    for s in bad:
        target = os.path.join(unusable, str(s))
        n = 1
        while os.path.exists(target):
            target = os.path.join(unusable, f"{s}.{n}")
            n += 1
        shutil.move(os.path.join(directory, str(s)), target)
        moved.append(target)
    return moved
