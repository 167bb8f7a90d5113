"""The static sharing plan: which leaves (or views of leaves) pool with which.

Group membership depends only on the tree structure, the leaf shapes, the
labels and the alignment, so it is computed once, in Python, outside ``jit``;
the jitted code only gathers members by the plan's indices and index maps,
pools them and scatters the result back.

Three groupings:

- ``"type_shape"`` (the paper): leaves with one ``(label, shape)`` pool, the
  leaves of one model included.
- ``"role"``: canonical views (:func:`align_parameters`) with one
  ``(role, kind, canonical shape)`` pool *across models*: each member pools
  with itself and the other models' members, never with another member of its
  own model.
- ``"role_depth"``: as ``"role"``, and layers are paired by relative depth
  (:func:`depth_pairing`): on the grid of the shallowest model of the group,
  each slot takes from every model its nearest layer.

Under both role groupings, leaves that match no alignment rule fall back to
``"type_shape"`` among themselves, with a logged warning. Leaves that are not
floating point (integer counters, boolean masks) never share: gradient
sharing and sync leave them untouched.

A model may be a :class:`~mmojax.optim._cohort.Cohort` of ``k`` stacked
members: each member is a model of its own, named ``name/i``, and every
stacked leaf gives ``k`` members (slot ``i`` of axis 0, then the view). The
groups, their member order and the pooling are those of ``k`` separately held
models named ``name/0`` ... ``name/{k-1}``.

A plan is built once per tree structure, leaf shapes and dtypes, labels,
grouping and rules (:func:`cached_plan`), not on every init and trace.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import jax
import numpy as np

from mmojax.optim import _align, _classify, _cohort, _tree, _views, _weights
from mmojax.optim._views import IndexMap

GROUPINGS = ("type_shape", "role", "role_depth")

logger = logging.getLogger(__name__)


def check_grouping(grouping: str) -> None:
    """Raises ``ValueError`` unless ``grouping`` is one of :data:`GROUPINGS`."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")


@dataclasses.dataclass(frozen=True)
class Member:
    """One leaf, or one view of a leaf, taking part in a group.

    Attributes:
      model: the model's name (``name/i`` for member ``i`` of a cohort).
      path: the leaf's path inside the model.
      index: position of the leaf in the flattened multi-model tree.
      view: the index map of the view (``None``: the whole leaf as stored).
      layer: the view's layer index (``None``: none, or type_shape grouping).
      slot: for a cohort's member, its index on the leaf's leading model axis
        (``None``: a plain model's leaf).
    """

    model: str
    path: str
    index: int
    view: IndexMap | None = None
    layer: int | None = None
    slot: int | None = None

    @property
    def name(self) -> str:
        """``model/path`` and the view: ``gpt2/transformer/h/0/attn/c_attn/kernel[q].T``."""
        return f"{self.model}/{self.path}{'' if self.view is None else self.view}"

    def own(self, leaf: Any) -> Any:
        """This member's model's part of ``leaf``: ``leaf[slot]`` in a cohort, else ``leaf``."""
        return leaf if self.slot is None else leaf[self.slot]

    def take(self, leaf: Any) -> Any:
        """This member's view of ``leaf`` (the flattened tree's leaf ``index``)."""
        return _views.gather(self.own(leaf), self.view)

    def block(self, leaf: Any) -> Any:
        """The stored-orientation block of ``leaf`` this member reads (:meth:`IndexMap.block`)."""
        return _views.block(self.own(leaf), self.view)


@dataclasses.dataclass(frozen=True)
class ViewKey:
    """The key of a group under ``"role"`` / ``"role_depth"`` grouping.

    Attributes:
      role: the views' role.
      kind: the views' kind (kernel, bias, scale, embedding...).
      shape: the canonical shape.
      depth: ``(slot, grid)`` under ``"role_depth"`` for layered views.
    """

    role: str
    kind: str
    shape: tuple[int, ...]
    depth: tuple[int, int] | None = None

    def __str__(self) -> str:
        text = f"{self.role}.{self.kind}{tuple(self.shape)}"
        return text if self.depth is None else f"{text} @{self.depth[0]}/{self.depth[1]}"


