"""Algorithm 2 of the paper: periodic soft parameter synchronisation."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax import _align, _plan, _pool, _views


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
    grouping: str = "type_shape",
    align_rules: Sequence[_align.AlignRule] | None = None,
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
    so ``optax.apply_updates(params, out)`` gives :math:`p_{\text{new}}`.
    Under ``grouping="role"`` / ``"role_depth"`` the members are canonical
    views of leaves (see :func:`sharing_plan`), the average of :math:`p` runs
    over :math:`p` itself and the other models' members, and the move is
    computed on the views and scattered back into the leaves exactly. The
    incoming updates must be final (already scaled by the learning rate), so
    this must be the **last** transformation of a chain.

    Args:
      beta: synchronisation coefficient in [0, 1] (the paper: 0.1); 0 disables.
      every: synchronise every this many updates (the paper: 10); 0 disables.
      model_weights: ``{model_name: weight}``, default equal, normalised.
      labels: as in :func:`share_gradients`.
      grouping: ``"type_shape"`` (default), ``"role"`` or ``"role_depth"``.
      align_rules: as in :func:`share_gradients`.

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
    _plan.check_grouping(grouping)
    align_rules = _align.check_rules(align_rules)

    def init_fn(params):
        _plan.validate_at_init(params, model_weights, labels, grouping, align_rules)
        return SyncState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        count = optax.safe_increment(state.count)
        if beta == 0 or every == 0:
            return updates, SyncState(count)
        if params is None:
            raise ValueError("sync_parameters needs params: call update(updates, state, params)")
        plan = _plan.make_plan(params, labels, grouping, align_rules, warn=False)
        if not plan.shared_groups:
            return updates, SyncState(count)
        weights = _pool.normalized_weights(model_weights, plan.models)

        # Only the pool buffers go through the `cond` (one per group, or one per
        # model with several members under leave-own-model-out pooling; zeros
        # off-sync); the move itself is an elementwise expression on the views
        # that XLA fuses into `apply_updates`, so off-sync steps cost little:
        #   u' = u + s (avg - (p + u)),  s = beta on sync steps, 0 otherwise,
        # and u' = u exactly off-sync, in every view and outside them.
        # (`multi_model_optimizer` avoids even that with one `cond` around its
        # whole update; see `synced_updates`.)
        flat_u, treedef = jax.tree_util.tree_flatten(updates)
        flat_p = treedef.flatten_up_to(params)
        flat_u = jax.lax.optimization_barrier(flat_u)
        is_sync = count % every == 0
        buffers = jax.lax.cond(
            is_sync,
            lambda _: _average_buffers(flat_u, flat_p, plan, weights),
            lambda _: jax.tree.map(
                lambda out: jnp.zeros(out.shape, out.dtype),
                jax.eval_shape(lambda: _average_buffers(flat_u, flat_p, plan, weights))),
            None)
        step = jnp.where(is_sync, beta, 0.0).astype(jnp.float32)
        out = _move(flat_u, flat_p, plan, weights, step, buffers)
        updates = jax.tree_util.tree_unflatten(treedef, out)
        return updates, SyncState(count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _average_buffers(flat_u, flat_p, plan, weights):
    """Each shared group's pool buffers of the moved parameters ``p + u``."""
    out = []
    for g in plan.shared_groups:
        recipe = _pool.pool_recipe(g, weights)
        moved = [m.take(flat_p[m.index]) + m.take(flat_u[m.index]) for m in g.members]
        out.append(_pool.pool_buffers(moved, [weights[m.model] for m in g.members], recipe))
    return out


def _move(flat_u, flat_p, plan, weights, step, buffers):
    """``u + step (avg - (p + u))`` on every shared view, scattered back into the leaves."""
    parts: dict[int, list] = {}
    for g, bufs in zip(plan.shared_groups, buffers):
        recipe = _pool.pool_recipe(g, weights)
        for i, m in enumerate(g.members):
            moved_view = m.take(flat_p[m.index]) + m.take(flat_u[m.index])
            avg = _pool.member_pool(bufs, recipe, i, moved_view, weights[m.model])
            avg = _views.ungather(avg, m.view)  # to the stored orientation
            u = _views.block(flat_u[m.index], m.view)
            p = _views.block(flat_p[m.index], m.view)
            moved = p.astype(avg.dtype) + u.astype(avg.dtype)
            new_u = (u.astype(avg.dtype) + step * (avg - moved)).astype(u.dtype)
            parts.setdefault(m.index, []).append((m.view, new_u))
    out = list(flat_u)
    for index, leaf_parts in parts.items():
        out[index] = _views.scatter(flat_u[index], leaf_parts)
    return out


def synced_updates(updates, params, beta, model_weights=None, labels=None,
                   grouping="type_shape", align_rules=None):
    """The synchronised updates of one sync step, unconditionally (pure function).

    ``optax.apply_updates(params, synced_updates(u, params, beta))`` equals the
    move of :func:`sync_parameters` on a sync step. Used by
    :func:`multi_model_optimizer` inside one ``lax.cond`` around its whole
    update, so off-sync steps run the plain pipeline at no extra cost.
    """
    plan = _plan.make_plan(params, labels, grouping, align_rules, warn=False)
    if not plan.shared_groups or beta == 0:
        return updates
    weights = _pool.normalized_weights(model_weights, plan.models)
    flat_u, treedef = jax.tree_util.tree_flatten(updates)
    flat_p = treedef.flatten_up_to(params)
    buffers = _average_buffers(flat_u, flat_p, plan, weights)
    step = jnp.asarray(beta, jnp.float32)
    return jax.tree_util.tree_unflatten(treedef, _move(flat_u, flat_p, plan, weights, step,
                                                       buffers))
