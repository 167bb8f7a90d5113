"""Function-space coupling between models: mutual learning and distillation.

Both are ``extra_loss`` hooks for :func:`mmojax.train.make_train_step`, the
alternatives a reader compares MultiModelOptimizer's parameter-space sharing
with: models that learn from each other's *predictions*.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp


def _kl(target_logits, logits, temperature, mask=None):
    r"""Mean :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T))`."""
    t = jax.nn.log_softmax(target_logits.astype(jnp.float32) / temperature, -1)
    s = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, -1)
    kl = jnp.sum(jnp.exp(t) * (t - s), -1)
    if mask is None:
        return temperature**2 * jnp.mean(kl)
    mask = mask.astype(jnp.float32)
    return temperature**2 * jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def mutual_learning_loss(weight: float = 1.0, temperature: float = 1.0):
    r"""Deep Mutual Learning (Zhang et al., 2018) for classifiers.

    Model :math:`i` adds :math:`\lambda \frac{1}{n-1}\sum_{j \ne i} T^2\,
    \mathrm{KL}(p_j \,\|\, p_i)` with the peers' predictions :math:`p_j` held
    fixed (``stop_gradient``), computed on the same batch in the same step.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss = mutual_learning_loss(1.0)
      >>> same = {"a": jnp.array([[1.0, 0.0]]), "b": jnp.array([[1.0, 0.0]])}
      >>> float(loss("a", same, {}))
      0.0
    """
    _check(weight, temperature)

    def extra_loss(name: str, outputs: Mapping[str, Any], batch) -> jax.Array:
        peers = [o for m, o in outputs.items() if m != name]
        if not peers:
            return jnp.zeros([], jnp.float32)
        mask = batch.get("mask") if hasattr(batch, "get") else None
        kl = sum(_kl(p, outputs[name], temperature, mask) for p in peers) / len(peers)
        return weight * kl

    return extra_loss


def distillation_loss(weight: float = 1.0, temperature: float = 2.0, key: str = "teacher_logits"):
    r"""Knowledge distillation (Hinton et al., 2015) from precomputed teacher logits.

    Adds :math:`\lambda T^2\,\mathrm{KL}(\mathrm{softmax}(z_t/T)\,\|\,\mathrm{softmax}(z_s/T))`
    where the teacher's logits :math:`z_t` come with the batch (``batch[key]``,
    computed once by the trained teacher in eval mode).
    """
    _check(weight, temperature)

    def extra_loss(name: str, outputs: Mapping[str, Any], batch) -> jax.Array:
        return weight * _kl(batch[key], outputs[name], temperature, batch.get("mask"))

    return extra_loss


def _check(weight: float, temperature: float) -> None:
    if not weight >= 0:
        raise ValueError(f"coupling weight must be >= 0, got {weight}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
