"""Model weights and scalar hyperparameters: eager checks that also accept arrays.

Hyperparameters that only enter arithmetic (``alpha``, ``beta``, the model
weights, the learning rate, ``sync_every``) may be Python numbers or JAX
arrays, traced ones included, so ``optax.inject_hyperparams`` can hold them in
the optimizer state and a change never recompiles. A concrete value is
checked here, eagerly; a traced one cannot be inspected and is used as given.
Structural hyperparameters (buffer sizes, the number of accumulated
micro-batches) must be static: :func:`static_int` says so by name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a tracer (its value is unknown until run time)."""
    return isinstance(value, jax.core.Tracer)


def concrete_scalar(name: str, value: Any) -> float | None:
    """``value`` as a Python float, or ``None`` when it is traced.

    Raises:
      TypeError: if ``value`` is neither a real number nor a scalar array.
    """
    if is_traced(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
        return float(np.asarray(value))
    raise TypeError(f"{name} must be a number or a scalar array, got {value!r}")


def check_unit_interval(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``0 <= value <= 1`` (traced values pass)."""
    x = concrete_scalar(name, value)
    if x is not None and not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {x}")


def is_static_zero(value: Any) -> bool:
    """Whether ``value`` is a concrete zero: a stage it scales can be skipped at trace time."""
    return not is_traced(value) and concrete_scalar("value", value) == 0.0


def static_int(name: str, value: Any, minimum: int) -> int:
    """A structural integer hyperparameter (a buffer size, a micro-batch count).

    Raises:
      TypeError: if ``value`` is traced (e.g. injected by
        ``optax.inject_hyperparams`` without ``static_args``).
      ValueError: if it is not an integer ``>= minimum``.
    """
    if is_traced(value):
        raise TypeError(
            f"{name} sets a buffer size or the program's structure and must be a static "
            f"integer; with optax.inject_hyperparams pass static_args=({name!r}, ...)"
        )
    if (
        isinstance(value, (jax.Array, np.ndarray, np.generic))
        and np.ndim(value) == 0
        and np.issubdtype(np.asarray(value).dtype, np.integer)
    ):
        value = int(np.asarray(value))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_period(name: str, value: Any) -> None:
    """A period counted in updates (``sync_every``): an integer >= 0, or a traced array."""
    if is_traced(value):
        return
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) and np.ndim(value) == 0:
        if not np.issubdtype(np.asarray(value).dtype, np.integer):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        value = int(np.asarray(value))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _weight_values(name: str, weight: Any) -> list[float] | None:
    """The concrete values of one model's weight: one, or a cohort's ``k``; ``None`` if traced."""
    if is_traced(weight):
        if jnp.ndim(weight) > 1:
            raise TypeError(f"model weight of {name!r} must be a number or a 1-D sequence")
        return None
    if isinstance(weight, (list, tuple)) or (
        isinstance(weight, (jax.Array, np.ndarray)) and np.ndim(weight) == 1
    ):
        values = []
        for i, w in enumerate(weight):
            try:
                value = concrete_scalar(f"model weight {i} of {name!r}", w)
            except (TypeError, ValueError):
                raise TypeError(
                    f"model weight of {name!r} must be a number or a 1-D sequence of numbers, "
                    f"got {weight!r}"
                ) from None
            if value is None:
                return None
            values.append(value)
        if not values:
            raise ValueError(f"model weight of {name!r} is an empty sequence")
        return values
    try:
        value = concrete_scalar(f"model weight of {name!r}", weight)
    except (TypeError, ValueError):
        raise TypeError(f"model weight of {name!r} must be a number, got {weight!r}") from None
    return None if value is None else [value]


def check_model_weights(model_weights: Mapping[str, Any] | None) -> None:
    """Eagerly validates ``{model_name: weight}`` (names are checked against the tree at init).

    A weight is a number, or for a cohort of ``k`` members (see
    :class:`~mmojax.optim._cohort.Cohort`) a number for all of them or a 1-D
    sequence of ``k`` numbers, one per member.
    """
    if model_weights is None:
        return
    if not isinstance(model_weights, Mapping):
        raise TypeError(
            f"model_weights must be a mapping {{model_name: weight}}, got "
            f"{type(model_weights).__name__}"
        )
    values = []
    for name, weight in model_weights.items():
        if not isinstance(name, str):
            raise TypeError(f"model_weights keys must be model names (str), got {name!r}")
        found = _weight_values(name, weight)
        if found is None:
            return  # traced: nothing more can be checked
        for value in found:
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"model weight of {name!r} must be finite and >= 0, got {weight!r}"
                )
        values.extend(found)
    if values and sum(values) <= 0:
        raise ValueError(f"model_weights must not all be zero, got {dict(model_weights)}")


def normalized_weights(
    model_weights: Mapping[str, Any] | None,
    models: Sequence[str],
    cohorts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Weights normalised to sum to 1 over the models, each member of a cohort one model.

    Models missing from ``model_weights`` get weight 1.0 before normalising. A
    cohort ``c`` of ``k`` members (``cohorts[c] == k``) takes a number (every
    member) or ``k`` numbers, and its members come back as ``c/0`` ...
    ``c/{k-1}``, so the weights are those of ``k`` separately held models.
    Concrete weights come back as Python floats (the pooling is then
    specialised to them); if any weight is traced, all come back as float32
    scalars computed at run time.

    Args:
      model_weights: ``{model_name: weight}`` or ``None`` (equal).
      models: the tree's model names (a cohort once).
      cohorts: ``{cohort_name: k}`` for the models that are cohorts.

    Returns:
      ``{member_name: weight}`` in tree order, cohorts expanded.

    Raises:
      ValueError: if ``model_weights`` names a model that is not in ``models``,
        or a cohort's sequence of weights does not have ``k`` entries.
    """
    check_model_weights(model_weights)
    cohorts = dict(cohorts or {})
    model_weights = dict(model_weights or {})
    unknown = sorted(set(model_weights) - set(models))
    if unknown:
        raise ValueError(
            f"model_weights names unknown models {unknown}; the parameter tree has {list(models)}"
        )
    raw: dict[str, Any] = {}
    for m in models:
        weight = model_weights.get(m, 1.0)
        if m not in cohorts:
            if np.ndim(weight) != 0:
                raise ValueError(
                    f"model weight of {m!r} must be a number ({m!r} is no Cohort), got {weight!r}"
                )
            raw[m] = weight
            continue
        k = cohorts[m]
        if np.ndim(weight) == 0:
            per = [weight] * k
        elif len(weight) != k:
            raise ValueError(
                f"model weight of cohort {m!r} must be a number or {k} numbers, got {len(weight)}"
            )
        else:
            per = [weight[i] for i in range(k)]
        for i, w in enumerate(per):
            raw[f"{m}/{i}"] = w
    if any(is_traced(w) for w in raw.values()):
        raw = {m: jnp.asarray(w, jnp.float32) for m, w in raw.items()}
        total = sum(raw.values())
        return {m: w / total for m, w in raw.items()}
    raw = {m: concrete_scalar(m, w) for m, w in raw.items()}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"model weights of {list(models)} sum to zero")
    return {m: w / total for m, w in raw.items()}


def per_model(weights: Mapping[str, Any], cohorts: Mapping[str, int]) -> dict[str, Any]:
    """Member weights regrouped by model: a cohort's as a ``(k,)`` float32 array."""
    out: dict[str, Any] = {}
    for name, w in weights.items():
        root, _, slot = name.rpartition("/")
        if root in cohorts and slot.isdigit():
            out.setdefault(root, []).append(w)
        else:
            out[name] = w
    return {
        m: jnp.stack([jnp.asarray(x, jnp.float32) for x in w]) if isinstance(w, list) else w
        for m, w in out.items()
    }


def safe_divide(x: Any, total: Any) -> Any:
    """``x / total``, and zeros where ``total`` is 0 (a group whose models all weigh 0)."""
    if not is_traced(total) and not isinstance(total, jax.Array):
        return x / total if total > 0 else jnp.zeros_like(x)
    positive = total > 0
    return jnp.where(positive, x / jnp.where(positive, total, 1.0), 0.0).astype(x.dtype)
