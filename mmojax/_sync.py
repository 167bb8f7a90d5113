"""Algorithm 2 of the paper: periodic soft parameter synchronisation."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax import _plan, _pool, _tree


class SyncState(NamedTuple):
    """State of :func:`sync_parameters`.

    Attributes:
      count: optimizer updates seen so far (int32).
    """

    count: jax.Array


def sync_parameters(
    beta: float = 0.1,
    every: int = 10,
    model_weights: Mapping[str, float] | None = None,
    labels: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Every ``every`` updates, moves compatible parameters towards their average.

    On updates ``every, 2 * every, ...`` each member :math:`p` of a key shared
    by at least two models moves, *after* the incoming update :math:`u` is
    applied, towards the weighted average of the key's members:

    .. math::
      \tilde p = p + u, \quad
      \bar p_k = \sum_{q \in k} w_{m(q)} \tilde q \Big/ \sum_{q \in k} w_{m(q)}, \quad
      p_{\text{new}} = (1 - \beta)\, \tilde p + \beta\, \bar p_k .

    Like ``optax.lookahead`` the move is expressed as a returned update, never
    a write to ``params``: :math:`p_{\text{new}} - p = u + \beta(\bar p_k - \tilde p)`,
    so ``optax.apply_updates(params, out)`` gives :math:`p_{\text{new}}`. The
    incoming updates must be final (already scaled by the learning rate), so
    this must be the **last** transformation of a chain.

    Args:
      beta: synchronisation coefficient in [0, 1] (the paper: 0.1); 0 disables.
      every: synchronise every this many updates (the paper: 10); 0 disables.
      model_weights: ``{model_name: weight}``, default equal, normalised.
      labels: as in :func:`share_gradients`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
      ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"a": {"w": jnp.array([0.0])}, "b": {"w": jnp.array([4.0])}}
      >>> tx = sync_parameters(beta=0.5, every=1)
      >>> zero = {"a": {"w": jnp.array([0.0])}, "b": {"w": jnp.array([0.0])}}
      >>> updates, _ = tx.update(zero, tx.init(params), params)
      >>> new = optax.apply_updates(params, updates)
      >>> new["a"]["w"].tolist(), new["b"]["w"].tolist()
      ([1.0], [3.0])
    """
    _pool.check_unit_interval("beta", beta)
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 0:
        raise ValueError(f"every must be an integer >= 0, got {every!r}")
    every = int(every)
    _pool.check_weight_values(model_weights)

    def init_fn(params):
        models = _tree.check_multi_model_tree(params)
        _pool.normalized_weights(model_weights, models)
        _plan.sharing_plan(params, labels)
        return SyncState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        count = optax.safe_increment(state.count)
        if beta == 0 or every == 0:
            return updates, SyncState(count)
        if params is None:
            raise ValueError("sync_parameters needs params: call update(updates, state, params)")
        plan = _plan.sharing_plan(params, labels)
        if not plan.shared_groups:
            return updates, SyncState(count)
        weights = _pool.normalized_weights(model_weights, plan.models)

        # Only the per-key averages go through the `cond` (one buffer per key,
        # zeros off-sync); the move itself is an elementwise expression that XLA
        # fuses into `apply_updates`, so off-sync steps cost almost nothing:
        #   u' = u + s (avg_k - (p + u)),  s = beta on sync steps, 0 otherwise.
        flat_u, treedef = jax.tree_util.tree_flatten(updates)
        flat_p = treedef.flatten_up_to(params)
        flat_u = jax.lax.optimization_barrier(flat_u)
        groups = plan.shared_groups

        def averages(_):
            return [
                _pool.group_pool([flat_p[m.index] + flat_u[m.index] for m in g.members],
                                 [weights[m.model] for m in g.members])
                for g in groups
            ]

        def no_averages(_):
            return [jnp.zeros(out.shape, out.dtype) for out in jax.eval_shape(averages, None)]

        is_sync = count % every == 0
        avgs = jax.lax.cond(is_sync, averages, no_averages, None)
        step = jnp.where(is_sync, beta, 0.0).astype(jnp.float32)
        out = list(flat_u)
        for group, avg in zip(groups, avgs):
            for m in group.members:
                u, p = flat_u[m.index], flat_p[m.index]
                moved = p.astype(avg.dtype) + u.astype(avg.dtype)
                out[m.index] = (u.astype(avg.dtype) + step * (avg - moved)).astype(u.dtype)
        updates = jax.tree_util.tree_unflatten(treedef, out)
        return updates, SyncState(count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
