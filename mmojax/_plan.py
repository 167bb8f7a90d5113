"""The static sharing plan: which leaves pool with which.

Group membership depends only on the tree structure, the leaf shapes and the
labels, so it is computed once, in Python, outside ``jit``; the jitted code only
gathers leaves by the plan's indices, pools them and scatters the result back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mmojax import _classify, _tree


@dataclasses.dataclass(frozen=True)
class Member:
    """One leaf taking part in a group."""

    model: str
    path: str
    index: int  # position in the flattened multi-model tree


@dataclasses.dataclass(frozen=True)
class Group:
    """The leaves sharing one key."""

    key: Any
    shape: tuple[int, ...]
    members: tuple[Member, ...]

    @property
    def size(self) -> int:
        """Elements in one member."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def models(self) -> tuple[str, ...]:
        """The distinct models with a member in this group, in member order."""
        return tuple(dict.fromkeys(m.model for m in self.members))

    @property
    def shared(self) -> bool:
        """Whether the group pools: it has members in at least two models."""
        return len(self.models) >= 2


@dataclasses.dataclass(frozen=True)
class SharingPlan:
    """Which leaves of a multi-model tree share with which.

    Attributes:
      models: model names, in tree order.
      groups: every key, in order of first appearance, with its members.
      model_sizes: total parameter count per model.
      num_leaves: number of leaves in the flattened tree.
    """

    models: tuple[str, ...]
    groups: tuple[Group, ...]
    model_sizes: dict[str, int]
    num_leaves: int

    @property
    def shared_groups(self) -> tuple[Group, ...]:
        """The groups that pool (members in at least two models)."""
        return tuple(g for g in self.groups if g.shared)

    def coverage(self) -> dict[str, float]:
        """Per model, the fraction of its parameters that take part in sharing."""
        shared = dict.fromkeys(self.models, 0)
        for group in self.shared_groups:
            for member in group.members:
                shared[member.model] += group.size
        return {m: (shared[m] / self.model_sizes[m] if self.model_sizes[m] else 0.0)
                for m in self.models}

    def __str__(self) -> str:
        rows = [("key", "members", "elements", "models")]
        for group in self.shared_groups:
            counts = {}
            for member in group.members:
                counts[member.model] = counts.get(member.model, 0) + 1
            rows.append((
                str(group.key),
                str(len(group.members)),
                f"{group.size * len(group.members):,}",
                ", ".join(f"{m} x{c}" for m, c in counts.items()),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(f"{len(self.shared_groups)} shared keys; {len(self.groups)} keys in all")
        for model, frac in self.coverage().items():
            lines.append(
                f"  {model}: {frac:6.1%} of {self.model_sizes[model]:,} parameters shared"
            )
        return "\n".join(lines)

    def describe(self) -> str:
        """Every shared key with its member paths (longer than ``str``)."""
        lines = []
        for group in self.shared_groups:
            lines.append(f"{group.key}:")
            lines.extend(f"  {m.model}/{m.path}" for m in group.members)
        return "\n".join(lines)


def sharing_plan(params: Any, labels: Any = None) -> SharingPlan:
    """Builds the static :class:`SharingPlan` of a multi-model tree.

    Leaves are grouped by ``(label, shape)``; a group shares when its members
    come from at least two models (sharing is between models, so a single model
    is left alone). With the default labels (``classify_parameters``) this is
    the paper's (type, shape) grouping.

    Args:
      params: ``{model_name: params_pytree}`` of arrays or ``ShapeDtypeStruct``.
      labels: ``None`` for :func:`classify_parameters`, a label tree with the
        structure of ``params``, or a callable ``params -> label tree``.

    Returns:
      The plan. ``str(plan)`` is a readable table.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"a": {"mlp": {"kernel": jnp.zeros((4, 4))}},
      ...           "b": {"mlp": {"kernel": jnp.zeros((4, 4))}}}
      >>> plan = sharing_plan(params)
      >>> [(str(g.key), len(g.members)) for g in plan.shared_groups]
      [('ffn(4, 4)', 2)]
      >>> plan.coverage()
      {'a': 1.0, 'b': 1.0}
    """
    models = _tree.check_multi_model_tree(params)
    leaves, _ = _tree.flatten_leaves(params)
    flat_labels = _classify.resolve_labels(params, labels)
    by_key: dict[Any, list[Member]] = {}
    shapes: dict[Any, tuple[int, ...]] = {}
    for index, (leaf, label) in enumerate(zip(leaves, flat_labels)):
        key = (label, leaf.shape)
        by_key.setdefault(key, []).append(Member(leaf.model, leaf.path, index))
        shapes[key] = leaf.shape
    groups = tuple(
        Group(key=label, shape=shapes[(label, shape)], members=tuple(members))
        for (label, shape), members in by_key.items()
    )
    sizes = dict.fromkeys(models, 0)
    for leaf in leaves:
        sizes[leaf.model] += leaf.size
    return SharingPlan(models=models, groups=groups, model_sizes=sizes, num_leaves=len(leaves))
