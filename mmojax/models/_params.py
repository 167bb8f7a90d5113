"""Parameter counting, naming and a human-readable size table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

PyTree = Any

# Path components marking embedding tables: BERT/RoBERTa ``embeddings`` module
# (word, position, token-type tables and their LayerNorm), GPT-2 ``wte``/``wpe``.
_EMBEDDING_KEYS = frozenset({"embeddings", "wte", "wpe"})
# A GPT-2 block's Conv1D kernel, with or without the task model's ``transformer/`` prefix.
_CONV1D_KERNEL = re.compile(
    r"(?:^|/)h/\d+/(?:attn|mlp|crossattention)/(?:c_attn|c_proj|c_fc|q_attn)/kernel$"
)


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
    """Paths of GPT-2's ``Conv1D`` kernels (``c_attn``/``c_proj``/``c_fc``/``q_attn``).

    Hugging Face's Flax GPT-2 stores these kernels ``(out, in)``, the transpose of
    ``nn.Dense`` (and of every other kernel); mmojax's models hold them ``(in, out)``
    (see :func:`swap_conv1d_layout`), so that all kernels of all architectures are
    oriented alike.

    Args:
        params: Parameter pytree.

    Returns:
        Matching "/"-joined paths, in pytree order:
        ``[transformer/]h/<i>/{attn,mlp}/{c_attn,c_proj,c_fc,q_attn}/kernel``.
    """
    return [name for name in flatten_params(params) if _CONV1D_KERNEL.search(name)]


def swap_conv1d_layout(params: PyTree) -> PyTree:
    """Swaps the last two axes of every GPT-2 ``Conv1D`` kernel (its own inverse).

    Converts a GPT-2 parameter tree between Hugging Face's Flax layout (kernels
    ``(out, in)``) and the layout mmojax's models hold (``(in, out)``, as
    ``nn.Dense``): :func:`build_model` and :func:`load_pretrained` give the latter,
    a model's ``apply_fn`` swaps back inside the jitted forward pass (XLA folds the
    transpose into the matrix product) and :func:`export_model` writes Hugging
    Face's. A stacked cohort's kernels ``(k, ..)`` swap their last two axes.

    Args:
        params: Parameter pytree (arrays or ``jax.ShapeDtypeStruct``).

    Returns:
        A new pytree where the kernels listed by :func:`conv1d_kernel_paths`
        have their last two axes swapped; other leaves are shared with ``params``.
    """
    targets = set(conv1d_kernel_paths(params))

    def swap(path: Any, leaf: Any) -> Any:
        if "/".join(_key_str(k) for k in path) not in targets:
            return leaf
        if isinstance(leaf, jax.ShapeDtypeStruct):
            shape = (*leaf.shape[:-2], leaf.shape[-1], leaf.shape[-2])
            return jax.ShapeDtypeStruct(shape, leaf.dtype, sharding=leaf.sharding)
        return leaf.swapaxes(-1, -2)

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
