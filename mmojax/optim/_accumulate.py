"""Gradient accumulation that also averages the per-model losses."""

from __future__ import annotations

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
    the optax interface returns (``optax.MultiSteps`` has the same).

    Args:
      inner: the transformation to wrap.
      gradient_accumulation_steps: micro-batches per update (>= 1, static; 1
        returns ``inner`` unchanged).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.
    """
    every_k = _weights.static_int("gradient_accumulation_steps", gradient_accumulation_steps, 1)
    inner = optax.with_extra_args_support(inner)
    if every_k == 1:
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
        grads = jax.tree.map(lambda a, u: a + u.astype(a.dtype), state.grads, updates)
        if losses is not None:
            missing = [m for m in state.losses if m not in losses]
            if missing:
                raise ValueError(f"losses is missing models {missing}; got {sorted(losses)}")
            loss_sum = {
                m: state.losses[m] + jnp.asarray(losses[m], jnp.float32) for m in state.losses
            }
        else:
            loss_sum = state.losses
        emit = state.mini_step == every_k - 1

        def apply_inner(operand):
            grads, loss_sum, inner_state = operand
            mean = jax.tree.map(lambda g, u: (g / every_k).astype(u.dtype), grads, updates)
            kwargs = dict(extra_args)
            if losses is not None:
                kwargs["losses"] = {m: v / every_k for m, v in loss_sum.items()}
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

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
