"""A ``lax.cond`` for rare events that stays a conditional under ``jax.vmap``.

Under ``vmap`` a ``lax.cond`` whose predicate is batched becomes a ``select``
that runs *both* branches for every member: a periodic sync would then cost a
sync on every step. :func:`rare_cond` has its own batching rule instead: with
a batched predicate it runs one conditional on ``any(predicate)``, whose taken
branch computes the rare branch for the whole batch and keeps, member by
member, the result its own predicate asks for. When no member's predicate
holds (the common case) only the cheap branch runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def rare_cond(
    pred: jax.Array, rare_fn: Callable[[Any], Any], common_fn: Callable[[Any], Any], operands: Any
) -> Any:
    """``lax.cond(pred, rare_fn, common_fn, operands)``, batched as described above.

    ``rare_fn`` and ``common_fn`` must be pure functions of ``operands`` (they
    may close over static Python values only) returning pytrees of the same
    structure, shapes and dtypes.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda p, x: rare_cond(p, lambda x: x + 100.0, lambda x: x, x)
      >>> jax.vmap(f)(jnp.array([False, True]), jnp.array([1.0, 2.0])).tolist()
      [1.0, 102.0]
    """

    @jax.custom_batching.custom_vmap
    def gated(pred, operands):
        return jax.lax.cond(pred, rare_fn, common_fn, operands)

    @gated.def_vmap
    def _batched(axis_size, in_batched, pred, operands):
        pred_batched, operands_batched = in_batched
        in_axes = jax.tree.map(lambda b: 0 if b else None, operands_batched)

        def run(fn):
            return lambda ops: jax.vmap(fn, in_axes=(in_axes,), out_axes=0, axis_size=axis_size)(
                ops
            )

        if not pred_batched:
            out = jax.lax.cond(pred, run(rare_fn), run(common_fn), operands)
        else:

            def some_member(ops):
                rare, common = run(rare_fn)(ops), run(common_fn)(ops)
                return jax.tree.map(
                    lambda r, c: jnp.where(pred.reshape((-1,) + (1,) * (r.ndim - 1)), r, c),
                    rare,
                    common,
                )

            out = jax.lax.cond(jnp.any(pred), some_member, run(common_fn), operands)
        return out, jax.tree.map(lambda _: True, out)

    return gated(pred, operands)
