"""Parameter counting, naming and a human-readable size table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

PyTree = Any

# Path components marking embedding tables: BERT/RoBERTa ``embeddings`` module
# (word, position, token-type tables and their LayerNorm), GPT-2 ``wte``/``wpe``.
_EMBEDDING_KEYS = frozenset({"embeddings", "wte", "wpe"})
_CONV1D_LAYERS = frozenset({"c_attn", "c_proj", "c_fc", "q_attn"})


def _key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flatten_params(params: PyTree, sep: str = "/") -> dict[str, Any]:
    """Flattens a parameter pytree into ``{"a/b/kernel": leaf}``.

    Args:
        params: Parameter pytree (nested dicts).
        sep: Separator between path components.

    Returns:
        Leaves keyed by their joined path, in pytree order.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {sep.join(_key_str(k) for k in path): leaf for path, leaf in leaves}


def conv1d_kernel_paths(params: PyTree) -> list[str]:
    """Paths of GPT-2 ``FlaxConv1D`` kernels, stored as ``(out, in)``.

    Hugging Face's Flax GPT-2 keeps ``c_attn``/``c_proj``/``c_fc``/``q_attn``
    kernels transposed relative to ``nn.Dense`` (``(in, out)``), so e.g.
    ``mlp/c_proj/kernel`` has the same shape as BERT's
    ``intermediate/dense/kernel``. Code matching parameters across
    architectures by shape can use these paths (or :func:`swap_conv1d_layout`)
    to compare like with like.

    Args:
        params: Parameter pytree.

    Returns:
        Matching "/"-joined paths under a ``transformer`` node, in pytree order.
    """
    paths = []
    for name in flatten_params(params):
        parts = name.split("/")
        if (
            len(parts) >= 3
            and "transformer" in parts
            and parts[-1] == "kernel"
            and parts[-2] in _CONV1D_LAYERS
        ):
            paths.append(name)
    return paths


def swap_conv1d_layout(params: PyTree) -> PyTree:
    """Transposes every GPT-2 ``FlaxConv1D`` kernel (its own inverse).

    Args:
        params: Parameter pytree.

    Returns:
        A new pytree where the kernels listed by :func:`conv1d_kernel_paths`
        are transposed (``(out, in)`` <-> ``(in, out)``); other leaves are
        shared with ``params``.
    """
    targets = set(conv1d_kernel_paths(params))

    def swap(path: Any, leaf: Any) -> Any:
        name = "/".join(_key_str(k) for k in path)
        return leaf.T if name in targets else leaf

    return jax.tree_util.tree_map_with_path(swap, params)


def parameter_count(params: PyTree) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params)))


def parameter_breakdown(params: PyTree) -> dict[str, int]:
    """Splits the parameter count into embedding and non-embedding parts.

    Args:
        params: Parameter pytree with Hugging Face names.

    Returns:
        ``{"total": n, "embedding": e, "rest": n - e}``, where embedding
        parameters are those under an ``embeddings``, ``wte`` or ``wpe`` node.
    """
    total = embedding = 0
    for name, leaf in flatten_params(params).items():
        size = int(np.prod(np.shape(leaf)))
        total += size
        if _EMBEDDING_KEYS.intersection(name.split("/")):
            embedding += size
    return {"total": total, "embedding": embedding, "rest": total - embedding}


def _as_list(models: Mapping[str, Any] | Iterable[Any]) -> list[Any]:
    if isinstance(models, Mapping):
        return list(models.values())
    return list(models)


def parameter_table(models: Mapping[str, Any] | Iterable[Any]) -> str:
    """Formats a table of model sizes for logs and reports.

    Args:
        models: ``{name: Model}`` or an iterable of ``Model`` objects (anything
            with ``name``, ``config``, ``task`` and ``params`` attributes).

    Returns:
        A multi-line string with one row per model (name, arch, task,
        hidden/layers/heads/intermediate, parameters in millions split into
        embedding and rest) and a total row.
    """
    header = (
        f"{'model':<10} {'arch':<8} {'task':<21} {'hidden':>6} {'layers':>6} {'heads':>5} "
        f"{'inter':>6} {'params(M)':>10} {'embed(M)':>9} {'rest(M)':>8}"
    )
    rows = [header, "-" * len(header)]
    grand = {"total": 0, "embedding": 0, "rest": 0}
    for model in _as_list(models):
        cfg = model.config
        counts = parameter_breakdown(model.params)
        for key in grand:
            grand[key] += counts[key]
        rows.append(
            f"{model.name:<10} {cfg.arch:<8} {model.task:<21} {cfg.hidden:>6} {cfg.layers:>6} "
            f"{cfg.heads:>5} {cfg.intermediate:>6} {counts['total'] / 1e6:>10.3f} "
            f"{counts['embedding'] / 1e6:>9.3f} {counts['rest'] / 1e6:>8.3f}"
        )
    rows.append("-" * len(header))
    rows.append(
        f"{'total':<10} {'':<8} {'':<21} {'':>6} {'':>6} {'':>5} {'':>6} "
        f"{grand['total'] / 1e6:>10.3f} {grand['embedding'] / 1e6:>9.3f} "
        f"{grand['rest'] / 1e6:>8.3f}"
    )
    return "\n".join(rows)
