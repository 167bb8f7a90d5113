"""The paper's full optimizer, assembled from the mmojax transformations."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import optax

from mmojax import _accumulate, _align, _convergence, _pool, _schedule, _sharing, _sync


class MultiModelOptimizerState(NamedTuple):
    """State of :func:`multi_model_optimizer`, one field per stage.

    A disabled stage holds ``optax.EmptyState()``.
    """

    clip: Any
    share: Any
    adam: Any
    weight_decay: Any
    convergence: Any
    learning_rate: Any
    sync: Any


def _stages(stages: dict[str, optax.GradientTransformation],
            sync: tuple[int, Callable[[Any, Any], Any]] | None = None):
    """Chains ``stages`` in order, keeping each stage's state in a named field.

    With ``sync = (every, synced)`` the ``"sync"`` stage is not run as a
    transformation: one ``lax.cond`` around the whole update picks, every
    ``every``-th update, the pipeline followed by ``synced(updates, params)``,
    and otherwise the plain pipeline, so off-sync updates cost what the
    pipeline alone costs (a ``cond`` inside the sync stage would have to
    materialise and pass through the updates).
    """
    stages = {k: optax.with_extra_args_support(t) for k, t in stages.items()}

    def init_fn(params):
        return MultiModelOptimizerState(**{k: t.init(params) for k, t in stages.items()})

    def run(updates, state, params, extra_args, do_sync):
        new_state = {}
        for name, stage in stages.items():
            if sync is not None and name == "sync":
                new_state[name] = _sync.SyncState(optax.safe_increment(state.sync.count))
                if do_sync:
                    updates = sync[1](updates, params)
                continue
            updates, new_state[name] = stage.update(
                updates, getattr(state, name), params, **extra_args)
        return updates, MultiModelOptimizerState(**new_state)

    def update_fn(updates, state, params=None, **extra_args):
        if sync is None:
            return run(updates, state, params, extra_args, False)
        if params is None:
            raise ValueError("multi_model_optimizer needs params: call "
                             "update(updates, state, params)")
        is_sync = optax.safe_increment(state.sync.count) % sync[0] == 0
        return jax.lax.cond(is_sync,
                            lambda: run(updates, state, params, extra_args, True),
                            lambda: run(updates, state, params, extra_args, False))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def multi_model_optimizer(
    learning_rate: float | Callable[[jax.Array], jax.Array] = 3e-5,
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
    min_conv_scale: float = 0.5,
    max_conv_scale: float = 1.5,
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
       ``sync_every`` updates), last;

    all wrapped by :func:`accumulate_gradients` when
    ``gradient_accumulation_steps > 1`` (the estimator then sees the mean loss
    of the accumulated micro-batches). Counts (warmup, sync, estimator) are in
    optimizer updates, not micro-batches.

    With ``alpha=0``, ``beta=0`` (or ``sync_every=0``), ``adaptive=False`` and
    equal weights this is ``optax.adamw`` with the same schedule.

    Args:
      learning_rate: base rate, or a schedule of the update count (then
        ``warmup_steps``/``total_steps``/``min_lr_ratio`` are not used).
      b1, b2, eps: Adam hyperparameters.
      weight_decay: decoupled weight decay (0 disables).
      model_weights: ``{model_name: weight}``, default equal.
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
      min_conv_scale, max_conv_scale: :func:`scale_by_convergence` settings.
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
    """
    _pool.check_unit_interval("alpha", alpha)
    _pool.check_unit_interval("beta", beta)
    _pool.check_weight_values(model_weights)
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be a bool, got {adaptive!r}")
    schedule = (
        learning_rate
        if callable(learning_rate)
        else _schedule.warmup_cosine_schedule(learning_rate, warmup_steps, total_steps,
                                              min_lr_ratio)
    )
    off = optax.identity()
    # Validated even when disabled, so a bad `sync_every` is reported.
    sync = _sync.sync_parameters(beta, sync_every, model_weights, labels, grouping, align_rules)
    stages = {
        "clip": off if clip_norm is None else _accumulate.clip_by_model_global_norm(clip_norm),
        "share": _sharing.share_gradients(alpha, model_weights, labels, reduction, grouping,
                                          align_rules),
        "adam": optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
        "weight_decay": (optax.add_decayed_weights(weight_decay, weight_decay_mask)
                         if weight_decay else off),
        "convergence": _convergence.scale_by_convergence(
            convergence_window, convergence_update_every, convergence_ema,
            min_conv_scale, max_conv_scale) if adaptive else off,
        "learning_rate": _schedule.scale_by_model_learning_rate(schedule, model_weights),
        "sync": sync if beta > 0 and sync_every > 0 else off,
    }
    fused_sync = None
    if beta > 0 and sync_every > 0:
        fused_sync = (sync_every, functools.partial(
            _sync.synced_updates, beta=beta, model_weights=model_weights, labels=labels,
            grouping=grouping, align_rules=align_rules))
    return _accumulate.accumulate_gradients(_stages(stages, fused_sync),
                                            gradient_accumulation_steps)


def _find_states(opt_state: Any, cls: type) -> list[Any]:
    return [
        s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, cls))
        if isinstance(s, cls)
    ]


def learning_rates(opt_state: Any) -> dict[str, jax.Array]:
    """``{model_name: lr}`` of the latest update (before any: of the first).

    The rate is the schedule x weight factor x ``f_conv`` (when the state has a
    convergence estimator), i.e. what multiplied the Adam direction.

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
    """``{model_name: r_i}``, the convergence rates of Algorithm 3.

    Raises:
      ValueError: if ``opt_state`` has no convergence estimator (``adaptive=False``).
    """
    found = _find_states(opt_state, _convergence.ConvergenceState)
    if not found:
        raise ValueError("opt_state has no convergence estimator (adaptive=False?)")
    return dict(found[0].rates)
