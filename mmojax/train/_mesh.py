"""A device mesh for joint training: a ``model`` axis and a ``data`` axis.

Layout (``jax.sharding``, nothing home-made):

=====================================  =====================================
array                                  ``PartitionSpec`` on the mesh
=====================================  =====================================
a :class:`mmojax.Cohort` leaf          ``P("model")``: member ``i``'s slice
(params, and every optimizer-state     lives on the devices of model-axis
leaf mirroring it: Adam moments, ...)  index ``i * m // k``, replicated over
                                       ``data``
a plain model's leaf, pools, counters  ``P()``: replicated
a batch leaf                           ``P("data")``: the batch split on its
                                       leading (example) axis
=====================================  =====================================

So each cohort member's parameters and optimizer state stay on its own
devices, and XLA's SPMD partitioner turns the optimizer's cross-model
reductions (the pooled gradient and the sync average of a shared group: a
weighted sum over the member axis) into a partial sum per device plus one
all-reduce over ``model`` of a *single member's* shape; nothing gathers a
whole model (``tests/test_mesh.py`` checks the compiled program for
all-gathers). The data axis averages each model's gradient over its batch
shards the same way (the loss is a mean over the global batch). Models that
are not cohorts are replicated over the model axis: the model axis spreads
the members of cohorts, the data axis spreads every model's batch.

In a multi-process run (:func:`initialize_distributed`, one process per host)
the mesh spans every process's devices; every process builds the same host
state and reads the same global batch, and :func:`put_global` hands each
process only its own shards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mmojax.optim import Cohort

MODEL_AXIS = "model"
DATA_AXIS = "data"
AXES = (MODEL_AXIS, DATA_AXIS)


def parse_mesh(text: str) -> dict[str, int]:
    """``"model=4,data=2"`` -> ``{"model": 4, "data": 2}`` (an absent axis is 1).

    Raises:
      ValueError: naming the part that is not ``AXIS=SIZE`` with a known axis
        and a positive size, or an axis given twice.

    Examples:
      >>> parse_mesh("data=2")
      {'model': 1, 'data': 2}
    """
    sizes: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\w+)\s*=\s*(\d+)", part)
        if not match or match.group(1) not in AXES or int(match.group(2)) < 1:
            raise ValueError(
                f"mesh: {part!r} is not AXIS=SIZE with AXIS in {AXES} and SIZE >= 1 "
                f"(e.g. 'model=4,data=2'), in {text!r}"
            )
        if match.group(1) in sizes:
            raise ValueError(f"mesh: axis {match.group(1)!r} given twice in {text!r}")
        sizes[match.group(1)] = int(match.group(2))
    return {axis: sizes.get(axis, 1) for axis in AXES}


def make_mesh(
    shape: Mapping[str, int] | str | None = None, *, devices: Sequence[Any] | None = None
) -> Mesh:
    """A ``(model, data)`` mesh over ``devices`` (default: every device of every process).

    Args:
      shape: ``{"model": m, "data": d}`` or ``"model=m,data=d"``; default
        ``data`` = the number of devices, ``model`` = 1.
      devices: the devices to use; the mesh takes the first ``m * d``.

    Raises:
      ValueError: if the mesh needs more devices than there are.
    """
    devices = list(jax.devices() if devices is None else devices)
    if shape is None:
        shape = {MODEL_AXIS: 1, DATA_AXIS: len(devices)}
    elif isinstance(shape, str):
        shape = parse_mesh(shape)
    unknown = set(shape) - set(AXES)
    if unknown:
        raise ValueError(f"mesh: unknown axes {sorted(unknown)}; the axes are {AXES}")
    m, d = int(shape.get(MODEL_AXIS, 1)), int(shape.get(DATA_AXIS, 1))
    if m < 1 or d < 1:
        raise ValueError(f"mesh: axis sizes must be >= 1, got model={m}, data={d}")
    if m * d > len(devices):
        raise ValueError(
            f"mesh model={m},data={d} needs {m * d} devices, there are {len(devices)} "
            f"({jax.process_count()} process(es)); on a CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N host devices"
        )
    grid = np.asarray(devices[: m * d], dtype=object).reshape(m, d)
    return Mesh(grid, AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(tree: Any, mesh: Mesh) -> Any:
    """The sharding of every leaf of ``tree`` (a train state, params or an optimizer state).

    Leaves under a :class:`mmojax.Cohort` node are split on their leading
    member axis over ``model``; every other leaf is replicated.

    Raises:
      ValueError: if a cohort's size is not a multiple of the model axis.
    """
    m = mesh.shape[MODEL_AXIS]
    on_model = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))

    def of(path, node):
        if isinstance(node, Cohort):
            k = node.size
            if k % m:
                raise ValueError(
                    f"cohort at {jax.tree_util.keystr(path)} has {k} members, "
                    f"which the model axis of size {m} does not divide"
                )
            return jax.tree.map(lambda _: on_model, node)
        return _replicated(mesh)

    return jax.tree_util.tree_map_with_path(of, tree, is_leaf=lambda x: isinstance(x, Cohort))


def batch_shardings(batch: Any, mesh: Mesh) -> Any:
    """``P("data")`` for every batch leaf (split on its leading, example axis).

    Raises:
      ValueError: if a leaf's leading axis is not a multiple of the data axis.
    """
    d = mesh.shape[DATA_AXIS]
    on_data = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def of(path, leaf):
        shape = np.shape(leaf)
        if not shape or shape[0] % d:
            raise ValueError(
                f"batch leaf {jax.tree_util.keystr(path)} of shape {shape} cannot be split "
                f"over the data axis of size {d}: the batch size must be a multiple of it"
            )
        return on_data

    return jax.tree_util.tree_map_with_path(of, batch)


def put_global(tree: Any, shardings: Any) -> Any:
    """Places host values as global arrays with ``shardings`` (a matching tree).

    Every process passes the same *global* values; each builds only the
    shards its own devices hold, so this is the one placement function for
    one process and for several.
    """

    def put(value, sharding):
        host = np.asarray(jax.device_get(value) if isinstance(value, jax.Array) else value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, shardings)


def shard_state(tree: Any, mesh: Mesh) -> Any:
    """``tree`` (a train state, params, ...) placed on ``mesh`` by :func:`state_shardings`."""
    return put_global(tree, state_shardings(tree, mesh))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """A global batch placed on ``mesh``, split over the data axis."""
    return put_global(batch, batch_shardings(batch, mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    """The fully replicated sharding on ``mesh`` (metrics, evaluation outputs)."""
    return _replicated(mesh)


def initialize_distributed(
    coordinator_address: str, num_processes: int, process_id: int, *, cpu: bool = False
) -> None:
    """Joins a multi-process run: ``jax.distributed.initialize`` (before any JAX work).

    Args:
      coordinator_address: ``host:port`` of process 0 (every process passes the same).
      num_processes: the number of processes (hosts).
      process_id: this process's index, ``0 .. num_processes - 1``.
      cpu: use the CPU backend's gloo collectives (testing several processes on one machine).
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in 0..{num_processes - 1}")
    if cpu:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
