"""The weighted pooling shared by gradient sharing and sync.

Weights may be Python floats (the pools are specialised to them) or traced
float32 scalars (``optax.inject_hyperparams``, a weight that changes without
recompiling); see :mod:`mmojax.optim._weights`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mmojax.optim import _plan, _views, _weights


class PoolRecipe(NamedTuple):
    r"""How the pool of each member of one group is formed (static).

    Member :math:`p` of model :math:`m(p)` pools the members :math:`S(p)`:
    all of the group when it pools ``within_model`` or has at most one member
    per model; otherwise :math:`p` itself and the other models' members.
    The pool is a weighted sum over ``buffers[reads[p]]`` (shared by every
    member that reads it), plus :math:`w_p x_p` when ``adds_self[p]``,
    divided by ``totals[p]`` (:math:`\sum_{q \in S(p)} w_q`) for ``"mean"``.

    A group has one buffer, except that under leave-own-model-out pooling a
    model with several members in the group reads one buffer of its own (the
    other models' sum).
    """

    buffers: tuple[tuple[int, ...], ...]
    reads: tuple[int, ...]
    adds_self: tuple[bool, ...]
    totals: tuple[float, ...]


def pool_recipe(group: _plan.Group, weights: Mapping[str, float]) -> PoolRecipe:
    """The static :class:`PoolRecipe` of ``group`` under normalised ``weights``."""
    models = [m.model for m in group.members]
    ws = [weights[m] for m in models]
    everyone = tuple(range(len(models)))
    if group.within_model or len(set(models)) == len(models):
        return PoolRecipe(
            (everyone,), (0,) * len(models), (False,) * len(models), (sum(ws),) * len(models)
        )
    buffers: list[tuple[int, ...]] = []
    reads, adds_self, totals = [], [], []
    for p, model in enumerate(models):
        alone = models.count(model) == 1
        pooled = everyone if alone else tuple(q for q in everyone if models[q] != model)
        if pooled not in buffers:
            buffers.append(pooled)
        reads.append(buffers.index(pooled))
        adds_self.append(not alone)
        totals.append(sum(ws[q] for q in pooled) + (0.0 if alone else ws[p]))
    return PoolRecipe(tuple(buffers), tuple(reads), tuple(adds_self), tuple(totals))


def pool_buffers(xs: Sequence[Any], ws: Sequence[float], recipe: PoolRecipe) -> list[Any]:
    """The weighted sums :math:`\\sum_q w_q x_q` of ``recipe.buffers``, in at least float32."""
    acc_dtype = jnp.result_type(*(x.dtype for x in xs), jnp.float32)
    return [
        _weighted_sum([xs[q] for q in buffer], [ws[q] for q in buffer], acc_dtype)
        for buffer in recipe.buffers
    ]


# From this many members on, a pool is one contraction over the stacked members.
# XLA fuses a plain sum of elementwise terms into each of its consumers, so every
# member's update would re-read all n members (n^2 reads); a contraction is
# computed once and then read by each member (about 4n).
STACK_FROM = 4


def _weighted_sum(xs: Sequence[Any], ws: Sequence[float], dtype) -> jax.Array:
    if len(xs) < STACK_FROM:
        return sum(w * x.astype(dtype) for w, x in zip(ws, xs))
    stacked = jnp.stack([x.astype(dtype) for x in xs])
    return jnp.tensordot(
        jnp.stack([jnp.asarray(w, dtype) for w in ws]),
        stacked,
        axes=1,
        precision=jax.lax.Precision.HIGHEST,
    )


def member_pool(
    buffers: Sequence[Any], recipe: PoolRecipe, p: int, x: Any, w: float, reduction: str = "mean"
):
    """The pool of member ``p`` (value ``x``, weight ``w``) from its group's buffers."""
    pool = buffers[recipe.reads[p]]
    if recipe.adds_self[p]:
        pool = pool + w * x.astype(pool.dtype)
    if reduction == "mean":
        pool = _weights.safe_divide(pool, recipe.totals[p])
    return pool


def mix_groups(
    flat: list[Any],
    plan: _plan.SharingPlan,
    weights: Mapping[str, Any],
    coef: Any,
    reduction: str = "mean",
) -> list[Any]:
    r"""Mixes each shared group's members towards their weighted pool.

    For a member :math:`x_p` (a leaf, or a view of one) with pool :math:`P_p`
    (:class:`PoolRecipe`), :math:`x_p \leftarrow (1 - c)\, x_p + c\, P_p`,
    computed in at least float32 and cast back to the member's dtype. Views
    are gathered and scattered back by the plan's static index maps, so the
    parts of a leaf outside every shared view keep their values exactly.

    Args:
      flat: the flattened multi-model leaves (not modified).
      plan: the static plan whose ``shared_groups`` are mixed.
      weights: normalised model weights (per member of a cohort).
      coef: the mixing coefficient ``c``.
      reduction: ``"mean"`` or ``"sum"``.

    Returns:
      A new flat list with the members replaced.
    """
    parts: dict[int, list] = {}
    for group in plan.shared_groups:
        xs = [m.take(flat[m.index]) for m in group.members]
        ws = [weights[m.model] for m in group.members]
        recipe = pool_recipe(group, weights)
        buffers = pool_buffers(xs, ws, recipe)
        for p, (member, x) in enumerate(zip(group.members, xs)):
            pool = member_pool(buffers, recipe, p, x, ws[p], reduction)
            # Mixed in the member's stored orientation: the pool is transposed
            # (once per member), the member itself only sliced.
            block = member.block(flat[member.index])
            pool = _views.ungather(pool, member.view)
            mixed = (1.0 - coef) * block.astype(pool.dtype) + coef * pool
            parts.setdefault(member.index, []).append(
                (member.slot, member.view, mixed.astype(block.dtype))
            )
    out = list(flat)
    for index, leaf_parts in parts.items():
        out[index] = _views.scatter_slots(flat[index], leaf_parts)
    return out
