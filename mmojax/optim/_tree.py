"""Helpers for multi-model parameter trees ``{model_name: params_pytree}``.

Private module: the rest of the optimizer layer goes through these helpers so
that every transformation validates and flattens trees the same way. A model
may be a :class:`~mmojax.optim._cohort.Cohort` (``k`` stacked members): its
per-model quantities are then ``(k,)`` arrays, broadcast along the leaves'
leading axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mmojax.optim import _cohort


class FlatLeaf(NamedTuple):
    """One leaf of a multi-model tree, in flattening order.

    For a leaf of a cohort, ``path`` is its path inside one member, ``shape``
    and ``size`` are one member's (the leading model axis removed) and
    ``slots`` is the number of members ``k`` (``None`` for a plain model).
    """

    model: str
    path: str
    shape: tuple[int, ...]
    dtype: Any
    size: int
    slots: int | None = None


def key_name(entry: Any) -> str:
    """Returns the readable name of one path entry of ``tree_flatten_with_path``."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_string(path: tuple[Any, ...]) -> str:
    """Joins a key path with ``/`` (``('encoder', 'layer', '0')`` -> ``encoder/layer/0``)."""
    return "/".join(key_name(entry) for entry in path)


def check_multi_model_tree(tree: Any, what: str = "params") -> tuple[str, ...]:
    """Validates a multi-model tree and returns its model names in tree order.

    Raises:
        TypeError: if ``tree`` is not a mapping or a model name is not a string.
        ValueError: if ``tree`` is empty or a model has no array leaves.
    """
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"{what} must be a mapping {{model_name: params_pytree}}, got {type(tree).__name__}"
        )
    if not tree:
        raise ValueError(f"{what} is empty: pass at least one model, {{model_name: params}}")
    for name in tree:
        if not isinstance(name, str):
            raise TypeError(f"model names in {what} must be strings, got {name!r}")
    # Tree order of a mapping's keys is sorted order; use JAX's own flattening.
    names = tuple(key_name(path[0]) for path, _ in _flatten_models(tree))
    for name in tree:
        if not jax.tree_util.tree_leaves(tree[name]):
            raise ValueError(f"model {name!r} in {what} has no parameters")
    sizes = _cohort.cohort_sizes(tree)
    for name, k in sizes.items():
        clash = [_cohort.member_name(name, i) for i in range(k)]
        clash = [m for m in clash if m in tree]
        if clash:
            raise ValueError(
                f"model names {clash} in {what} clash with the members of cohort {name!r}"
            )
    return names


def member_names(tree: Mapping[str, Any]) -> tuple[str, ...]:
    """The models of a multi-model tree with each cohort expanded: ``bert/0, bert/1, gpt2``."""
    sizes = _cohort.cohort_sizes(tree)
    out = []
    for name in check_multi_model_tree(tree):
        if name in sizes:
            out.extend(_cohort.member_name(name, i) for i in range(sizes[name]))
        else:
            out.append(name)
    return tuple(out)


def _flatten_models(tree: Mapping[str, Any]):
    return jax.tree_util.tree_flatten_with_path({name: 0 for name in tree})[0]


def flatten_leaves(tree: Mapping[str, Any]) -> tuple[list[FlatLeaf], Any]:
    """Flattens a multi-model tree into :class:`FlatLeaf` records and a treedef."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    sizes = _cohort.cohort_sizes(tree)
    leaves = []
    for path, leaf in with_path:
        model = key_name(path[0])
        shape = tuple(int(d) for d in getattr(leaf, "shape", ()))
        slots = sizes.get(model)
        if slots is not None:  # skip the Cohort node's key and the model axis
            path, shape = path[1:], shape[1:]
        size = 1
        for d in shape:
            size *= d
        leaves.append(
            FlatLeaf(
                model=model,
                path=path_string(path[1:]),
                shape=shape,
                dtype=getattr(leaf, "dtype", None),
                size=size,
                slots=slots,
            )
        )
    return leaves, treedef


def map_with_model(fn, tree: Any) -> Any:
    """``tree_map`` of ``fn(model_name, leaf)`` over a multi-model tree, keeping its structure."""
    return jax.tree_util.tree_map_with_path(lambda path, x: fn(key_name(path[0]), x), tree)


def along_members(value: Any, leaf: Any) -> Any:
    """A per-model value broadcast against ``leaf``: a cohort's ``(k,)`` along axis 0."""
    if jnp.ndim(value) == 0:
        return value
    return jnp.reshape(value, jnp.shape(value) + (1,) * (jnp.ndim(leaf) - 1))


def scale_models(tree: Any, scales: Mapping[str, Any]) -> Any:
    """Each model's leaves times its scale (a cohort's ``(k,)`` scales member by member)."""
    return map_with_model(lambda m, u: (u * along_members(scales[m], u)).astype(u.dtype), tree)


def model_norms(tree: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Each model's global L2 norm; a cohort's is ``(k,)``, one per member."""
    out = {}
    for name, value in tree.items():
        if isinstance(value, _cohort.Cohort):
            axes = lambda x: tuple(range(1, x.ndim))  # noqa: E731
        else:
            axes = lambda x: None  # noqa: E731
        # As optax.tree.norm: the square root of the sum of the leaves' squared sums.
        out[name] = jnp.sqrt(
            sum(jnp.sum(jnp.square(x), axis=axes(x)) for x in jax.tree_util.tree_leaves(value))
        )
    return out


def per_model(tree: Mapping[str, Any], value: Any, dtype: Any, shape=()) -> dict[str, jax.Array]:
    """``{model: full(shape, value)}``; a cohort's entry gets the leading axis ``k``."""
    sizes = _cohort.cohort_sizes(tree)
    return {
        name: jnp.full(((sizes[name],) if name in sizes else ()) + tuple(shape), value, dtype)
        for name in check_multi_model_tree(tree)
    }
