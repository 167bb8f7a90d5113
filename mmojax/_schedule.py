"""Learning-rate schedules and the per-model learning-rate scaling."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax import _pool, _tree


def warmup_cosine_schedule(
    learning_rate: float,
    warmup_steps: int = 100,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> optax.Schedule:
    r"""``lr(t) = learning_rate * f_warmup(t) * f_decay(t)``, the paper's schedule.

    .. math::
      f_{\text{warmup}}(t) = \min(1, t / N_w), \qquad
      f_{\text{decay}}(t) = \rho + (1 - \rho)\tfrac12\Big(1 + \cos\pi
        \,\text{clip}\big(\tfrac{t - N_w}{T - N_w}, 0, 1\big)\Big)

    with :math:`N_w` = ``warmup_steps`` (0: no warmup), :math:`T` =
    ``total_steps`` (``None``: no decay) and :math:`\rho` = ``min_lr_ratio``.

    Examples:
      >>> s = warmup_cosine_schedule(1.0, warmup_steps=10, total_steps=110)
      >>> [round(float(s(t)), 3) for t in (0, 5, 10, 60, 110)]
      [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if not (isinstance(learning_rate, numbers.Real) and math.isfinite(learning_rate)
            and learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) \
            or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if total_steps is not None and (
        isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral)
        or total_steps <= warmup_steps
    ):
        raise ValueError(
            f"total_steps must be None or an integer > warmup_steps ({warmup_steps}), "
            f"got {total_steps!r}"
        )
    if not 0.0 <= float(min_lr_ratio) <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    lr, warmup, ratio = float(learning_rate), int(warmup_steps), float(min_lr_ratio)

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        value = jnp.asarray(lr, jnp.float32)
        if warmup > 0:
            value = value * jnp.minimum(t / warmup, 1.0)
        if total_steps is not None:
            progress = jnp.clip((t - warmup) / (total_steps - warmup), 0.0, 1.0)
            value = value * (ratio + (1.0 - ratio) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return value

    return schedule


class ModelLearningRateState(NamedTuple):
    """State of :func:`scale_by_model_learning_rate`.

    Attributes:
      count: updates seen so far (int32).
      learning_rates: ``{model: float32}`` the rate (schedule x weight factor)
        of the latest update, or of the first one before any update.
    """

    count: jax.Array
    learning_rates: dict[str, jax.Array]


def scale_by_model_learning_rate(
    learning_rate: float | Callable[[jax.Array], jax.Array],
    model_weights: Mapping[str, float] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales model :math:`i`'s updates by :math:`-\text{lr}(t) \cdot n\, w_i`.

    :math:`w_i` are the model weights normalised to sum to 1 over the
    :math:`n` models, so :math:`n w_i` is 1 for every model when the weights
    are equal (the base rate is unchanged) and, for the paper's weights
    bert 1.0 / gpt2 0.8 / roberta 1.2, exactly those numbers.

    Args:
      learning_rate: a float or an ``optax`` schedule of the update count.
      model_weights: ``{model_name: weight}``; default equal.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.
    """
    _pool.check_weight_values(model_weights)
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def factors(models):
        weights = _pool.normalized_weights(model_weights, models)
        return {m: len(models) * weights[m] for m in models}

    def rates(count, models):
        base = jnp.asarray(schedule(count), jnp.float32)
        return {m: base * f for m, f in factors(models).items()}

    def init_fn(params):
        models = _tree.check_multi_model_tree(params)
        count = jnp.zeros([], jnp.int32)
        return ModelLearningRateState(count, rates(count, models))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        lrs = rates(state.count, tuple(state.learning_rates))
        updates = _tree.map_with_model(lambda m, u: (-lrs[m] * u).astype(u.dtype), updates)
        return updates, ModelLearningRateState(optax.safe_increment(state.count), lrs)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
