"""Gradient accumulation that also averages the per-model losses."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import _tree, _weights


class AccumulateState(NamedTuple):
    """State of :func:`accumulate_gradients`.

    Attributes:
      mini_step: micro-batches accumulated since the last inner update (int32).
      grads: running sum of the micro-batch gradients (float32 or wider).
      losses: ``{model: float32}`` running sum of the micro-batch losses
        (``(k,)`` for a cohort of ``k`` members).
      inner_state: the wrapped transformation's state.
    """

    mini_step: jax.Array
    grads: Any
    losses: dict[str, jax.Array]
    inner_state: Any


def accumulate_gradients(
    inner: optax.GradientTransformation, *, gradient_accumulation_steps: int
) -> optax.GradientTransformationExtraArgs:
    """Applies ``inner`` once every ``gradient_accumulation_steps`` calls, on the mean gradient.

    Unlike ``optax.MultiSteps``, the per-model ``losses`` extra argument is
    averaged over the same micro-batches and handed to ``inner`` with the mean
    gradient, so a convergence estimator sees one loss per optimizer update,
    and ``inner`` runs only on the emitting call (``lax.cond``). Between
    emissions the returned updates are zero. Other extra arguments are passed
    from the emitting call.

    In a donated train step an accumulate-only call adds the gradient into
    the accumulator in place and passes ``inner``'s state through the
    conditional without copying it; its only other cost is the zero updates
    the optax interface returns and the caller applies (``optax.MultiSteps``
    has the same). A step built with :func:`update_or_accumulate` (as
    ``mmojax.train``'s is) skips those too.

    Args:
      inner: the transformation to wrap.
      gradient_accumulation_steps: micro-batches per update (>= 1, static; 1
        returns ``inner`` unchanged).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.
    """
    steps = _weights.static_int("gradient_accumulation_steps", gradient_accumulation_steps, 1)
    inner = optax.with_extra_args_support(inner)
    if steps == 1:
        return inner

    def acc_dtype(dtype):
        return jnp.result_type(dtype, jnp.float32)

    def init_fn(params):
        _tree.check_multi_model_tree(params)
        return AccumulateState(
            mini_step=jnp.zeros([], jnp.int32),
            grads=jax.tree.map(lambda p: jnp.zeros(p.shape, acc_dtype(p.dtype)), params),
            losses=_tree.per_model(params, 0.0, jnp.float32),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, *, losses=None, **extra_args):
        grads, loss_sum = _add(state, updates, losses)
        emit = state.mini_step == steps - 1

        def apply_inner(operand):
            grads, loss_sum, inner_state = operand
            mean = jax.tree.map(lambda g, u: (g / steps).astype(u.dtype), grads, updates)
            kwargs = dict(extra_args)
            if losses is not None:
                kwargs["losses"] = {m: v / steps for m, v in loss_sum.items()}
            out, inner_state = inner.update(mean, inner_state, params, **kwargs)
            out = jax.tree.map(lambda o, u: o.astype(u.dtype), out, updates)
            zeros = jax.tree.map(jnp.zeros_like, (grads, loss_sum))
            return out, zeros[0], zeros[1], inner_state

        def hold(operand):
            grads, loss_sum, inner_state = operand
            zeros = [jnp.zeros(u.shape, u.dtype) for u in jax.tree.leaves(updates)]
            return (
                jax.tree.unflatten(jax.tree.structure(updates), zeros),
                grads,
                loss_sum,
                inner_state,
            )

        out, grads, loss_sum, inner_state = jax.lax.cond(
            emit, apply_inner, hold, (grads, loss_sum, state.inner_state)
        )
        mini_step = jnp.where(emit, 0, state.mini_step + 1).astype(jnp.int32)
        return out, AccumulateState(mini_step, grads, loss_sum, inner_state)

    tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    _STEPS[init_fn] = steps
    return tx


# ``init`` of every transformation built by accumulate_gradients -> its accumulation steps.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _add(state: AccumulateState, updates, losses):
    """``(grads, losses)`` sums with one more micro-batch added."""
    grads = jax.tree.map(lambda a, u: a + u.astype(a.dtype), state.grads, updates)
    if losses is None:
        return grads, state.losses
    missing = [m for m in state.losses if m not in losses]
    if missing:
        raise ValueError(f"losses is missing models {missing}; got {sorted(losses)}")
    return grads, {m: state.losses[m] + jnp.asarray(losses[m], jnp.float32) for m in state.losses}


def accumulation_steps(tx: optax.GradientTransformation) -> int:
    """``gradient_accumulation_steps`` of ``tx`` if :func:`accumulate_gradients`
    built it (so does :func:`mmojax.multi_model_optimizer` with accumulation), else 1."""
    return _STEPS.get(tx.init, 1)


def update_or_accumulate(
    tx: optax.GradientTransformation,
    step_fn: Callable[..., tuple[Any, Any]],
    grads: Any,
    state: Any,
    params: Any,
    *,
    losses: dict[str, jax.Array] | None = None,
) -> tuple[Any, Any]:
    """``(params, state)`` after one micro-batch, an accumulate-only one costing one add.

    ``step_fn(params, state, grads, losses) -> (params, state)`` is the
    caller's whole update: ``tx.update(grads, state, params, losses=losses)``
    with the ``grads`` and ``losses`` it is given, then
    ``optax.apply_updates`` and whatever else the caller does. When ``tx``
    accumulates gradients (see :func:`accumulation_steps`), the micro-batch's
    ``grads`` and ``losses`` are added into the accumulator first (in place
    in a donated step) and ``step_fn`` runs only on the micro-batch that
    completes an update (given zeros to add, it averages the sums), inside a
    ``lax.cond`` whose other branch passes ``params`` and the inner state
    through: no copy, and no zero updates written and applied as the optax
    interface must otherwise do. The predicate is the micro-batch count,
    unbatched unless the optimizer state itself is, so the conditional stays
    a branch under a ``jax.vmap`` of the model axis too. Otherwise (``tx``
    does not accumulate, or wraps an accumulating transformation that
    :func:`accumulation_steps` cannot see) ``step_fn(params, state, grads,
    losses)``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> tx = accumulate_gradients(optax.sgd(0.5), gradient_accumulation_steps=2)
      >>> def step_fn(params, state, grads, losses):
      ...     updates, state = tx.update(grads, state, params)
      ...     return optax.apply_updates(params, updates), state
      >>> @jax.jit
      ... def step(params, state, grads):
      ...     return update_or_accumulate(tx, step_fn, grads, state, params)
      >>> params = {"a": jnp.array([1.0])}
      >>> state = tx.init(params)
      >>> params, state = step(params, state, {"a": jnp.array([2.0])})  # accumulates
      >>> params["a"].tolist(), int(state.mini_step)
      ([1.0], 1)
      >>> params, state = step(params, state, {"a": jnp.array([4.0])})  # mean 3.0, applied
      >>> params["a"].tolist(), int(state.mini_step)
      ([-0.5], 0)
    """
    steps = accumulation_steps(tx)
    if steps == 1 or not isinstance(state, AccumulateState):
        return step_fn(params, state, grads, losses)
    # As in update_fn: the sums are formed outside the conditional, so the
    # accumulator is added into in place and passed through the branch that
    # only accumulates.
    grads_sum, loss_sum = _add(state, grads, losses)
    no_losses = None if losses is None else jax.tree.map(jnp.zeros_like, loss_sum)

    def update(operand):
        params, summed = operand
        return step_fn(params, summed, jax.tree.map(jnp.zeros_like, grads), no_losses)

    def accumulate(operand):
        params, summed = operand
        return params, summed._replace(mini_step=summed.mini_step + 1)

    return jax.lax.cond(
        state.mini_step == steps - 1,
        update,
        accumulate,
        (params, state._replace(grads=grads_sum, losses=loss_sum)),
    )
