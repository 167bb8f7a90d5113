"""Stacked cohorts: k models of one architecture held as one tree with a leading model axis.

A multi-model tree ``{name: params}`` may hold, under one name, a
:class:`Cohort`: the parameters of ``k`` models of one architecture stacked
along a new leading axis (every leaf ``(k, ...)``), so that a train step runs
them with one ``jax.vmap`` instead of ``k`` unrolled copies. The optimizer
layer treats member ``i`` of cohort ``name`` as a model of its own, named
``name/i``: it pools and syncs with the other members and the other models
exactly as ``k`` separately held models named ``name/0`` ... ``name/{k-1}``
would (same groups, weights and learning rates; tested to 1e-5), and every
per-model quantity of a cohort (its losses, learning rates, convergence rates,
clip norms) is an array of shape ``(k,)``, member ``i`` at index ``i``.

The marker travels with the tree: gradients of a ``Cohort`` (``jax.grad``),
updates and ``tree_map`` results keep it, so every transformation sees which
models are cohorts without being told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp


@jax.tree_util.register_pytree_with_keys_class
class Cohort:
    """The parameters (or gradients, updates, states) of ``k`` same-architecture models, stacked.

    Every leaf of ``params`` has the leading model axis ``k``. ``Cohort`` is a
    pytree node (one child, key ``.params``), so it survives ``jax.grad``,
    ``jax.tree.map`` and ``optax.apply_updates``; unwrap it with ``.params``
    to ``jax.vmap`` a model over it.

    Attributes:
      params: the stacked pytree.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> c = Cohort({"w": jnp.zeros((3, 2))})
      >>> c.size, jax.tree.map(lambda x: x + 1, c).params["w"].shape
      (3, (3, 2))
    """

    __slots__ = ("params",)

    def __init__(self, params: Any):
        self.params = params

    def tree_flatten_with_keys(self):
        return ((jax.tree_util.GetAttrKey("params"), self.params),), None

    def tree_flatten(self):
        return (self.params,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        return cls(children[0])

    @property
    def size(self) -> int:
        """The number of members ``k`` (the leading axis of the leaves)."""
        return cohort_size(self)

    def __repr__(self) -> str:
        return f"Cohort({self.params!r})"


def cohort_size(cohort: Cohort, name: str = "cohort") -> int:
    """The leading axis shared by every leaf of ``cohort``.

    Raises:
      ValueError: if the cohort has no leaves, a scalar leaf, or leaves whose
        leading axes differ.
    """
    sizes = set()
    for leaf in jax.tree_util.tree_leaves(cohort.params):
        shape = getattr(leaf, "shape", ())
        if len(shape) == 0:
            raise ValueError(f"{name}: a Cohort's leaves need a leading model axis, got a scalar")
        sizes.add(int(shape[0]))
    if not sizes:
        raise ValueError(f"{name}: the Cohort has no parameters")
    if len(sizes) != 1:
        raise ValueError(f"{name}: the leaves of a Cohort must share one leading axis, got {sizes}")
    return sizes.pop()


def member_name(model: str, slot: int) -> str:
    """The name of member ``slot`` of cohort ``model``: ``"bert/0"``."""
    return f"{model}/{slot}"


def cohort_sizes(tree: Mapping[str, Any]) -> dict[str, int]:
    """``{name: k}`` for the cohorts of a multi-model tree (plain models are absent)."""
    return {
        name: cohort_size(value, repr(name))
        for name, value in tree.items()
        if isinstance(value, Cohort)
    }


def stack_models(models: Sequence[Any]) -> Cohort:
    """Stacks the parameter trees of ``k`` same-architecture models into a :class:`Cohort`.

    Args:
      models: ``k >= 1`` pytrees of one structure, shapes and dtypes.

    Returns:
      ``Cohort(tree)`` with every leaf ``jnp.stack`` ed along a new axis 0.

    Raises:
      ValueError: if ``models`` is empty or the trees differ in structure or shapes.

    Examples:
      >>> import jax.numpy as jnp
      >>> c = stack_models([{"w": jnp.zeros(2)}, {"w": jnp.ones(2)}])
      >>> c.params["w"].tolist()
      [[0.0, 0.0], [1.0, 1.0]]
      >>> [m["w"].tolist() for m in unstack_models(c)]
      [[0.0, 0.0], [1.0, 1.0]]
    """
    models = list(models)
    if not models:
        raise ValueError("stack_models needs at least one model")
    structure = jax.tree_util.tree_structure(models[0])
    for i, tree in enumerate(models[1:], 1):
        if jax.tree_util.tree_structure(tree) != structure:
            raise ValueError(f"stack_models: model {i} has another tree structure than model 0")
        for a, b in zip(jax.tree_util.tree_leaves(models[0]), jax.tree_util.tree_leaves(tree)):
            if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
                raise ValueError(
                    f"stack_models: model {i} has a leaf {jnp.shape(b)} {jnp.result_type(b)} "
                    f"where model 0 has {jnp.shape(a)} {jnp.result_type(a)}"
                )
    return Cohort(jax.tree.map(lambda *xs: jnp.stack(xs), *models))


def unstack_models(cohort: Cohort) -> list[Any]:
    """The ``k`` member trees of a :class:`Cohort` (the inverse of :func:`stack_models`)."""
    if not isinstance(cohort, Cohort):
        raise TypeError(f"unstack_models takes a Cohort, got {type(cohort).__name__}")
    k = cohort_size(cohort)
    return [jax.tree.map(lambda x, i=i: x[i], cohort.params) for i in range(k)]


def per_member(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{model: value}`` with each cohort's ``(k,)`` value split into ``{"name/i": value[i]}``.

    For logging the per-model outputs of a tree with cohorts, e.g.
    ``per_member(mmojax.learning_rates(opt_state))``; an entry whose value is
    a scalar is kept as it is.

    Examples:
      >>> import jax.numpy as jnp
      >>> out = per_member({"bert": jnp.array([1.0, 2.0]), "gpt2": jnp.array(3.0)})
      >>> {k: float(v) for k, v in out.items()}
      {'bert/0': 1.0, 'bert/1': 2.0, 'gpt2': 3.0}
    """
    out = {}
    for name, value in values.items():
        if jnp.ndim(value) == 0:
            out[name] = value
        else:
            for i in range(jnp.shape(value)[0]):
                out[member_name(name, i)] = value[i]
    return out
