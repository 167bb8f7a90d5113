r"""Algorithm 2 of the paper: periodic soft parameter synchronisation.

Design: cheap off-sync steps in a *donated* jitted train step
-------------------------------------------------------------
:func:`sync_parameters` wraps its inner optimizer, as ``optax.lookahead``
does, so the updates it moves are final by construction. Every update

1. runs a conditional (:func:`~mmojax.optim._gate.rare_cond`) whose rare
   branch, taken on sync steps only, recomputes the inner update and writes
   each shared group's weighted sums of the moved parameters ``p + u`` into
   ``state.pools``; the common branch passes ``state.pools`` through;
2. runs the inner update once more, for real, after that conditional (a
   scalar zero returned by the conditional is added to the inner state to
   order it so);
3. returns ``u' = (1 - c) u + where(is_sync, c (avg - p), 0)`` on the shared
   members, ``c = where(is_sync, beta, 0)`` (``u + beta (avg - (p + u))`` on a
   sync update, exactly ``u`` otherwise): elementwise, so XLA fuses it, with
   the inner update, into the caller's ``optax.apply_updates``; ``u`` is one
   term of it on purpose (see ``_gated_move``).

Why this shape. With donated buffers every array the update reads and
rewrites can be updated in place, and the off-sync step should allocate
nothing. Measured on the CPU backend (jax 0.10), the alternatives do not:

- a ``lax.cond`` around the whole update (this module's previous design)
  makes XLA copy the donated optimizer state into the conditional on every
  step: 4.3x ``optax.adamw`` on a 16M-parameter tree;
- a ``cond`` that takes the inner updates ``u`` as an operand forces ``u`` to
  be materialised, and its pass-through branch copies it (corr. 4.2x);
- a ``cond`` that reads the *old* inner state while the inner update, outside,
  overwrites that state in place, gets a copy of the whole state (4.8x): the
  zero token of step 2 removes it, because the in-place writes then depend on
  the conditional;
- pool buffers returned by the conditional as fresh arrays (zeros off sync)
  are temporaries written on every step. Here they live in the state, and
  the common branch passes them through, which XLA does in place.

HLO evidence (``tests/test_optim_design.py``): the compiled donated step of
``optax.adamw`` under :func:`sync_parameters` has no ``copy`` of a
parameter-sized array and no parameter-sized temporary buffer, and in its
fused apply every value computed from Adam's square root has one use; the
cost of an off-sync step is the inner update plus one read of the pool sums
(see ``benchmarks/bench_optimizer.py`` for real layouts). A sync step runs
the inner update twice (it is recomputed inside the rare branch) plus one
pass over the shared parameters. The token is not free on the CPU backend:
in the optimizer-only benchmark it adds about 0.1x ``optax.adamw`` off sync,
with the same compiled kernels (the cost is in how the runtime schedules
kernels that wait on one node); ``optimization_barrier`` in its place copies
the whole inner state, and a token on the gradients instead costs no less.

Under ``jax.vmap`` over a stacked model axis a batched ``lax.cond`` would run
both branches on every step; :func:`~mmojax.optim._gate.rare_cond` keeps one
conditional on ``any(is_sync)`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import _align, _gate, _plan, _pool, _views, _weights


class SyncState(NamedTuple):
    """State of :func:`sync_parameters`.

    Attributes:
      count: optimizer updates seen so far (int32).
      pools: per shared group, its weighted sums of the moved parameters at
        the latest sync step (zeros before the first). They live in the state
        so that an off-sync step allocates nothing.
      inner_state: the wrapped optimizer's state.
    """

    count: jax.Array
    pools: tuple[tuple[jax.Array, ...], ...]
    inner_state: Any


def sync_parameters(
    inner: optax.GradientTransformation,
    *,
    beta: float | jax.Array = 0.1,
    sync_every: int | jax.Array = 10,
    model_weights: Mapping[str, Any] | None = None,
    labels: Any = None,
    grouping: str = "type_shape",
    align_rules: Sequence[_align.AlignRule] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Runs ``inner``; every ``sync_every`` updates, moves shared parameters towards their average.

    On updates ``sync_every, 2 sync_every, ...`` each member :math:`p` of a key
    shared by at least two models moves, *after* ``inner``'s update
    :math:`u` is applied, towards the weighted average of the key's members:

    .. math::
      \tilde p = p + u, \quad
      \bar p_k = \sum_{q \in k} w_{m(q)} \tilde q \Big/ \sum_{q \in k} w_{m(q)}, \quad
      p_{\text{new}} = (1 - \beta)\, \tilde p + \beta\, \bar p_k .

    Like ``optax.lookahead`` the move is expressed as a returned update, never
    a write to ``params``: :math:`p_{\text{new}} - p = u + \beta(\bar p_k - \tilde p)`,
    so ``optax.apply_updates(params, out)`` gives :math:`p_{\text{new}}`.
    Wrapping ``inner`` makes the move act on its final updates by
    construction. Under ``grouping="role"`` / ``"role_depth"`` the members are
    canonical views of leaves (see :func:`sharing_plan`), the average of
    :math:`p` runs over :math:`p` itself and the other models' members, and
    the move is computed on the views and scattered back into the leaves
    exactly. Leaves that are not floating point never move. Each member of
    a :class:`Cohort` is averaged and moved as a separately held model would
    be.

    See the module docstring for why off-sync updates cost ``inner`` plus one
    read of the pool sums in a donated train step, and stay so under
    ``jax.vmap``.

    Args:
      inner: the optimizer whose updates are synchronised (e.g.
        ``optax.chain(share_gradients(), optax.adamw(1e-3))``).
      beta: synchronisation coefficient in [0, 1] (the paper: 0.1); a float
        or a scalar array (traced ones too). A Python 0 disables sync.
      sync_every: synchronise every this many updates (the paper: 10); an
        integer or an integer array. A Python 0 disables sync.
      model_weights: ``{model_name: weight}``, default equal, normalised.
      labels: as in :func:`share_gradients`.
      grouping: ``"type_shape"`` (default), ``"role"`` or ``"role_depth"``.
      align_rules: as in :func:`share_gradients`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
      ``params`` and passes every extra argument to ``inner``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"a": {"w": jnp.array([0.0])}, "b": {"w": jnp.array([4.0])}}
      >>> tx = sync_parameters(optax.sgd(1.0), beta=0.5, sync_every=1)
      >>> zero = {"a": {"w": jnp.array([0.0])}, "b": {"w": jnp.array([0.0])}}
      >>> updates, _ = tx.update(zero, tx.init(params), params)
      >>> new = optax.apply_updates(params, updates)
      >>> new["a"]["w"].tolist(), new["b"]["w"].tolist()
      ([1.0], [3.0])
    """
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(f"sync_parameters wraps an optax transformation, got {inner!r}")
    inner = optax.with_extra_args_support(inner)
    _weights.check_unit_interval("beta", beta)
    _weights.check_period("sync_every", sync_every)
    _weights.check_model_weights(model_weights)
    _plan.check_grouping(grouping)
    align_rules = _align.check_rules(align_rules)
    disabled = _weights.is_static_zero(beta) or _weights.is_static_zero(sync_every)

    def plan_of(params):
        return _plan.cached_plan(params, labels, grouping, align_rules)

    def init_fn(params):
        _plan.validate_at_init(params, model_weights, labels, grouping, align_rules)
        pools = () if disabled else _zero_pools(params, plan_of(params), model_weights)
        return SyncState(jnp.zeros([], jnp.int32), pools, inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("sync_parameters needs params: call update(updates, state, params)")
        count = optax.safe_increment(state.count)
        plan = plan_of(params)
        if disabled or not plan.shared_groups:
            out, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
            return out, SyncState(count, state.pools, inner_state)
        weights = plan.weights(model_weights)
        period = jnp.asarray(sync_every, jnp.int32)
        is_sync = jnp.logical_and(period > 0, count % jnp.maximum(period, 1) == 0)

        def rare(ops):
            grads, inner_state, params, extra, _, weights = ops
            u, _ = inner.update(grads, inner_state, params, **extra)
            return _pool_sums(u, params, plan, weights), jnp.zeros([], jnp.float32)

        def common(ops):
            return ops[4], jnp.zeros([], jnp.float32)

        pools, token = _gate.rare_cond(
            is_sync,
            rare,
            common,
            (updates, state.inner_state, params, extra_args, state.pools, weights),
        )
        inner_state = jax.tree.map(lambda x: _after(x, token), state.inner_state)
        out, inner_state = inner.update(updates, inner_state, params, **extra_args)
        out = _move(out, params, plan, weights, beta, pools, is_sync)
        return out, SyncState(count, pools, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _after(x: Any, token: jax.Array) -> Any:
    """``x + 0``, the zero taken from the conditional: orders ``x``'s in-place update after it."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not (
        jnp.issubdtype(dtype, jnp.inexact) or jnp.issubdtype(dtype, jnp.integer)
    ):
        return x
    return x + token.astype(dtype)


def _member_dtype(params_flat, group) -> Any:
    return jnp.result_type(*(params_flat[m.index].dtype for m in group.members), jnp.float32)


def _zero_pools(params, plan, model_weights):
    flat = jax.tree_util.tree_leaves(params)
    weights = plan.weights(model_weights)
    out = []
    for group in plan.shared_groups:
        recipe = _pool.pool_recipe(group, weights)
        dtype = _member_dtype(flat, group)
        out.append(tuple(jnp.zeros(group.shape, dtype) for _ in recipe.buffers))
    return tuple(out)


def _pool_sums(updates, params, plan, weights):
    """Each shared group's weighted sums of the moved parameters ``p + u``."""
    flat_u, treedef = jax.tree_util.tree_flatten(updates)
    flat_p = treedef.flatten_up_to(params)
    out = []
    for g in plan.shared_groups:
        recipe = _pool.pool_recipe(g, weights)
        blocks = _pool.stacked_blocks(g, recipe, flat_p)
        if blocks is not None:
            moved = [
                p + u
                for p, u in zip(
                    _pool.block_values(flat_p, g, blocks), _pool.block_values(flat_u, g, blocks)
                )
            ]
            out.append(
                (_pool.block_sum(moved, g, blocks, weights).astype(_member_dtype(flat_p, g)),)
            )
            continue
        moved = [m.take(flat_p[m.index]) + m.take(flat_u[m.index]) for m in g.members]
        sums = _pool.pool_buffers(moved, [weights[m.model] for m in g.members], recipe)
        out.append(tuple(s.astype(_member_dtype(flat_p, g)) for s in sums))
    return tuple(out)


def _move(updates, params, plan, weights, beta, pools, is_sync):
    """``u + [is_sync] beta (avg - (p + u))`` on every shared view, scattered back.

    See :func:`_gated_move` for how it is written.
    """
    flat_u, treedef = jax.tree_util.tree_flatten(updates)
    flat_p = treedef.flatten_up_to(params)
    coef = jnp.where(is_sync, jnp.asarray(beta, jnp.float32), 0.0)
    parts: dict[int, list] = {}
    for g, sums in zip(plan.shared_groups, pools):
        recipe = _pool.pool_recipe(g, weights)
        blocks = _pool.stacked_blocks(g, recipe, flat_p)
        if blocks is not None:
            avg = _weights.safe_divide(sums[0], recipe.totals[0])  # no member adds itself
            for b in blocks:
                m = g.members[b.positions[0]]
                target = _views.ungather(avg, m.view)  # to the stored orientation
                u = _pool.block_part(flat_u[b.index], m, b.stacked)
                p = _pool.block_part(flat_p[b.index], m, b.stacked)
                new_u = _gated_move(u, p, target, coef, is_sync)
                slot = _views.STACKED if b.stacked else None
                parts.setdefault(b.index, []).append((slot, m.view, new_u))
            continue
        for i, m in enumerate(g.members):
            # The pool of member i is (sums + own weight * (p + u)) / total when it
            # pools with itself (recipe.adds_self), else sums / total: split so that
            # ``u`` stays one term (see _gated_move).
            total = recipe.totals[i]
            rest = _weights.safe_divide(sums[recipe.reads[i]], total)
            rest = _views.ungather(rest, m.view)  # to the stored orientation
            own = (
                _weights.safe_divide(jnp.asarray(weights[m.model], jnp.float32), total)
                if recipe.adds_self[i]
                else None
            )
            u = m.block(flat_u[m.index])
            p = m.block(flat_p[m.index])
            new_u = _gated_move(u, p, rest, coef, is_sync, own)
            parts.setdefault(m.index, []).append((m.slot, m.view, new_u))
    out = list(flat_u)
    for index, leaf_parts in parts.items():
        out[index] = _views.scatter_slots(flat_u[index], leaf_parts)
    return jax.tree_util.tree_unflatten(treedef, out)


def _gated_move(u, p, rest, coef, is_sync, own=None):
    r"""The update of one shared view: ``u`` off sync, ``u + beta (avg - (p + u))`` on sync.

    With the view's pool :math:`\bar p = r + \sigma (p + u)` (``rest``
    :math:`r`, ``own`` share :math:`\sigma`; ``None``: 0, the member does not
    pool with itself) and :math:`c` = ``coef`` (``beta`` on a sync update, else 0):

    .. math::
      u' = (1 - c (1 - \sigma))\, u + [\text{sync}]\; c\,(r - (1 - \sigma)\, p),

    exactly ``u`` off sync (``1 * u + 0``; the bracket is a ``where``, so a
    non-finite pool cannot leak in). ``u`` appears once on purpose: it is the
    inner update's expression (Adam's square root and division), and XLA:CPU's
    fused loop evaluates an expression once per *use*. Written as
    ``where(is_sync, u + beta (avg - (p + u)), u)`` it had three uses and cost
    more than the pool read (an apply fusion of ``(8000, 256)``: 2.2 ms against
    1.6 ms with one use, 1.1 ms without sync).
    """
    dtype = rest.dtype
    p = p.astype(dtype)
    if own is None:
        keep, pull = 1.0 - coef, rest - p
    else:
        keep, pull = 1.0 - coef * (1.0 - own), rest - (1.0 - own) * p
    new_u = keep * u.astype(dtype) + jnp.where(is_sync, coef * pull, jnp.zeros([], dtype))
    return new_u.astype(u.dtype)
