"""Algorithm 1 of the paper: shape-aware gradient sharing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import optax

from mmojax.optim import _align, _plan, _pool, _weights

REDUCTIONS = ("mean", "sum")


class ShareGradientsState(NamedTuple):
    """``share_gradients`` keeps no state: the plan is static."""


def share_gradients(
    alpha: float | jax.Array = 0.2,
    *,
    model_weights: Mapping[str, float] | None = None,
    labels: Any = None,
    reduction: str = "mean",
    grouping: str = "type_shape",
    align_rules: Sequence[_align.AlignRule] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Pools the gradients of compatible leaves across models (Algorithm 1).

    For every key :math:`k` whose members :math:`p` come from at least two
    models, with normalised model weights :math:`w_i` (sum 1 over models):

    .. math::
      G_k = \sum_{p \in k} w_{m(p)} \nabla p \;\Big/\; \sum_{p \in k} w_{m(p)}
      \quad (\text{mean; "sum" omits the division}),
      \qquad \nabla p \leftarrow (1 - \alpha)\, \nabla p + \alpha\, G_k .

    The members are the leaves of one ``(label, shape)`` under ``grouping=
    "type_shape"`` (the paper), or canonical *views* of leaves under
    ``"role"`` / ``"role_depth"`` (see :func:`sharing_plan`): a transposed
    kernel, one slice of a fused QKV leaf. There the sum runs over :math:`p`
    itself and the *other* models' members of :math:`k` (a model never pools
    two of its own leaves), and the mixed views are scattered back into their
    leaves exactly.

    ``"mean"`` keeps the pooled gradient on the scale of one member whatever
    the number of members; ``"sum"`` is the paper's literal sum. Keys with
    members in a single model are left untouched, so one model alone is an
    identity.

    Leaves that are not floating point never pool. Each member of a
    :class:`Cohort` pools as a separately held model would (its weight: the
    cohort's number, or its entry of the cohort's ``k`` numbers).

    Args:
      alpha: mixing coefficient in [0, 1] (the paper: 0.2); a float or a scalar
        array (traced ones too: ``optax.inject_hyperparams(share_gradients)``
        holds it in the state, and a new value does not recompile). A Python
        0 is the identity at no cost.
      model_weights: ``{model_name: weight}`` (floats or scalar arrays),
        default all 1.0; normalised to sum to 1 over the models of the tree.
      labels: ``None`` (``classify_parameters``), a label tree or a callable
        ``params -> label tree``; leaves sharing ``(label, shape)`` pool
        (under the role groupings: only the leaves no alignment rule matches).
      reduction: ``"mean"`` or ``"sum"``.
      grouping: ``"type_shape"`` (default), ``"role"`` or ``"role_depth"``.
      align_rules: the :class:`AlignRule` s of the role groupings (``None``:
        :data:`DEFAULT_ALIGN_RULES`).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> grads = {"a": {"mlp": jnp.array([1.0, 1.0])}, "b": {"mlp": jnp.array([3.0, 3.0])}}
      >>> tx = share_gradients(alpha=0.5)
      >>> shared, _ = tx.update(grads, tx.init(grads))
      >>> shared["a"]["mlp"].tolist(), shared["b"]["mlp"].tolist()
      ([1.5, 1.5], [2.5, 2.5])
      >>> import optax  # alpha in the state: changing it does not recompile
      >>> tx = optax.inject_hyperparams(share_gradients)(alpha=0.5)
      >>> shared, _ = tx.update(grads, tx.init(grads))
      >>> shared["b"]["mlp"].tolist()
      [2.5, 2.5]
    """
    _weights.check_unit_interval("alpha", alpha)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    _weights.check_model_weights(model_weights)
    _plan.check_grouping(grouping)
    align_rules = _align.check_rules(align_rules)

    def init_fn(params):
        _plan.validate_at_init(params, model_weights, labels, grouping, align_rules)
        return ShareGradientsState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        if _weights.is_static_zero(alpha):
            return updates, state
        plan = _plan.cached_plan(updates, labels, grouping, align_rules)
        if not plan.shared_groups:
            return updates, state
        weights = plan.weights(model_weights)
        flat, treedef = jax.tree_util.tree_flatten(updates)
        flat = _pool.mix_groups(flat, plan, weights, alpha, reduction)
        return jax.tree_util.tree_unflatten(treedef, flat), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
