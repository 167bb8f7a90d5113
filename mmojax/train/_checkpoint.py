"""Checkpoints with orbax: the training state plus JSON metadata, keep last N."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored."""


class Checkpointer:
    """Saves and restores ``(state, meta)`` under ``directory``.

    The state pytree is stored as a flat ``{index: array}`` dict and restored
    into the structure of a template state, so any pytree (NamedTuples
    included) round-trips; a template whose leaves do not match (another
    config) is reported, not silently reshaped.
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        leaves = jax.device_get(jax.tree.leaves(state))
        items = {str(i): np.asarray(x) for i, x in enumerate(leaves)}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(dict(meta))), force=True)
        self.manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any], int]:
        """Restores the latest usable checkpoint (or ``step``) into ``template``'s structure.

        A latest checkpoint that fails to load (corrupt, incomplete, wrong
        shapes) is reported with a warning and the previous one is tried.

        Raises:
          CheckpointError: if there is no checkpoint or none can be restored.
        """
        candidates = [step] if step is not None else self.steps()[::-1]
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        leaves, treedef = jax.tree.flatten(template)
        abstract = {str(i): np.zeros(np.shape(x), np.asarray(x).dtype)
                    for i, x in enumerate(jax.device_get(leaves))}
        errors = []
        for s in candidates:
            try:
                out = self.manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                items = out["state"]
                if set(items) != set(abstract):
                    raise ValueError(f"{len(items)} arrays, expected {len(abstract)}")
                restored = []
                for i, ref in enumerate(leaves):
                    value = np.asarray(items[str(i)])
                    if value.shape != np.shape(ref) or value.dtype != np.asarray(ref).dtype:
                        raise ValueError(
                            f"array {i} has shape {value.shape} {value.dtype}, expected "
                            f"{np.shape(ref)} {np.asarray(ref).dtype} (different config?)")
                    restored.append(value)
                return jax.tree.unflatten(treedef, restored), dict(out["meta"]), s
            except Exception as err:  # noqa: BLE001 - any failure means "try the previous one"
                log.warning("checkpoint %d in %s is not usable (%s: %s); trying the previous one",
                            s, self.directory, type(err).__name__, err)
                errors.append(f"step {s}: {type(err).__name__}: {err}")
        raise CheckpointError(f"no usable checkpoint in {self.directory}: " + "; ".join(errors))

    def close(self) -> None:
        self.manager.close()
