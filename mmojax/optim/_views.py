"""Static index maps: a canonical view of a parameter leaf, and its inverse.

A view is a pure index map of a stored leaf: an optional slice along one stored
axis (one part of a fused leaf, or the rows of a table that are really used),
then an optional transpose (a kernel stored ``(out, in)`` seen as ``(in, out)``).
Every element of the view is one element of the leaf, so writing a view back
(:func:`scatter`) is exact: elements outside every written view keep their
value bit for bit. The maps are static Python values built outside ``jit``;
inside, they are plain slices, transposes and one concatenation per leaf.
A leaf of a cohort (``k`` models stacked on axis 0) is viewed either for all
its members at once (the map shifted past axis 0: :func:`gather_stacked`, a
part with slot :data:`STACKED`), which keeps the member axis intact so a
sharded member axis needs no communication, or member by member (slot ``i``
of axis 0, then the map); :func:`scatter_slots` writes either back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class IndexMap:
    """A view of a stored leaf: ``x[start:stop]`` along ``axis``, then ``.T``.

    Attributes:
      axis: the stored axis that is sliced, or ``None`` for the whole leaf.
      start: first index of the slice (non-negative).
      stop: one past the last index of the slice (non-negative), or ``None``
        with ``axis=None``.
      transpose: whether the (2-D) slice is transposed.
      tag: display name of the slice (``"q"`` for the query part of a fused
        QKV leaf); empty: the slice bounds are shown.

    Examples:
      >>> import jax.numpy as jnp
      >>> qkv = jnp.arange(12.0).reshape(6, 2)          # stored (out=3*2, in=2)
      >>> q = IndexMap(axis=0, start=0, stop=2, transpose=True, tag="q")
      >>> str(q), q.shape((6, 2))
      ('[q].T', (2, 2))
      >>> q.gather(qkv).tolist()
      [[0.0, 2.0], [1.0, 3.0]]
      >>> bool((scatter(qkv, [(q, q.ungather(q.gather(qkv)))]) == qkv).all())
      True
    """

    axis: int | None = None
    start: int = 0
    stop: int | None = None
    transpose: bool = False
    tag: str = ""

    @property
    def is_identity(self) -> bool:
        """Whether the view is the whole leaf, untransposed."""
        return self.axis is None and not self.transpose

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """The view's shape for a leaf of shape ``stored``."""
        shape = list(stored)
        if self.axis is not None:
            shape[self.axis] = self.stop - self.start
        return tuple(reversed(shape)) if self.transpose else tuple(shape)

    def block(self, x: Any) -> jax.Array:
        """The stored-orientation block of ``x`` that the view reads (the slice only)."""
        if self.axis is None:
            return x
        return jax.lax.slice_in_dim(x, self.start, self.stop, axis=self.axis)

    def gather(self, x: Any) -> jax.Array:
        """The view of ``x``: its :meth:`block`, transposed when ``transpose``."""
        x = self.block(x)
        return x.T if self.transpose else x

    def ungather(self, v: Any) -> jax.Array:
        """A view-shaped value in stored orientation (undoes the transpose)."""
        return v.T if self.transpose else v

    def __str__(self) -> str:
        text = ""
        if self.axis is not None:
            bounds = self.tag or f"{self.start}:{self.stop}"
            text = "[" + ":, " * self.axis + bounds + "]"
        return text + (".T" if self.transpose else "")


IDENTITY = IndexMap()


def gather(x: Any, view: IndexMap | None) -> jax.Array:
    """``view.gather(x)``; ``None`` is the identity."""
    return x if view is None else view.gather(x)


def block(x: Any, view: IndexMap | None) -> jax.Array:
    """``view.block(x)``; ``None`` is the identity."""
    return x if view is None else view.block(x)


def ungather(v: Any, view: IndexMap | None) -> jax.Array:
    """``view.ungather(v)``; ``None`` is the identity."""
    return v if view is None else view.ungather(v)


