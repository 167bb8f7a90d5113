"""Checkpoints with orbax: the training state plus JSON metadata, keep last N."""

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

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored."""


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
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Saves ``state`` (host copies of its arrays) and ``meta`` as checkpoint ``step``.

        A step that is already saved (the same state, e.g. a periodic
        checkpoint on the last step) is not saved again.
        """
        if step in self.steps():
            return
        leaves = jax.device_get(jax.tree.leaves(state))
        items = {str(i): np.asarray(x) for i, x in enumerate(leaves)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(dict(meta))
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any], int]:
        """Restores the latest usable checkpoint (or ``step``) into ``template``'s structure.

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
        abstract = {
            str(i): np.zeros(np.shape(x), np.asarray(x).dtype)
            for i, x in enumerate(jax.device_get(leaves))
        }
        errors: list[tuple[int, str]] = []
        for s in candidates:
            try:
                with _quiet_restore():
                    out = self.manager.restore(
                        s,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                        ),
                    )
                items = out["state"]
                if set(items) != set(abstract):
                    raise ValueError(f"{len(items)} arrays, expected {len(abstract)}")
                restored = []
                for i, ref in enumerate(leaves):
                    value = np.asarray(items[str(i)])
                    if value.shape != np.shape(ref) or value.dtype != np.asarray(ref).dtype:
                        raise ValueError(
                            f"array {i} has shape {value.shape} {value.dtype}, expected "
                            f"{np.shape(ref)} {np.asarray(ref).dtype} (different config?)"
                        )
                    restored.append(value)
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
        """Moves the unusable checkpoints ``bad`` out of the manager's directory."""
        self.manager.close()
        os.makedirs(self.unusable_directory, exist_ok=True)
        moved = []
        for s in bad:
            target = os.path.join(self.unusable_directory, str(s))
            n = 1
            while os.path.exists(target):
                target = os.path.join(self.unusable_directory, f"{s}.{n}")
                n += 1
            shutil.move(os.path.join(self.directory, str(s)), target)
            moved.append(target)
        self.manager = self._open()
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
