"""Algorithm 3 of the paper: convergence-rate estimation from recent losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import _tree, _weights


class ConvergenceState(NamedTuple):
    """State of :func:`scale_by_convergence`; every field is per model.

    A :class:`Cohort` of ``k`` members has a leading axis ``k`` on each of
    its fields (``losses[name]`` is ``(k, window)``, ``rates[name]`` ``(k,)``).

    Attributes:
      count: optimizer updates seen so far (int32 scalar).
      losses: ``{model: float32[window]}`` ring buffers of recent losses.
      num_losses: ``{model: int32}`` finite losses recorded (the ring's write
        position is ``num_losses % window``).
      rates: ``{model: float32}`` the estimated convergence rates ``r_i``.
      scales: ``{model: float32}`` the factor ``f_conv(i)`` last applied.
    """

    count: jax.Array
    losses: dict[str, jax.Array]
    num_losses: dict[str, jax.Array]
    rates: dict[str, jax.Array]
    scales: dict[str, jax.Array]


def ring_slope(buffer: jax.Array, num: jax.Array) -> jax.Array:
    r"""Least-squares slope of a full ring buffer read in chronological order.

    The value at ring position :math:`k` was written :math:`t_k = (k - n) \bmod w`
    steps after the oldest one (``n`` values written, window ``w``), so the
    slope is :math:`\sum (t - \bar t)(y - \bar y) / \sum (t - \bar t)^2` without
    rotating the buffer.
    """
    window = buffer.shape[0]
    t = jnp.mod(jnp.arange(window) - num, window).astype(jnp.float32)
    t = t - t.mean()
    y = buffer - buffer.mean()
    return jnp.sum(t * y) / jnp.sum(t * t)


def scale_by_convergence(
    convergence_window: int = 100,
    *,
    convergence_update_every: int = 50,
    convergence_ema: float = 0.9,
    min_convergence_scale: float = 0.5,
    max_convergence_scale: float = 1.5,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales each model's updates by ``f_conv(i)`` from its loss trend (Algorithm 3).

    Each update records ``losses[i]`` (non-finite losses are not recorded). Every
    ``convergence_update_every`` updates, for each model with at least
    ``convergence_window`` recorded losses, fit the least-squares slope
    :math:`s` of the last ``convergence_window`` and set

    .. math::
      r_i \leftarrow e\, r_i + (1 - e) \frac{1}{1 + |s|},
      \qquad f_{\text{conv}}(i) = \text{clip}(1 / r_i, s_{\min}, s_{\max}),

    with :math:`r_i = 1` at start. Since :math:`1/(1+|s|) \le 1`, :math:`r_i \le 1`
    and :math:`f_{\text{conv}} \ge 1`: as the paper defines it, the factor only
    ever *raises* the step of a model whose loss moves fast, and
    ``min_convergence_scale`` binds only if set above 1.

    Args:
      convergence_window: losses in the slope fit (>= 2; static: the ring
        buffer's size).
      convergence_update_every: re-estimate every this many updates (>= 1).
      convergence_ema: the moving-average coefficient :math:`e`, in [0, 1]
        (the paper: 0.9).
      min_convergence_scale: lower clip :math:`s_{\min}` of ``f_conv`` (> 0).
      max_convergence_scale: upper clip :math:`s_{\max}` of ``f_conv``
        (>= ``min_convergence_scale``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes
      ``losses={model_name: scalar}`` (a :class:`Cohort`: a ``(k,)`` array,
      one loss per member, each member estimated as a model of its own).

    Examples:
      >>> import jax.numpy as jnp
      >>> g = {"a": {"w": jnp.ones(2)}}
      >>> tx = scale_by_convergence(2, convergence_update_every=1, convergence_ema=0.0,
      ...                           max_convergence_scale=10.0)
      >>> state = tx.init(g)
      >>> _, state = tx.update(g, state, losses={"a": 5.0})
      >>> out, state = tx.update(g, state, losses={"a": 2.0})  # slope -3 -> r = 1/4
      >>> out["a"]["w"].tolist()
      [4.0, 4.0]
    """
    window = _weights.static_int("convergence_window", convergence_window, 2)
    update_every = _weights.static_int("convergence_update_every", convergence_update_every, 1)
    _weights.check_unit_interval("convergence_ema", convergence_ema)
    ema, min_scale, max_scale = convergence_ema, min_convergence_scale, max_convergence_scale
    low = _weights.concrete_scalar("min_convergence_scale", min_scale)
    high = _weights.concrete_scalar("max_convergence_scale", max_scale)
    if low is not None and not low > 0:
        raise ValueError(f"min_convergence_scale must be > 0, got {min_scale}")
    if low is not None and high is not None and not high >= low:
        raise ValueError(
            f"max_convergence_scale must be >= min_convergence_scale, got {max_scale} < {min_scale}"
        )

    def init_fn(params):
        _tree.check_multi_model_tree(params)
        return ConvergenceState(
            count=jnp.zeros([], jnp.int32),
            losses=_tree.per_model(params, 0.0, jnp.float32, (window,)),
            num_losses=_tree.per_model(params, 0, jnp.int32),
            rates=_tree.per_model(params, 1.0, jnp.float32),
            scales=_tree.per_model(params, 1.0, jnp.float32),
        )

    def estimate(buffer, num, rate, loss, due):
        """One model's step of Algorithm 3 (vmapped over a cohort's members)."""
        finite = jnp.isfinite(loss)
        buffer = jnp.where(finite, buffer.at[num % window].set(loss), buffer)
        num = num + finite.astype(jnp.int32)
        norm_rate = 1.0 / (1.0 + jnp.abs(ring_slope(buffer, num)))
        rate = jnp.where(
            jnp.logical_and(due, num >= window), ema * rate + (1.0 - ema) * norm_rate, rate
        )
        return buffer, num, rate, jnp.clip(1.0 / rate, min_scale, max_scale)

    def update_fn(updates, state, params=None, *, losses=None, **extra_args):
        del params, extra_args
        losses = check_losses(losses, state.rates)
        count = optax.safe_increment(state.count)
        due = count % update_every == 0
        buffers, nums, rates, scales = {}, {}, {}, {}
        for m in state.rates:
            args = (state.losses[m], state.num_losses[m], state.rates[m], losses[m])
            one = (
                estimate
                if jnp.ndim(state.rates[m]) == 0
                else jax.vmap(estimate, (0,) * 4 + (None,))
            )
            buffers[m], nums[m], rates[m], scales[m] = one(*args, due)
        updates = _tree.scale_models(updates, scales)
        return updates, ConvergenceState(count, buffers, nums, rates, scales)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def check_losses(losses: Any, models: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Validates ``losses={model: scalar}`` and returns float32 arrays.

    ``models`` maps each model to an array of its per-model shape: ``()``, or
    ``(k,)`` for a cohort, whose loss must then be ``(k,)``.
    """
    if losses is None:
        raise ValueError(
            "the convergence estimator needs the per-model losses: call "
            "update(..., losses={model_name: scalar_loss})"
        )
    if not isinstance(losses, Mapping):
        raise TypeError(f"losses must be a mapping {{model_name: scalar}}, got {type(losses)}")
    missing = [m for m in models if m not in losses]
    if missing:
        raise ValueError(f"losses is missing models {missing}; got {sorted(losses)}")
    out = {}
    for m, like in models.items():
        value = jnp.asarray(losses[m], jnp.float32)
        if value.shape != jnp.shape(like):
            what = "a scalar" if jnp.ndim(like) == 0 else f"one per member, shape {jnp.shape(like)}"
            raise ValueError(f"loss of {m!r} must be {what}, got shape {value.shape}")
        out[m] = value
    return out
