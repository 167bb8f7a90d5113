"""Per-model gradient clipping: each model by its own global norm."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmojax.optim import _tree, _weights


class ClipByModelNormState(NamedTuple):
    """``clip_by_model_global_norm`` keeps no state."""


def clip_by_model_global_norm(
    clip_norm: float | jax.Array,
) -> optax.GradientTransformationExtraArgs:
    """Clips each model's gradients by that model's own global norm.

    Model :math:`i`'s updates are scaled by ``min(1, clip_norm / ||g_i||)``
    (``clip_norm`` a float or a scalar array);
    the norm never mixes models, so one model's large gradient does not
    shrink the others' steps. Each member of a :class:`Cohort` is clipped by
    its own norm.

    Examples:
      >>> import jax.numpy as jnp
      >>> g = {"a": {"w": jnp.array([3.0, 4.0])}, "b": {"w": jnp.array([0.3, 0.4])}}
      >>> tx = clip_by_model_global_norm(1.0)
      >>> out, _ = tx.update(g, tx.init(g))
      >>> [round(x, 3) for x in out["a"]["w"].tolist() + out["b"]["w"].tolist()]
      [0.6, 0.8, 0.3, 0.4]
    """
    try:
        value = _weights.concrete_scalar("clip_norm", clip_norm)
    except TypeError:
        raise ValueError(f"clip_norm must be a number > 0, got {clip_norm!r}") from None
    if value is not None and not value > 0:
        raise ValueError(f"clip_norm must be a number > 0, got {clip_norm!r}")

    def init_fn(params):
        _tree.check_multi_model_tree(params)
        return ClipByModelNormState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        norms = _tree.model_norms(updates)
        scales = {m: jnp.minimum(1.0, clip_norm / jnp.maximum(n, 1e-30)) for m, n in norms.items()}
        return _tree.scale_models(updates, scales), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
