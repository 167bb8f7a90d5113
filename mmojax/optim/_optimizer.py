"""The paper's full optimizer, assembled from the mmojax transformations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import (
    _accumulate,
    _align,
    _clip,
    _convergence,
    _schedule,
    _sharing,
    _sync,
    _weights,
)


class MultiModelOptimizerState(NamedTuple):
    """State of the stages of :func:`multi_model_optimizer`, one field per stage.

    The whole optimizer state is this tuple inside the sync wrapper's
    :class:`SyncState` (``inner_state``), inside :class:`AccumulateState` when
    gradients are accumulated. A disabled stage holds ``optax.EmptyState()``.
    """

    clip: Any
    share: Any
    adam: Any
    weight_decay: Any
    convergence: Any
    learning_rate: Any
    keep_non_float: Any


def _named_chain(stages: dict[str, optax.GradientTransformation]):
    """``optax.chain`` of ``stages``, keeping each stage's state in a named field."""
    stages = {k: optax.with_extra_args_support(t) for k, t in stages.items()}

    def init_fn(params):
        return MultiModelOptimizerState(**{k: t.init(params) for k, t in stages.items()})

    def update_fn(updates, state, params=None, **extra_args):
        new_state = {}
        for name, stage in stages.items():
            updates, new_state[name] = stage.update(
                updates, getattr(state, name), params, **extra_args
            )
        return updates, MultiModelOptimizerState(**new_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _keep_non_float() -> optax.GradientTransformation:
    """Zero updates for leaves that are not floating point (integer counters stay as they are)."""

    def update_fn(updates, state, params=None):
        if params is None:
            return updates, state
        return jax.tree.map(
            lambda u, p: (
                u
                if jnp.issubdtype(jnp.result_type(p), jnp.inexact)
                else jnp.zeros(jnp.shape(p), jnp.result_type(p))
            ),
            updates,
            params,
        ), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def multi_model_optimizer(
    learning_rate: float | jax.Array | Callable[[jax.Array], jax.Array] = 3e-5,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    model_weights: Mapping[str, float] | None = None,
    alpha: float = 0.2,
    beta: float = 0.1,
    sync_every: int = 10,
    warmup_steps: int = 100,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.0,
    clip_norm: float | None = None,
    gradient_accumulation_steps: int = 1,
    adaptive: bool = True,
    reduction: str = "mean",
    labels: Any = None,
    grouping: str = "role_depth",
    align_rules: Sequence[_align.AlignRule] | None = None,
    convergence_window: int = 100,
    convergence_update_every: int = 50,
    convergence_ema: float = 0.9,
    min_convergence_scale: float = 0.5,
    max_convergence_scale: float = 1.5,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The MultiModelOptimizer of the paper as one optax transformation.

    Over a multi-model tree ``{model_name: params}``, each update runs:

    1. per-model gradient clipping by the model's own global norm (``clip_norm``);
    2. gradient sharing (:func:`share_gradients`, ``alpha``);
    3. Adam moments and decoupled weight decay, as ``optax.adamw``;
    4. the per-model learning rate

       .. math::
         \text{lr}_i(t) = \text{lr}_{\text{base}} \cdot f_{\text{warmup}}(t)
           \cdot f_{\text{decay}}(t) \cdot f_{\text{conv}}(i) \cdot n\, w_i,

       with :math:`w_i` the model weights normalised to sum to 1 over the
       :math:`n` models (equal weights: factor 1, base rate unchanged),
       warmup/cosine decay from :func:`warmup_cosine_schedule` and
       :math:`f_{\text{conv}}` from :func:`scale_by_convergence`;
    5. parameter synchronisation (:func:`sync_parameters`, ``beta`` every
       ``sync_every`` updates), which wraps stages 1-4;

    A model of the tree may be a :class:`Cohort` of ``k`` stacked members:
    every stage treats each member as a model of its own (``n`` counts it,
    its weight is the cohort's number or its entry of ``k`` numbers, its
    losses, clip norm, learning rate and convergence rate are its own), with
    the parameters ``k`` separately held models would get.

    all wrapped by :func:`accumulate_gradients` when
    ``gradient_accumulation_steps > 1`` (the estimator then sees the mean loss
    of the accumulated micro-batches). Counts (warmup, sync, estimator) are in
    optimizer updates, not micro-batches. Leaves that are not floating point
    (integer counters) get zero updates and never share.

    Every hyperparameter that only enters arithmetic (``learning_rate``,
    ``b1``, ``b2``, ``eps``, ``weight_decay``, ``model_weights``, ``alpha``,
    ``beta``, ``sync_every``, ``warmup_steps``, ``total_steps``,
    ``min_lr_ratio``, ``clip_norm``, the convergence EMA and scales) may be
    a scalar array, so ``optax.inject_hyperparams(multi_model_optimizer,
    static_args=("gradient_accumulation_steps", "convergence_window",
    "convergence_update_every"))`` works and a new value never recompiles.

    With ``alpha=0``, ``beta=0`` (or ``sync_every=0``), ``adaptive=False`` and
    equal weights this is ``optax.adamw`` with the same schedule.

    Args:
      learning_rate: base rate, or a schedule of the update count (then
        ``warmup_steps``/``total_steps``/``min_lr_ratio`` are not used).
      b1, b2, eps: Adam hyperparameters.
      weight_decay: decoupled weight decay (0 disables).
      model_weights: ``{model_name: weight}``, default equal; a cohort takes
        one weight or a sequence of ``k``.
      alpha: gradient-sharing coefficient (0 disables).
      beta: synchronisation coefficient (0 disables).
      sync_every: synchronisation period in updates (0 disables).
      warmup_steps: linear warmup length in updates.
      total_steps: cosine decay horizon in updates (``None``: no decay).
      min_lr_ratio: final rate of the cosine decay, relative to the base.
      clip_norm: per-model global-norm clip (``None``: no clipping).
      gradient_accumulation_steps: micro-batches per update.
      adaptive: scale each model's rate by its convergence factor.
      reduction: gradient pool reduction, ``"mean"`` or ``"sum"``.
      labels: the sharing labels (see :func:`share_gradients`).
      grouping: which parameters share and sync: ``"role_depth"`` (default:
        canonical views of the same role, kind and relative layer; chosen from
        the reproduction's measurements, see the README), ``"role"`` (same
        role and kind, any layer) or ``"type_shape"`` (the paper's (type,
        shape) keys). Leaves no alignment rule matches fall back to
        ``"type_shape"`` among themselves (see :func:`sharing_plan`).
      align_rules: the :class:`AlignRule` s of the role groupings (``None``:
        :data:`DEFAULT_ALIGN_RULES`).
      convergence_window, convergence_update_every, convergence_ema,
      min_convergence_scale, max_convergence_scale: :func:`scale_by_convergence`
      settings.
      weight_decay_mask: as in ``optax.adamw``.
      mu_dtype: as in ``optax.adamw``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; when ``adaptive`` its
      ``update`` takes ``losses={model_name: scalar}``, and it always needs
      ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> params = {"a": {"mlp": jnp.ones(3)}, "b": {"mlp": jnp.ones(3)}}
      >>> tx = multi_model_optimizer(learning_rate=1e-2, warmup_steps=0)
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params, losses={"a": 1.0, "b": 2.0})
      >>> params = optax.apply_updates(params, updates)
      >>> {m: round(float(r), 4) for m, r in learning_rates(state).items()}
      {'a': 0.01, 'b': 0.01}

      A cohort of same-architecture models, stacked on a leading axis, is
      ``k`` models to the optimizer (see :class:`Cohort`):

      >>> import mmojax
      >>> params = {"a": mmojax.stack_models([{"mlp": jnp.ones(3)}] * 2), "b": {"mlp": jnp.ones(3)}}
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> losses = {"a": jnp.array([1.0, 1.5]), "b": 2.0}
      >>> updates, state = tx.update(grads, state, params, losses=losses)
      >>> learning_rates(state)["a"].shape
      (2,)
    """
    _weights.check_unit_interval("alpha", alpha)
    _weights.check_unit_interval("beta", beta)
    _weights.check_model_weights(model_weights)
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be a bool, got {adaptive!r}")
    schedule = (
        learning_rate
        if callable(learning_rate)
        else _schedule.warmup_cosine_schedule(
            learning_rate,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            min_lr_ratio=min_lr_ratio,
        )
    )
    off = optax.identity()
    stages = {
        "clip": off if clip_norm is None else _clip.clip_by_model_global_norm(clip_norm),
        "share": _sharing.share_gradients(
            alpha,
            model_weights=model_weights,
            labels=labels,
            reduction=reduction,
            grouping=grouping,
            align_rules=align_rules,
        ),
        "adam": optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
        "weight_decay": (
            off
            if _weights.is_static_zero(weight_decay)
            else optax.add_decayed_weights(weight_decay, weight_decay_mask)
        ),
        "convergence": _convergence.scale_by_convergence(
            convergence_window,
            convergence_update_every=convergence_update_every,
            convergence_ema=convergence_ema,
            min_convergence_scale=min_convergence_scale,
            max_convergence_scale=max_convergence_scale,
        )
        if adaptive
        else off,
        "learning_rate": _schedule.scale_by_model_learning_rate(
            schedule, model_weights=model_weights
        ),
        "keep_non_float": _keep_non_float(),
    }
    synced = _sync.sync_parameters(
        _named_chain(stages),
        beta=beta,
        sync_every=sync_every,
        model_weights=model_weights,
        labels=labels,
        grouping=grouping,
        align_rules=align_rules,
    )
    return _accumulate.accumulate_gradients(
        synced, gradient_accumulation_steps=gradient_accumulation_steps
    )


def _find_states(opt_state: Any, cls: type) -> list[Any]:
    return [
        s
        for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, cls))
        if isinstance(s, cls)
    ]


def learning_rates(opt_state: Any) -> dict[str, jax.Array]:
    """``{model_name: lr}`` of the latest update (before any: of the first).

    The rate is the schedule x weight factor x ``f_conv`` (when the state has a
    convergence estimator), i.e. what multiplied the Adam direction. A
    :class:`Cohort`'s entry is a ``(k,)`` array, member ``i`` at index ``i``
    (:func:`per_member` names them ``name/i``).

    Raises:
      ValueError: if ``opt_state`` has no per-model learning-rate state.
    """
    found = _find_states(opt_state, _schedule.ModelLearningRateState)
    if not found:
        raise ValueError("opt_state has no per-model learning rates (scale_by_model_learning_rate)")
    rates = dict(found[0].learning_rates)
    conv = _find_states(opt_state, _convergence.ConvergenceState)
    if conv:
        rates = {m: r * conv[0].scales[m] for m, r in rates.items()}
    return rates


def convergence_rates(opt_state: Any) -> dict[str, jax.Array]:
    """``{model_name: r_i}``, the convergence rates of Algorithm 3 (a cohort's: ``(k,)``).

    Raises:
      ValueError: if ``opt_state`` has no convergence estimator (``adaptive=False``).
    """
    found = _find_states(opt_state, _convergence.ConvergenceState)
    if not found:
        raise ValueError("opt_state has no convergence estimator (adaptive=False?)")
    return dict(found[0].rates)
