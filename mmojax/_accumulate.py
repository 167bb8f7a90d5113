"""Gradient accumulation that also averages the per-model losses, and per-model clipping."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax import _tree


class AccumulateState(NamedTuple):
    """State of :func:`accumulate_gradients`.

    Attributes:
      mini_step: micro-batches accumulated since the last inner update (int32).
      grads: running sum of the micro-batch gradients (float32 or wider).
      losses: ``{model: float32}`` running sum of the micro-batch losses.
      inner_state: the wrapped transformation's state.
    """

    mini_step: jax.Array
    grads: Any
    losses: dict[str, jax.Array]
    inner_state: Any


def accumulate_gradients(
    inner: optax.GradientTransformation, every_k: int
) -> optax.GradientTransformationExtraArgs:
    """Applies ``inner`` once every ``every_k`` calls, on the mean gradient.

    Unlike ``optax.MultiSteps``, the per-model ``losses`` extra argument is
    averaged over the same micro-batches and handed to ``inner`` with the mean
    gradient, so a convergence estimator sees one loss per optimizer update,
    and ``inner`` runs only on the emitting call (``lax.cond``). Between
    emissions the returned updates are zero. Other extra arguments are passed
    from the emitting call.

    Args:
      inner: the transformation to wrap.
      every_k: micro-batches per update (>= 1; 1 returns ``inner`` unchanged).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.
    """
    if isinstance(every_k, bool) or not isinstance(every_k, numbers.Integral) or every_k < 1:
        raise ValueError(f"gradient_accumulation_steps must be an integer >= 1, got {every_k!r}")
    inner = optax.with_extra_args_support(inner)
    if every_k == 1:
        return inner

    def acc_dtype(dtype):
        return jnp.result_type(dtype, jnp.float32)

    def init_fn(params):
        models = _tree.check_multi_model_tree(params)
        return AccumulateState(
            mini_step=jnp.zeros([], jnp.int32),
            grads=jax.tree.map(lambda p: jnp.zeros(p.shape, acc_dtype(p.dtype)), params),
            losses={m: jnp.zeros([], jnp.float32) for m in models},
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, *, losses=None, **extra_args):
        grads = jax.tree.map(lambda a, u: a + u.astype(a.dtype), state.grads, updates)
        if losses is not None:
            missing = [m for m in state.losses if m not in losses]
            if missing:
                raise ValueError(f"losses is missing models {missing}; got {sorted(losses)}")
            loss_sum = {m: state.losses[m] + jnp.asarray(losses[m], jnp.float32)
                        for m in state.losses}
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
            return jax.tree.map(jnp.zeros_like, updates), grads, loss_sum, inner_state

        out, grads, loss_sum, inner_state = jax.lax.cond(
            emit, apply_inner, hold, (grads, loss_sum, state.inner_state)
        )
        mini_step = jnp.where(emit, 0, state.mini_step + 1).astype(jnp.int32)
        return out, AccumulateState(mini_step, grads, loss_sum, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ClipByModelNormState(NamedTuple):
    """``clip_by_model_global_norm`` keeps no state."""


def clip_by_model_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """Clips each model's gradients by that model's own global norm.

    Model :math:`i`'s updates are scaled by ``min(1, max_norm / ||g_i||)``;
    the norm never mixes models, so one model's large gradient does not
    shrink the others' steps.

    Examples:
      >>> import jax.numpy as jnp
      >>> g = {"a": {"w": jnp.array([3.0, 4.0])}, "b": {"w": jnp.array([0.3, 0.4])}}
      >>> tx = clip_by_model_global_norm(1.0)
      >>> out, _ = tx.update(g, tx.init(g))
      >>> [round(x, 3) for x in out["a"]["w"].tolist() + out["b"]["w"].tolist()]
      [0.6, 0.8, 0.3, 0.4]
    """
    if not (isinstance(max_norm, numbers.Real) and max_norm > 0):
        raise ValueError(f"clip_norm must be a number > 0, got {max_norm!r}")

    def init_fn(params):
        _tree.check_multi_model_tree(params)
        return ClipByModelNormState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        norms = {m: optax.tree.norm(updates[m]) for m in updates}
        scales = {m: jnp.minimum(1.0, max_norm / jnp.maximum(n, 1e-30)) for m, n in norms.items()}
        return _tree.map_with_model(lambda m, u: (u * scales[m]).astype(u.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