def scatter(x: Any, parts: Sequence[tuple[IndexMap | None, Any]]) -> jax.Array:
    """Writes blocks back into ``x``; everything else keeps its value.

    Args:
      x: the stored leaf.
      parts: ``(view, block)`` pairs of disjoint views of ``x`` (a view of the
        whole leaf must be alone; slices share one axis), each block in
        *stored* orientation (:meth:`IndexMap.block` shape; use
        :meth:`IndexMap.ungather` on view-shaped values). Blocks are cast to
        ``x.dtype``.

    Returns:
      The leaf with each view's block replaced: the uncovered stretches of
      ``x`` and the written blocks, concatenated along the sliced axis.
    """
    if len(parts) == 1 and (parts[0][0] is None or parts[0][0].axis is None):
        return jnp.asarray(parts[0][1]).astype(x.dtype)
    axes = {view.axis for view, _ in parts}
    if len(axes) != 1 or None in axes:
        raise ValueError(f"views of one leaf must slice one axis, got {sorted(map(str, axes))}")
    axis = axes.pop()
    pieces, pos = [], 0
    for view, value in sorted(parts, key=lambda part: part[0].start):
        if view.start < pos:
            raise ValueError(f"views of one leaf overlap at index {view.start} of axis {axis}")
        if view.start > pos:
            pieces.append(jax.lax.slice_in_dim(x, pos, view.start, axis=axis))
        pieces.append(jnp.asarray(value).astype(x.dtype))
        pos = view.stop
    if pos < x.shape[axis]:
        pieces.append(jax.lax.slice_in_dim(x, pos, x.shape[axis], axis=axis))
    return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=axis)


# The slot of a part that holds every member of a cohort leaf, stacked on axis 0.
STACKED = "stacked"


def _shifted(view: IndexMap | None) -> IndexMap | None:
    """``view`` applied past a leading member axis (its slice axis moved by one)."""
    if view is None or view.axis is None:
        return None
    return dataclasses.replace(view, axis=view.axis + 1, transpose=False)


def block_stacked(x: Any, view: IndexMap | None) -> jax.Array:
    """Every member's :meth:`IndexMap.block` of a stacked leaf: ``(k, *block)``."""
    return block(x, _shifted(view))


def gather_stacked(x: Any, view: IndexMap | None) -> jax.Array:
    """Every member's view of a stacked leaf ``(k, ...)``: ``(k, *view shape)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(12.0).reshape(2, 3, 2)        # 2 members of a (3, 2) leaf
      >>> v = IndexMap(axis=0, start=1, stop=3, transpose=True)
      >>> bool((gather_stacked(x, v)[1] == v.gather(x[1])).all())
      True
    """
    x = block_stacked(x, view)
    return jnp.swapaxes(x, -1, -2) if view is not None and view.transpose else x


def ungather_stacked(v: Any, view: IndexMap | None) -> jax.Array:
    """Stacked view-shaped values in stored orientation (undoes the transpose)."""
    return jnp.swapaxes(v, -1, -2) if view is not None and view.transpose else v


def scatter_slots(x: Any, parts: Sequence[tuple[Any, IndexMap | None, Any]]) -> jax.Array:
    """:func:`scatter` for a leaf that may hold a cohort's members on its axis 0.

    Args:
      x: the stored leaf (``(k, ...)`` when the parts name slots).
      parts: ``(slot, view, block)`` triples; ``slot`` is ``None`` for a plain
        leaf (then every part's is), :data:`STACKED` for a block of every
        member (``(k, *block)``, from :func:`block_stacked`), else one
        member's index on axis 0.

    Returns:
      The leaf with the blocks written; a cohort's members without parts keep
      their values. Stacked parts alone are written without splitting the
      member axis.
    """
    if all(slot is None for slot, _, _ in parts):
        return scatter(x, [(view, value) for _, view, value in parts])
    if all(slot == STACKED for slot, _, _ in parts):
        return scatter(x, [(_shifted(view), value) for _, view, value in parts])
    by_slot: dict[int, list] = {}
    for slot, view, value in parts:
        if slot == STACKED:  # mixed with per-member parts: split it
            for i in range(x.shape[0]):
                by_slot.setdefault(i, []).append((view, value[i]))
            continue
        by_slot.setdefault(slot, []).append((view, value))
    members = [
        scatter(x[i], by_slot[i]) if i in by_slot else x[i].astype(x.dtype)
        for i in range(x.shape[0])
    ]
    return jnp.stack(members)
