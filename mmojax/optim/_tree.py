"""Helpers for multi-model parameter trees ``{model_name: params_pytree}``.

Private module: the rest of the optimizer layer goes through these helpers so
that every transformation validates and flattens trees the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax


class FlatLeaf(NamedTuple):
    """One leaf of a multi-model tree, in flattening order."""

    model: str
    path: str
    shape: tuple[int, ...]
    dtype: Any
    size: int


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
    return names


def _flatten_models(tree: Mapping[str, Any]):
    return jax.tree_util.tree_flatten_with_path({name: 0 for name in tree})[0]


def flatten_leaves(tree: Mapping[str, Any]) -> tuple[list[FlatLeaf], Any]:
    """Flattens a multi-model tree into :class:`FlatLeaf` records and a treedef."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = []
    for path, leaf in with_path:
        shape = tuple(int(d) for d in getattr(leaf, "shape", ()))
        size = 1
        for d in shape:
            size *= d
        leaves.append(
            FlatLeaf(
                model=key_name(path[0]),
                path=path_string(path[1:]),
                shape=shape,
                dtype=getattr(leaf, "dtype", None),
                size=size,
            )
        )
    return leaves, treedef


def map_with_model(fn, tree: Any) -> Any:
    """``tree_map`` of ``fn(model_name, leaf)`` over a multi-model tree, keeping its structure."""
    return jax.tree_util.tree_map_with_path(lambda path, x: fn(key_name(path[0]), x), tree)