@dataclasses.dataclass(frozen=True)
class Group:
    """The members sharing one key.

    Attributes:
      key: the group's key (a label such as ``ParamKey``, or a :class:`ViewKey`).
      shape: the members' (canonical) shape.
      members: the members, in flattened-tree order.
      within_model: whether members of one model pool with each other (the
        paper's ``"type_shape"``). When ``False`` each member pools with itself
        and the members of the *other* models only.
    """

    key: Any
    shape: tuple[int, ...]
    members: tuple[Member, ...]
    within_model: bool = True

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


def _models_column(group: Group) -> str:
    per_model: dict[str, list[Member]] = {}
    for member in group.members:
        per_model.setdefault(member.model, []).append(member)
    cells = []
    for model, members in per_model.items():
        if len(members) == 1 and members[0].layer is not None:
            cells.append(f"{model} L{members[0].layer}")
        else:
            cells.append(f"{model} x{len(members)}")
    return ", ".join(cells)


def _some(names: tuple[str, ...], limit: int = 20) -> str:
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclasses.dataclass(frozen=True)
class SharingPlan:
    """Which leaves (or views of leaves) of a multi-model tree share with which.

    Attributes:
      models: model names, in tree order, each member of a cohort as a model
        of its own (``bert/0``, ``bert/1``, ..., ``gpt2``).
      groups: every key, in order of first appearance, with its members.
      model_sizes: total parameter count per model (per cohort member).
      num_leaves: number of leaves in the flattened tree.
      grouping: the grouping strategy (one of :data:`GROUPINGS`).
      unmatched: under role groupings, ``model/path`` of the leaves no
        alignment rule matched (grouped by ``(type, shape)`` among themselves).
      unpaired: under ``"role_depth"``, the views of layers that no slot of
        the depth grid picked (they share nothing).
      roots: the tree's own model names, a cohort once (``bert``, ``gpt2``);
        empty means ``models``.
      cohorts: ``{name: k}`` for the models that are cohorts.
    """

    models: tuple[str, ...]
    groups: tuple[Group, ...]
    model_sizes: dict[str, int]
    num_leaves: int
    grouping: str = "type_shape"
    unmatched: tuple[str, ...] = ()
    unpaired: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    cohorts: dict[str, int] = dataclasses.field(default_factory=dict)

    def weights(self, model_weights: Any) -> dict[str, Any]:
        """``{member model: normalised weight}`` (see :func:`_weights.normalized_weights`)."""
        return _weights.normalized_weights(model_weights, self.roots or self.models, self.cohorts)

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
        return {
            m: (shared[m] / self.model_sizes[m] if self.model_sizes[m] else 0.0)
            for m in self.models
        }

    def __str__(self) -> str:
        rows = [("key", "members", "elements", "models")]
        for group in self.shared_groups:
            rows.append(
                (
                    str(group.key),
                    str(len(group.members)),
                    f"{group.size * len(group.members):,}",
                    _models_column(group),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        summary = f"{len(self.shared_groups)} shared keys; {len(self.groups)} keys in all"
        if self.grouping != "type_shape":
            summary += f" (grouping {self.grouping!r})"
        lines.append(summary)
        for model, frac in self.coverage().items():
            lines.append(f"  {model}: {frac:6.1%} of {self.model_sizes[model]:,} parameters shared")
        alone = [g for g in self.groups if not g.shared]
        if alone and len(self.models) > 1:
            names = tuple(f"{m.name} {tuple(g.shape)}" for g in alone for m in g.members)
            lines.append(
                "not shared (no other model has this key with this shape, e.g. embedding "
                f"tables of different vocabularies): {_some(names, 8)}"
            )
        if self.unmatched:
            lines.append(f"unmatched, grouped by (type, shape): {_some(self.unmatched)}")
        if self.unpaired:
            counts: dict[str, int] = {}
            for name in self.unpaired:
                model, _, _ = name.partition("/")
                counts[model] = counts.get(model, 0) + 1
            lines.append(
                "unpaired layer views (not shared): "
                + ", ".join(f"{model} x{count}" for model, count in counts.items())
                + " (plan.unpaired)"
            )
        return "\n".join(lines)

    def describe(self) -> str:
        """Every shared key with its member leaves or views (longer than ``str``)."""
        lines = []
        for group in self.shared_groups:
            lines.append(f"{group.key}:")
            lines.extend(f"  {m.name}" for m in group.members)
        return "\n".join(lines)


def depth_pairing(num_layers: int, *, grid: int) -> dict[int, int]:
    r"""Which layer of an ``num_layers``-layer model sits at each slot of a depth grid.

    Layer :math:`i` of an :math:`L`-layer model sits at relative depth
    :math:`(i + \tfrac12)/L`; slot :math:`j` of a grid of :math:`G \le L`
    slots at :math:`(j + \tfrac12)/G`. Each slot takes the layer nearest to it
    (ties: the shallower layer). For :math:`G \le L` the slots take distinct
    layers; the other :math:`L - G` layers are left out.

    Args:
      num_layers: the model's number of layers :math:`L`.
      grid: the number of slots :math:`G` (the shallowest model's depth).

    Returns:
      ``{layer: slot}`` for the layers some slot takes.

    Examples:
      >>> depth_pairing(3, grid=2)   # slots at 1/4, 3/4; layers at 1/6, 1/2, 5/6
      {0: 0, 2: 1}
      >>> depth_pairing(2, grid=2)
      {0: 0, 1: 1}
    """
    pairs = {}
    for slot in range(grid):
        # |(i + 1/2)/L - (j + 1/2)/G| * 2 L G, in integers: no float ties.
        layer = min(
            range(num_layers),
            key=lambda i: (abs((2 * i + 1) * grid - (2 * slot + 1) * num_layers), i),
        )
        pairs[layer] = slot
    return pairs


def _expanded(leaves, items, index_of):
    """``(model, slot, item)`` for each member of each item, in the order of separate models.

    A plain model's items come as they are; a cohort's come member by member
    (all of member 0's, then member 1's...), exactly the order of ``k``
    separately held models ``name/0`` ... ``name/{k-1}`` in a flattened tree.
    """
    out, run = [], []

    def flush():
        if not run:
            return
        leaf = leaves[index_of(run[0])]
        if leaf.slots is None:
            out.extend((leaf.model, None, item) for item in run)
        else:
            for slot in range(leaf.slots):
                name = _cohort.member_name(leaf.model, slot)
                out.extend((name, slot, item) for item in run)
        run.clear()

    for item in items:
        if run and leaves[index_of(run[0])].model != leaves[index_of(item)].model:
            flush()
        run.append(item)
    flush()
    return out


def _type_shape_groups(leaves, flat_labels, indices) -> list[Group]:
    by_key: dict[Any, list[Member]] = {}
    for model, slot, index in _expanded(leaves, indices, lambda i: i):
        leaf = leaves[index]
        by_key.setdefault((flat_labels[index], leaf.shape), []).append(
            Member(model, leaf.path, index, slot=slot)
        )
    return [
        Group(key=label, shape=shape, members=tuple(members))
        for (label, shape), members in by_key.items()
    ]


def _view_groups(leaves, views, by_depth: bool) -> tuple[list[Group], list[str]]:
    views = [
        (slot, dataclasses.replace(v, model=model))
        for model, slot, v in _expanded(leaves, views, lambda v: v.index)
    ]
    grids: dict[tuple, int] = {}
    if by_depth:
        for _, v in views:
            if v.layer is not None:
                k = (v.role, v.kind, v.shape)
                grids[k] = min(grids.get(k, v.num_layers), v.num_layers)
    by_key: dict[ViewKey, list[Member]] = {}
    unpaired = []
    for cohort_slot, v in views:
        depth = None
        if by_depth and v.layer is not None:
            grid = grids[(v.role, v.kind, v.shape)]
            slot = depth_pairing(v.num_layers, grid=grid).get(v.layer)
            if slot is None:
                unpaired.append(v.name)
                continue
            depth = (slot, grid)
        view = None if v.index_map.is_identity else v.index_map
        by_key.setdefault(ViewKey(v.role, v.kind, v.shape, depth), []).append(
            Member(v.model, v.path, v.index, view, v.layer, cohort_slot)
        )
    groups = [
        Group(key=k, shape=k.shape, members=tuple(ms), within_model=False)
        for k, ms in by_key.items()
    ]
    return sorted(groups, key=_forward_order), unpaired


_KIND_ORDER = {"kernel": 0, "embedding": 0, "scale": 1, "bias": 2}


def _forward_order(group: Group):
    """Embeddings, then the layers slot by slot (q, k, v, out, norm, mlp...), then heads."""
    key = group.key
    n = len(_align.ROLES)
    rank = _align.ROLES.index(key.role) if key.role in _align.ROLES else n
    layered = any(m.layer is not None for m in group.members)
    section = 1 if layered else (0 if rank < _align.ROLES.index("attn.q") else 2)
    slot = key.depth[0] if key.depth else 0
    return section, slot, rank, _KIND_ORDER.get(key.kind, 3), key.kind


def _is_float(dtype: Any) -> bool:
    return dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.inexact)


def make_plan(
    params: Any,
    labels: Any = None,
    grouping: str = "type_shape",
    align_rules: Any = None,
    warn: bool = True,
) -> SharingPlan:
    """Builds a plan (uncached); :func:`cached_plan` is what the transformations use."""
    check_grouping(grouping)
    roots = _tree.check_multi_model_tree(params)
    cohorts = _cohort.cohort_sizes(params)
    models = _tree.member_names(params)
    leaves, _ = _tree.flatten_leaves(params)
    flat_labels = _classify.resolve_labels(params, labels)
    sizes = dict.fromkeys(models, 0)
    for leaf in leaves:
        for slot in range(leaf.slots or 1):
            name = leaf.model if leaf.slots is None else _cohort.member_name(leaf.model, slot)
            sizes[name] += leaf.size
    floating = {i for i, leaf in enumerate(leaves) if _is_float(leaf.dtype)}
    if grouping == "type_shape":
        groups = _type_shape_groups(leaves, flat_labels, sorted(floating))
        return SharingPlan(models, tuple(groups), sizes, len(leaves), roots=roots, cohorts=cohorts)
    alignment = _align.align_parameters(params, rules=align_rules)
    views = [v for v in alignment.views if v.index in floating]
    groups, unpaired = _view_groups(leaves, views, by_depth=grouping == "role_depth")
    groups += _type_shape_groups(
        leaves, flat_labels, [i for i in alignment.unmatched_indices if i in floating]
    )
    if alignment.unmatched and warn:
        logger.warning(
            "grouping %r: %d leaves match no alignment rule and fall back to (type, shape) "
            "grouping among themselves: %s",
            grouping,
            len(alignment.unmatched),
            _some(alignment.unmatched),
        )
    return SharingPlan(
        models,
        tuple(groups),
        sizes,
        len(leaves),
        grouping,
        alignment.unmatched,
        tuple(unpaired),
        roots,
        cohorts,
    )


def sharing_plan(
    params: Any, *, labels: Any = None, grouping: str = "type_shape", align_rules: Any = None
) -> SharingPlan:
    """Builds the static :class:`SharingPlan` of a multi-model tree.

    A group shares when its members come from at least two models (sharing is
    between models, so a single model is left alone).

    - ``"type_shape"`` (default, the paper): leaves are grouped by
      ``(label, shape)``, labels from ``classify_parameters`` unless given.
    - ``"role"``: canonical views (:func:`align_parameters` with
      ``align_rules``) are grouped by ``(role, kind, canonical shape)``; a
      member pools with itself and the other models' members only.
    - ``"role_depth"``: ``"role"`` plus the layer, paired by relative depth
      (:func:`depth_pairing` on the grid of the group's shallowest model);
      layers no slot picks are listed in ``plan.unpaired`` and share nothing.

    Under the role groupings, leaves no rule matches are grouped by
    ``(label, shape)`` among themselves and a warning names them.

    A :class:`Cohort` of ``k`` stacked members counts as ``k`` models
    ``name/0`` ... ``name/{k-1}``, each member pooling as a separately held
    model would.

    Args:
      params: ``{model_name: params_pytree}`` of arrays or ``ShapeDtypeStruct``
        (a model may be a :class:`Cohort`).
      labels: ``None`` for :func:`classify_parameters`, a label tree with the
        structure of ``params``, or a callable ``params -> label tree``.
      grouping: ``"type_shape"``, ``"role"`` or ``"role_depth"``.
      align_rules: ordered :class:`AlignRule` s for the role groupings
        (``None``: :data:`DEFAULT_ALIGN_RULES`).

    Returns:
      The plan. ``str(plan)`` is a readable table, ``plan.describe()`` lists
      every member leaf or view.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"a": {"mlp": {"kernel": jnp.zeros((4, 4))}},
      ...           "b": {"mlp": {"kernel": jnp.zeros((4, 4))}}}
      >>> plan = sharing_plan(params)
      >>> [(str(g.key), len(g.members)) for g in plan.shared_groups]
      [('ffn(4, 4)', 2)]
      >>> plan.coverage()
      {'a': 1.0, 'b': 1.0}
      >>> gpt2 = {"h": {"0": {"mlp": {"c_fc": {"kernel": jnp.zeros((8, 2))}}}}}
      >>> bert = {"encoder": {"layer": {"0": {"intermediate": {"dense": {
      ...     "kernel": jnp.zeros((2, 8))}}}}}}
      >>> plan = sharing_plan({"bert": bert, "gpt2": gpt2}, grouping="role")
      >>> print(plan.describe())
      mlp.up.kernel(2, 8):
        bert/encoder/layer/0/intermediate/dense/kernel
        gpt2/h/0/mlp/c_fc/kernel.T
    """
    return cached_plan(params, labels, grouping, align_rules)


def _labels_key(labels: Any) -> Any:
    if labels is None:
        return None
    if callable(labels) and not isinstance(labels, _classify.ParamKey):
        return ("fn", labels)
    leaves, treedef = jax.tree_util.tree_flatten(labels)
    return ("tree", treedef, tuple(leaves))


def _plan_key(params: Any, labels: Any, grouping: str, align_rules: Any):
    """A hashable key of everything a plan depends on, or ``None`` if there is none."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    specs = tuple(
        (tuple(np.shape(x)), str(x.dtype if hasattr(x, "dtype") else np.result_type(x)))
        for x in leaves
    )
    key = (
        treedef,
        specs,
        _labels_key(labels),
        grouping,
        None if align_rules is None else tuple(align_rules),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


@functools.lru_cache(maxsize=64)
def _plan_from_key(key, labels) -> SharingPlan:
    treedef, specs, _, grouping, align_rules = key
    abstract = jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs]
    )
    return make_plan(abstract, labels.value, grouping, align_rules, warn=True)


def cached_plan(
    params: Any, labels: Any = None, grouping: str = "type_shape", align_rules: Any = None
) -> SharingPlan:
    """The plan of ``params``, built once per structure, shapes, dtypes, labels and rules.

    Built from the abstract shapes, so it is the same for arrays, tracers and
    ``ShapeDtypeStruct`` s; the fallback warning of the role groupings is
    logged once, when the plan is first built. Labels that cannot be hashed
    (a label tree of unhashable leaves is rejected anyway) build a fresh plan.
    """
    check_grouping(grouping)
    _tree.check_multi_model_tree(params)
    key = _plan_key(params, labels, grouping, align_rules)
    if key is None:
        return make_plan(params, labels, grouping, align_rules, warn=True)
    return _plan_from_key(key, _Unhashed(labels))


class _Unhashed:
    """Carries the labels into the cache without taking part in its key (the key has them)."""

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _Unhashed)


def validate_at_init(params, model_weights, labels, grouping, align_rules) -> None:
    """The init-time checks shared by gradient sharing and sync.

    Validates the multi-model tree, that ``model_weights`` names only its
    models, and the labels/rules (building the plan also warns about
    unmatched leaves once, here rather than on every update).
    """
    models = _tree.check_multi_model_tree(params)
    _weights.normalized_weights(model_weights, models, _cohort.cohort_sizes(params))
    cached_plan(params, labels, grouping, align_rules)
