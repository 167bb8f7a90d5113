"""Model weights and the weighted pooling shared by gradient sharing and sync."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from mmojax import _plan


def check_weight_values(model_weights: Mapping[str, float] | None) -> None:
    """Eagerly validates ``{model_name: weight}`` (names are checked at init)."""
    if model_weights is None:
        return
    if not isinstance(model_weights, Mapping):
        raise TypeError(
            f"model_weights must be a mapping {{model_name: weight}}, got "
            f"{type(model_weights).__name__}"
        )
    for name, weight in model_weights.items():
        if not isinstance(name, str):
            raise TypeError(f"model_weights keys must be model names (str), got {name!r}")
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise TypeError(f"model weight of {name!r} must be a number, got {weight!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"model weight of {name!r} must be finite and >= 0, got {weight!r}"
            )
    if model_weights and sum(float(w) for w in model_weights.values()) <= 0:
        raise ValueError(f"model_weights must not all be zero, got {dict(model_weights)}")


def normalized_weights(
    model_weights: Mapping[str, float] | None, models: Sequence[str]
) -> dict[str, float]:
    """Weights normalised to sum to 1 over ``models`` (default: equal).

    Models missing from ``model_weights`` get weight 1.0 before normalising.

    Raises:
      ValueError: if ``model_weights`` names a model that is not in ``models``.
    """
    check_weight_values(model_weights)
    model_weights = dict(model_weights or {})
    unknown = sorted(set(model_weights) - set(models))
    if unknown:
        raise ValueError(
            f"model_weights names unknown models {unknown}; the parameter tree has "
            f"{list(models)}"
        )
    raw = {m: float(model_weights.get(m, 1.0)) for m in models}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"model weights of {list(models)} sum to zero")
    return {m: raw[m] / total for m in models}


def check_unit_interval(name: str, value: float) -> None:
    """Raises ``ValueError`` unless ``0 <= value <= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def group_pool(xs: Sequence[Any], ws: Sequence[float], reduction: str = "mean"):
    r"""The weighted pool of one group's members, in at least float32.

    .. math::
      P = \sum_j w_j x_j \quad (\text{sum}), \qquad
      P = \sum_j w_j x_j / \sum_j w_j \quad (\text{mean}).

    One buffer per group (the sum is accumulated in place by XLA), never one per
    member.
    """
    acc_dtype = jnp.result_type(*(x.dtype for x in xs), jnp.float32)
    pool = sum(w * x.astype(acc_dtype) for w, x in zip(ws, xs))
    if reduction == "mean":
        total = sum(ws)
        pool = pool / total if total > 0 else jnp.zeros_like(pool)
    return pool


def mix_groups(
    flat: list[Any],
    plan: _plan.SharingPlan,
    weights: Mapping[str, float],
    coef: float,
    reduction: str = "mean",
) -> list[Any]:
    r"""Mixes each shared group's members towards their weighted pool.

    For a group with members :math:`x_j` of models :math:`m(j)` and pool
    :math:`P` (:func:`group_pool`), :math:`x_j \leftarrow (1 - c)\, x_j + c\, P`,
    computed in at least float32 and cast back to each member's dtype.

    Args:
      flat: the flattened multi-model leaves (not modified).
      plan: the static plan whose ``shared_groups`` are mixed.
      weights: normalised model weights.
      coef: the mixing coefficient ``c``.
      reduction: ``"mean"`` or ``"sum"``.

    Returns:
      A new flat list with the members replaced.
    """
    out = list(flat)
    for group in plan.shared_groups:
        xs = [flat[m.index] for m in group.members]
        pool = group_pool(xs, [weights[m.model] for m in group.members], reduction)
        for member, x in zip(group.members, xs):
            mixed = (1.0 - coef) * x.astype(pool.dtype) + coef * pool
            out[member.index] = mixed.astype(x.dtype)
    return out
