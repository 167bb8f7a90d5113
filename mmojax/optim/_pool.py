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


# From this many members on, a pool is summed in chunks. XLA fuses a plain sum of
# elementwise terms into each of its consumers, so every member's update would re-read
# all n members (n^2 reads). Stacking the members for one contraction stops that but
# copies them (on a CPU a many-operand concatenate runs at a fraction of memcpy speed).
# Instead each chunk of at most CHUNK members is summed elementwise (one fused read of
# its members) and the few chunk sums are contracted: the contraction is computed once,
# so the members are read about once and only the chunk sums are stacked.
STACK_FROM = 4
CHUNK = 8


def _weighted_sum(xs: Sequence[Any], ws: Sequence[float], dtype) -> jax.Array:
    terms = [w * x.astype(dtype) for w, x in zip(ws, xs)]
    if len(terms) < STACK_FROM:
        return sum(terms)
    chunks = max(2, -(-len(terms) // CHUNK))
    bounds = [round(i * len(terms) / chunks) for i in range(chunks + 1)]
    partial = jnp.stack([sum(terms[a:b]) for a, b in zip(bounds, bounds[1:])])
    return jnp.tensordot(
        jnp.ones(chunks, dtype), partial, axes=1, precision=jax.lax.Precision.HIGHEST
    )


class Block(NamedTuple):
    """The members of a group that one leaf gives through one view (static).

    Attributes:
      index: the leaf's position in the flattened tree.
      view: the members' view (``None``: the whole leaf).
      positions: the members' positions in ``group.members``, by cohort slot.
      stacked: whether the block is every member of a cohort leaf (slots
        ``0 .. k-1``); else one member of a plain model.
    """

    index: int
    view: Any
    positions: tuple[int, ...]
    stacked: bool


def stacked_blocks(
    group: _plan.Group, recipe: PoolRecipe, flat: Sequence[Any]
) -> tuple[Block, ...] | None:
    """A cohort-bearing group as blocks, when it can pool without splitting member axes.

    That is when every member reads the one buffer of the whole group (the
    paper's ``type_shape`` pooling, or at most one member per model, as under
    ``role_depth``) and each cohort leaf's members are all its slots. Then the
    weighted sum runs over each stacked block's member axis (a partial sum
    per device plus one all-reduce when that axis is sharded) and every
    member is mixed in place on the stack: no member is sliced out, so
    members stay on their devices. Otherwise (``None``: no cohort, or
    leave-own-model-out pools of a cohort whose members have several views in
    the group, as under ``"role"``), the group pools member by member.
    """
    if len(recipe.buffers) != 1 or any(recipe.adds_self):
        return None
    if all(m.slot is None for m in group.members):
        return None
    by_leaf: dict[tuple[int, Any], list[int]] = {}
    for p, m in enumerate(group.members):
        by_leaf.setdefault((m.index, m.view), []).append(p)
    blocks = []
    for (index, view), positions in by_leaf.items():
        slots = [group.members[p].slot for p in positions]
        if slots == [None]:
            blocks.append(Block(index, view, tuple(positions), False))
            continue
        if None in slots or sorted(slots) != list(range(jnp.shape(flat[index])[0])):
            return None
        positions = sorted(positions, key=lambda p: group.members[p].slot)
        blocks.append(Block(index, view, tuple(positions), True))
    return tuple(blocks)


def block_values(flat: Sequence[Any], group: _plan.Group, blocks: Sequence[Block]) -> list[Any]:
    """Each block's members' views, stacked: ``(k, *shape)`` (``k = 1`` for a plain member)."""
    out = []
    for b in blocks:
        member = group.members[b.positions[0]]
        if b.stacked:
            out.append(_views.gather_stacked(flat[b.index], member.view))
        else:
            out.append(member.take(flat[b.index])[None])
    return out


def block_sum(
    xs: Sequence[Any], group: _plan.Group, blocks: Sequence[Block], weights: Mapping[str, Any]
) -> jax.Array:
    """The group's weighted sum over every block's members, in at least float32."""
    dtype = jnp.result_type(*(x.dtype for x in xs), jnp.float32)
    total = None
    for b, x in zip(blocks, xs):
        ws = [weights[group.members[p].model] for p in b.positions]
        if b.stacked:
            w = jnp.stack([jnp.asarray(v, dtype) for v in ws])
            term = jnp.tensordot(w, x.astype(dtype), axes=1, precision=jax.lax.Precision.HIGHEST)
        else:
            term = ws[0] * x[0].astype(dtype)
        total = term if total is None else total + term
    return total


def block_part(leaf: Any, member: _plan.Member, stacked: bool) -> Any:
    """The stored-orientation block(s) of ``leaf`` a block reads: ``(k, *block)`` when stacked."""
    return _views.block_stacked(leaf, member.view) if stacked else member.block(leaf)


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
        recipe = pool_recipe(group, weights)
        blocks = stacked_blocks(group, recipe, flat)
        if blocks is not None:
            pool = block_sum(block_values(flat, group, blocks), group, blocks, weights)
            if reduction == "mean":
                pool = _weights.safe_divide(pool, recipe.totals[0])
            for b in blocks:
                member = group.members[b.positions[0]]
                block = block_part(flat[b.index], member, b.stacked)
                target = _views.ungather(pool, member.view)  # one transpose per block
                mixed = (1.0 - coef) * block.astype(pool.dtype) + coef * target
                slot = _views.STACKED if b.stacked else None
                parts.setdefault(b.index, []).append((slot, member.view, mixed.astype(block.dtype)))
            continue
        xs = [m.take(flat[m.index]) for m in group.members]
        ws = [weights[m.model] for m in group.members]
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
