"""Alignment: the canonical views under which leaves of different models correspond.

The paper groups leaves by (type, shape). On real layouts that pairs tensors
that do not correspond: Hugging Face's Flax GPT-2 stores its Conv1D kernels
``(out, in)`` (mmojax's models hold them ``(in, out)``), GPT-2 fuses Q, K and V
into one ``c_attn`` leaf, and a LayerNorm's scale and bias have one shape.
An *alignment* gives every leaf one or more canonical **views**: a role
(``attn.q``, ``mlp.up``, ``norm.attn``...), a kind (kernel, bias, scale,
embedding), an ``(in, out)`` orientation and a depth (layer index and the
model's number of layers). A view is a pure index map of its leaf
(:class:`IndexMap`: a transpose, one slice of a fused leaf), so whatever is
computed on the views is written back exactly.

Views come from ordered :class:`AlignRule` s matched against each leaf's full
name ``model/path``; first match wins. :data:`DEFAULT_ALIGN_RULES` know the
Hugging Face Flax BERT, RoBERTa and GPT-2 layouts (with or without the task
model's ``bert/``, ``roberta/``, ``transformer/`` prefix), GPT-2 held either way
(``transpose="auto"``: each model's fused ``c_attn`` tells), and mmojax's heads.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from mmojax.optim import _tree
from mmojax.optim._views import IndexMap

# ``AlignRule.transpose`` value: the model's fused leaves tell the orientation.
AUTO = "auto"

# The leaf's last path component gives its kind unless a rule says otherwise.
LEAF_KINDS = {"kernel": "kernel", "bias": "bias", "scale": "scale", "embedding": "embedding"}

# The built-in roles, in the order a forward pass meets them (plans list groups
# in this order; user roles may be any other strings).
ROLES = (
    "embed.tok",
    "embed.pos",
    "embed.type",
    "norm.embed",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.out",
    "norm.attn",
    "mlp.up",
    "mlp.down",
    "norm.mlp",
    "norm.final",
    "head.pool",
    "head.out",
)


@dataclasses.dataclass(frozen=True)
class AlignRule:
    r"""Gives the leaves whose name matches ``pattern`` their canonical views.

    Attributes:
      pattern: regex searched (``re.search``, case-sensitive) in the leaf's
        full name ``model/path``. A named group ``layer`` (digits) gives the
        leaf's layer index.
      role: the role of the leaf, or one role per part of a fused leaf: a
        tuple of ``n`` roles splits the leaf into ``n`` equal slices along its
        output axis (the last axis of an ``(in, out)`` kernel, the first of an
        ``(out, in)`` one or of a 1-D leaf), e.g. ``("attn.q", "attn.k",
        "attn.v")`` for GPT-2's ``c_attn``.
      kind: the kind (``None``: from the leaf's last path component:
        ``kernel``, ``bias``, ``scale``, ``embedding``, or the component
        itself). Views of different kinds never pool.
      transpose: the stored 2-D leaf is ``(out, in)`` (Hugging Face's Flax
        GPT-2 ``Conv1D``); its view is the transpose. ``"auto"``: the model
        decides, per model, from the leaves its ``"auto"`` rules split into
        ``n`` parts (GPT-2's fused ``c_attn``): one stored ``(n d, d)`` means
        the model's ``"auto"`` leaves are ``(out, in)``, one stored ``(d, n d)``
        that they are ``(in, out)`` (as mmojax's models hold GPT-2); a model
        with no such leaf is taken to be ``(out, in)``. Ignored for 1-D leaves.
      rows: ``(start, stop)``: only these rows of the stored leaf (Python
        slice bounds, negatives allowed) are viewed, e.g. the positions a
        RoBERTa table really uses; the other rows share nothing. Not with a
        tuple ``role``.

    Examples:
      >>> rule = AlignRule(r"(^|/)h/(?P<layer>\d+)/mlp/c_fc/(kernel|bias)$", "mlp.up",
      ...                  transpose=True)
      >>> rule.role, rule.transpose
      ('mlp.up', True)
    """

    pattern: str
    role: str | tuple[str, ...]
    kind: str | None = None
    transpose: bool | str = False
    rows: tuple[int, int | None] | None = None

    def __post_init__(self):
        if not isinstance(self.pattern, str):
            raise TypeError(f"AlignRule pattern must be a str, got {self.pattern!r}")
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise ValueError(f"AlignRule has an invalid regex {self.pattern!r}: {err}") from None
        roles = self.role if isinstance(self.role, tuple) else (self.role,)
        if not roles or not all(isinstance(r, str) and r for r in roles):
            raise TypeError(
                f"AlignRule role must be a non-empty str or tuple of them, got {self.role!r}"
            )
        if len(set(roles)) != len(roles):
            raise ValueError(f"AlignRule roles of a fused leaf must differ, got {self.role!r}")
        if self.kind is not None and not (isinstance(self.kind, str) and self.kind):
            raise TypeError(f"AlignRule kind must be None or a non-empty str, got {self.kind!r}")
        if not (isinstance(self.transpose, bool) or self.transpose == AUTO):
            raise TypeError(
                f"AlignRule transpose must be a bool or {AUTO!r}, got {self.transpose!r}"
            )
        if self.rows is not None:
            ok = (
                isinstance(self.rows, tuple)
                and len(self.rows) == 2
                and all(
                    v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in self.rows
                )
            )
            if not ok:
                raise TypeError(
                    f"AlignRule rows must be a (start, stop) pair of ints, got {self.rows!r}"
                )
            if isinstance(self.role, tuple):
                raise ValueError("AlignRule rows cannot be combined with a fused (tuple) role")


_P = r"(?:^|/)"
_BERT = _P + r"encoder/layer/(?P<layer>\d+)/"
_GPT2 = _P + r"h/(?P<layer>\d+)/"
_DENSE = r"/(?:kernel|bias)$"
_NORM = r"/(?:scale|bias)$"

DEFAULT_ALIGN_RULES: tuple[AlignRule, ...] = (
    # BERT / RoBERTa encoder layers (post-LN; Flax Dense kernels are (in, out)).
    AlignRule(_BERT + r"attention/self/query" + _DENSE, "attn.q"),
    AlignRule(_BERT + r"attention/self/key" + _DENSE, "attn.k"),
    AlignRule(_BERT + r"attention/self/value" + _DENSE, "attn.v"),
    AlignRule(_BERT + r"attention/output/dense" + _DENSE, "attn.out"),
    AlignRule(_BERT + r"attention/output/LayerNorm" + _NORM, "norm.attn"),
    AlignRule(_BERT + r"intermediate/dense" + _DENSE, "mlp.up"),
    AlignRule(_BERT + r"output/dense" + _DENSE, "mlp.down"),
    AlignRule(_BERT + r"output/LayerNorm" + _NORM, "norm.mlp"),
    AlignRule(_P + r"embeddings/word_embeddings/embedding$", "embed.tok"),
    AlignRule(_P + r"embeddings/position_embeddings/embedding$", "embed.pos"),
    AlignRule(_P + r"embeddings/token_type_embeddings/embedding$", "embed.type"),
    AlignRule(_P + r"embeddings/LayerNorm" + _NORM, "norm.embed"),
    AlignRule(_P + r"pooler/dense" + _DENSE, "head.pool"),
    # GPT-2 blocks (pre-LN; c_attn is [q | k | v]). Conv1D kernels are stored (out, in)
    # by Hugging Face's Flax GPT-2 and held (in, out) by mmojax's models: c_attn's
    # shape tells which, per model.
    AlignRule(_GPT2 + r"attn/c_attn" + _DENSE, ("attn.q", "attn.k", "attn.v"), transpose=AUTO),
    AlignRule(_GPT2 + r"attn/c_proj" + _DENSE, "attn.out", transpose=AUTO),
    AlignRule(_GPT2 + r"ln_1" + _NORM, "norm.attn"),
    AlignRule(_GPT2 + r"mlp/c_fc" + _DENSE, "mlp.up", transpose=AUTO),
    AlignRule(_GPT2 + r"mlp/c_proj" + _DENSE, "mlp.down", transpose=AUTO),
    AlignRule(_GPT2 + r"ln_2" + _NORM, "norm.mlp"),
    AlignRule(_P + r"ln_f" + _NORM, "norm.final"),
    AlignRule(_P + r"wte/embedding$", "embed.tok"),
    AlignRule(_P + r"wpe/embedding$", "embed.pos"),
    # Task heads: RoBERTa's classification head (dense + out_proj), BERT's
    # classifier / QA outputs, mmojax's GPT-2 score / classifier / qa_outputs.
    AlignRule(_P + r"classifier/dense" + _DENSE, "head.pool"),
    AlignRule(_P + r"classifier/out_proj" + _DENSE, "head.out"),
    AlignRule(_P + r"(?:classifier|score|qa_outputs)" + _DENSE, "head.out"),
)


def check_rules(rules: Sequence[AlignRule] | None) -> tuple[AlignRule, ...]:
    """Validates an ordered sequence of rules (``None``: the defaults)."""
    if rules is None:
        return DEFAULT_ALIGN_RULES
    if isinstance(rules, (str, bytes, AlignRule)) or not isinstance(rules, Sequence):
        raise TypeError(f"align_rules must be a sequence of AlignRule, got {rules!r}")
    for i, rule in enumerate(rules):
        if not isinstance(rule, AlignRule):
            raise TypeError(f"align rule {i} must be an AlignRule, got {rule!r}")
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class ParamView:
    """One canonical view of one leaf of a multi-model tree.

    Attributes:
      model: the model's name.
      path: the leaf's "/"-joined path inside the model.
      index: the leaf's position in the flattened multi-model tree.
      role: what the view does (``attn.q``, ``mlp.up``, ``norm.attn``...).
      kind: ``kernel``, ``bias``, ``scale``, ``embedding``, ...
      shape: the canonical shape (kernels ``(in, out)``).
      layer: the layer index, or ``None`` outside the layer stack.
      num_layers: the model's number of layers (1 + its largest layer index),
        or ``None`` when it has none.
      index_map: how the view is read from the stored leaf.
    """

    model: str
    path: str
    index: int
    role: str
    kind: str
    shape: tuple[int, ...]
    layer: int | None
    num_layers: int | None
    index_map: IndexMap

    @property
    def name(self) -> str:
        """``model/path`` plus the index map: ``gpt2/.../c_attn/kernel[q].T``."""
        return f"{self.model}/{self.path}{self.index_map}"


@dataclasses.dataclass(frozen=True)
class Alignment:
    """The views of every leaf of a multi-model tree.

    Attributes:
      models: model names, in tree order.
      views: every view, in flattened leaf order (a fused leaf gives several).
      unmatched: ``model/path`` of the leaves no rule matched.
      unmatched_indices: their positions in the flattened tree.
      num_layers: per model, its number of layers (``None``: no layered view).
    """

    models: tuple[str, ...]
    views: tuple[ParamView, ...]
    unmatched: tuple[str, ...]
    unmatched_indices: tuple[int, ...]
    num_layers: dict[str, int | None]

    def __str__(self) -> str:
        rows = [("view", "role", "kind", "shape", "layer")]
        for v in self.views:
            layer = "" if v.layer is None else f"{v.layer}/{v.num_layers}"
            rows.append((v.name, v.role, v.kind, str(v.shape), layer))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.unmatched:
            lines.append(f"unmatched ({len(self.unmatched)}): " + ", ".join(self.unmatched))
        return "\n".join(lines)


def _fused_orientation(rule: AlignRule, shape: tuple[int, ...]) -> bool | None:
    """Whether a leaf an ``"auto"`` rule splits is stored ``(out, in)`` (``None``: can't tell)."""
    if not isinstance(rule.role, tuple) or len(shape) != 2:
        return None
    n, (a, b) = len(rule.role), shape
    if a == n * b and b != n * a:
        return True
    if b == n * a and a != n * b:
        return False
    return None


def _auto_orientations(matched: list[tuple[Any, AlignRule]]) -> dict[str, bool]:
    """Per model, whether its ``"auto"`` leaves are stored ``(out, in)``."""
    seen: dict[str, dict[bool, str]] = {}
    for leaf, rule in matched:
        if rule.transpose == AUTO:
            found = _fused_orientation(rule, leaf.shape)
            if found is not None:
                seen.setdefault(leaf.model, {}).setdefault(found, f"{leaf.path} {leaf.shape}")
    out = {}
    for model, by_orientation in seen.items():
        if len(by_orientation) > 1:
            raise ValueError(
                f"model {model!r} holds fused kernels both (out, in) ({by_orientation[True]}) "
                f"and (in, out) ({by_orientation[False]}); hold them one way, or give "
                "AlignRules with transpose=True/False"
            )
        out[model] = next(iter(by_orientation))
    return out


def _leaf_views(
    rule: AlignRule, shape: tuple[int, ...], name: str, transposed: bool
) -> list[tuple[str, IndexMap]]:
    """The ``(role, index map)`` of each view ``rule`` gives a leaf of ``shape``.

    ``transposed``: the leaf is stored ``(out, in)`` (``rule.transpose`` resolved).
    """
    ndim = len(shape)
    if transposed and ndim > 2:
        raise ValueError(f"align rule {rule.pattern!r} transposes {name}, which is {ndim}-D")
    transpose = transposed and ndim == 2
    if isinstance(rule.role, tuple):
        if ndim == 0:
            raise ValueError(f"align rule {rule.pattern!r} splits the scalar {name}")
        axis = 0 if transpose or ndim == 1 else ndim - 1
        parts = len(rule.role)
        if shape[axis] % parts:
            raise ValueError(
                f"align rule {rule.pattern!r} splits {name} {shape} into {parts} parts along "
                f"axis {axis}, which does not divide {shape[axis]}"
            )
        size = shape[axis] // parts
        return [
            (role, IndexMap(axis, k * size, (k + 1) * size, transpose, tag=role.rsplit(".", 1)[-1]))
            for k, role in enumerate(rule.role)
        ]
    if rule.rows is not None:
        if ndim == 0:
            raise ValueError(f"align rule {rule.pattern!r} takes rows of the scalar {name}")
        start, stop, _ = slice(*rule.rows).indices(shape[0])
        if stop <= start:
            raise ValueError(
                f"align rule {rule.pattern!r} takes no rows {rule.rows} of {name} {shape}"
            )
        if (start, stop) != (0, shape[0]):
            return [(rule.role, IndexMap(0, start, stop, transpose))]
    return [(rule.role, IndexMap(transpose=transpose))]


def align_parameters(params: Any, *, rules: Sequence[AlignRule] | None = None) -> Alignment:
    r"""The canonical views of every leaf of a multi-model tree.

    Args:
      params: ``{model_name: params_pytree}`` of arrays or ``ShapeDtypeStruct``.
      rules: ordered :class:`AlignRule` s, first match wins (``None``:
        :data:`DEFAULT_ALIGN_RULES`). To extend the defaults, put yours first:
        ``(*mine, *DEFAULT_ALIGN_RULES)``.

    Returns:
      The :class:`Alignment`; ``str()`` of it is a table of the views.

    Raises:
      ValueError: if a matching rule cannot apply to the leaf's shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"gpt2": {"h": {"0": {"attn": {"c_attn": {"kernel": jnp.zeros((6, 2))}}}}}}
      >>> [(v.name, v.role, v.shape, v.layer) for v in align_parameters(params).views]
      ... # doctest: +NORMALIZE_WHITESPACE
      [('gpt2/h/0/attn/c_attn/kernel[q].T', 'attn.q', (2, 2), 0),
       ('gpt2/h/0/attn/c_attn/kernel[k].T', 'attn.k', (2, 2), 0),
       ('gpt2/h/0/attn/c_attn/kernel[v].T', 'attn.v', (2, 2), 0)]
    """
    models = _tree.check_multi_model_tree(params)
    rules = check_rules(rules)
    leaves, _ = _tree.flatten_leaves(params)
    matched, unmatched = [], []
    for index, leaf in enumerate(leaves):
        name = f"{leaf.model}/{leaf.path}"
        for rule in rules:
            match = re.search(rule.pattern, name)
            if match is None:
                continue
            layer = match.groupdict().get("layer")
            if layer is not None and not layer.isdigit():
                raise ValueError(
                    f"align rule {rule.pattern!r}: layer {layer!r} of {name} is not a number"
                )
            matched.append((leaf, index, rule, None if layer is None else int(layer)))
            break
        else:
            unmatched.append((index, name))
    auto = _auto_orientations([(leaf, rule) for leaf, _, rule, _ in matched])
    found = []
    for leaf, index, rule, layer in matched:
        last = leaf.path.rsplit("/", 1)[-1]
        kind = rule.kind or LEAF_KINDS.get(last, last)
        transposed = auto.get(leaf.model, True) if rule.transpose == AUTO else rule.transpose
        name = f"{leaf.model}/{leaf.path}"
        for role, index_map in _leaf_views(rule, leaf.shape, name, transposed):
            found.append((leaf, index, role, kind, index_map, layer))
    num_layers: dict[str, int | None] = dict.fromkeys(models)
    for leaf, *_, layer in found:
        if layer is not None:
            num_layers[leaf.model] = max(num_layers[leaf.model] or 0, layer + 1)
    views = tuple(
        ParamView(
            leaf.model,
            leaf.path,
            index,
            role,
            kind,
            index_map.shape(leaf.shape),
            layer,
            None if layer is None else num_layers[leaf.model],
            index_map,
        )
        for leaf, index, role, kind, index_map, layer in found
    )
    return Alignment(
        models=models,
        views=views,
        unmatched=tuple(n for _, n in unmatched),
        unmatched_indices=tuple(i for i, _ in unmatched),
        num_layers=num_layers,
    )
