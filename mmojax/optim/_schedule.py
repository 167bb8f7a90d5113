"""Learning-rate schedules and the per-model learning-rate scaling."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import _cohort, _tree, _weights


def warmup_cosine_schedule(
    learning_rate: float | jax.Array,
    *,
    warmup_steps: int | jax.Array = 100,
    total_steps: int | jax.Array | None = None,
    min_lr_ratio: float | jax.Array = 0.0,
) -> optax.Schedule:
    r"""``lr(t) = learning_rate * f_warmup(t) * f_decay(t)``, the paper's schedule.

    .. math::
      f_{\text{warmup}}(t) = \min(1, t / N_w), \qquad
      f_{\text{decay}}(t) = \rho + (1 - \rho)\tfrac12\Big(1 + \cos\pi
        \,\text{clip}\big(\tfrac{t - N_w}{T - N_w}, 0, 1\big)\Big)

    with :math:`N_w` = ``warmup_steps`` (0: no warmup), :math:`T` =
    ``total_steps`` (``None``: no decay) and :math:`\rho` = ``min_lr_ratio``.
    Every argument may be a scalar array (traced ones too); concrete values
    are validated here.

    Examples:
      >>> s = warmup_cosine_schedule(1.0, warmup_steps=10, total_steps=110)
      >>> [round(float(s(t)), 3) for t in (0, 5, 10, 60, 110)]
      [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    lr = _weights.concrete_scalar("learning_rate", learning_rate)
    if lr is not None and not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate!r}")
    _weights.check_period("warmup_steps", warmup_steps)
    if total_steps is not None:
        _weights.check_period("total_steps", total_steps)
        if (
            not _weights.is_traced(total_steps)
            and not _weights.is_traced(warmup_steps)
            and int(total_steps) <= int(warmup_steps)
        ):
            raise ValueError(
                f"total_steps must be None or an integer > warmup_steps ({warmup_steps}), "
                f"got {total_steps!r}"
            )
    _weights.check_unit_interval("min_lr_ratio", min_lr_ratio)

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        value = jnp.asarray(learning_rate, jnp.float32)
        warmup = jnp.asarray(warmup_steps, jnp.float32)
        value = value * jnp.where(warmup > 0, jnp.minimum(t / jnp.maximum(warmup, 1.0), 1.0), 1.0)
        if total_steps is not None:
            span = jnp.maximum(jnp.asarray(total_steps, jnp.float32) - warmup, 1.0)
            progress = jnp.clip((t - warmup) / span, 0.0, 1.0)
            ratio = jnp.asarray(min_lr_ratio, jnp.float32)
            value = value * (ratio + (1.0 - ratio) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return value

    return schedule


class ModelLearningRateState(NamedTuple):
    """State of :func:`scale_by_model_learning_rate`.

    Attributes:
      count: updates seen so far (int32).
      learning_rates: ``{model: float32}`` the rate (schedule x weight factor)
        of the latest update, or of the first one before any update; a
        cohort's is ``(k,)``.
    """

    count: jax.Array
    learning_rates: dict[str, jax.Array]


def scale_by_model_learning_rate(
    learning_rate: float | jax.Array | Callable[[jax.Array], jax.Array],
    *,
    model_weights: Mapping[str, float] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales model :math:`i`'s updates by :math:`-\text{lr}(t) \cdot n\, w_i`.

    :math:`w_i` are the model weights normalised to sum to 1 over the
    :math:`n` models, so :math:`n w_i` is 1 for every model when the weights
    are equal (the base rate is unchanged) and, for the paper's weights
    bert 1.0 / gpt2 0.8 / roberta 1.2, exactly those numbers.

    A :class:`Cohort` of ``k`` members counts as ``k`` models in :math:`n`
    and its rates are a ``(k,)`` array (one weight, or one per member).

    Args:
      learning_rate: a float, a scalar array (traced ones too) or an ``optax``
        schedule of the update count.
      model_weights: ``{model_name: weight}`` (floats or scalar arrays);
        default equal.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.
    """
    _weights.check_model_weights(model_weights)
    if not callable(learning_rate):
        _weights.concrete_scalar("learning_rate", learning_rate)
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def factors(models, cohorts):
        weights = _weights.normalized_weights(model_weights, models, cohorts)
        n = len(weights)  # every member of a cohort is a model
        if not cohorts:
            return {m: n * w for m, w in weights.items()}
        return {m: n * w for m, w in _weights.per_model(weights, cohorts).items()}

    def rates(count, models, cohorts):
        base = jnp.asarray(schedule(count), jnp.float32)
        return {m: base * f for m, f in factors(models, cohorts).items()}

    def init_fn(params):
        models = _tree.check_multi_model_tree(params)
        count = jnp.zeros([], jnp.int32)
        return ModelLearningRateState(count, rates(count, models, _cohort.cohort_sizes(params)))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        cohorts = {m: r.shape[0] for m, r in state.learning_rates.items() if jnp.ndim(r) == 1}
        lrs = rates(state.count, tuple(state.learning_rates), cohorts)
        updates = _tree.scale_models(updates, {m: -lr for m, lr in lrs.items()})
        return updates, ModelLearningRateState(optax.safe_increment(state.count), lrs)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
