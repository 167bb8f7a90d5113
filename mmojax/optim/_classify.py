"""Parameter classification: every leaf gets a ``ParamKey(type, shape)``.

The type says what a leaf does (attention, feed-forward, embedding, norm, head,
other) and is decided from the leaf's "/"-joined path by an ordered list of
regular-expression rules, first match wins. The shape completes the key, so a
layer's kernel and bias land in different keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax

from mmojax.optim import _tree

PARAM_TYPES = ("attention", "ffn", "embedding", "norm", "head", "other")

# Ordered: a BERT ``attention/output/LayerNorm`` is a norm (not attention), its
# ``attention/output/dense`` is attention (not the feed-forward ``output/dense``),
# and a pooler or classifier is a head whatever it contains.
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|/)(classifier|pooler|score|qa_outputs|lm_head|cls|head|heads_out)(/|$)", "head"),
    (r"(^|/)([^/]*norm[^/]*|ln(_[^/]*)?)(/|$)", "norm"),
    (r"(^|/)([^/]*embed[^/]*|wte|wpe)(/|$)", "embedding"),
    (
        r"(^|/)([^/]*attn[^/]*|[^/]*attention[^/]*|query|key|value|[qkvo]_proj|out_proj"
        r"|w[qkv])(/|$)",
        "attention",
    ),
    (
        r"(^|/)([^/]*mlp[^/]*|[^/]*ffn[^/]*|feed_?forward|intermediate|output|c_fc|fc\d*"
        r"|up_proj|down_proj|gate_proj|wi(_\d+)?|wo|densereludense|w[123])(/|$)",
        "ffn",
    ),
)


@dataclasses.dataclass(frozen=True)
class ParamKey:
    """The sharing key of a parameter leaf.

    A plain (unregistered) dataclass, so a tree of keys has the same structure
    as the parameter tree it labels: each key is one leaf.

    Attributes:
      type: the leaf's function, one of :data:`PARAM_TYPES` (or a user type).
      shape: the leaf's shape.
    """

    type: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.type}{tuple(self.shape)}"


Rules = Sequence[tuple[str, str]]


def compile_rules(rules: Rules | None) -> tuple[tuple[re.Pattern[str], str], ...]:
    """Validates and compiles ``(regex, type)`` rules (``None``: the defaults)."""
    if rules is None:
        rules = DEFAULT_RULES
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise TypeError(f"rules must be a sequence of (regex, type) pairs, got {rules!r}")
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise TypeError(f"rule {i} must be a (regex, type) pair, got {rule!r}")
        pattern, kind = rule
        if not isinstance(pattern, str) or not isinstance(kind, str) or not kind:
            raise TypeError(f"rule {i} must be (str regex, non-empty str type), got {rule!r}")
        try:
            compiled.append((re.compile(pattern, re.IGNORECASE), kind))
        except re.error as err:
            raise ValueError(f"rule {i} has an invalid regex {pattern!r}: {err}") from None
    return tuple(compiled)


def classify_parameters(params: Any, *, rules: Rules | None = None) -> Any:
    """Labels every leaf of a multi-model tree with its :class:`ParamKey`.

    Args:
      params: ``{model_name: params_pytree}``; leaves may be arrays or
        ``jax.ShapeDtypeStruct``.
      rules: ordered ``(regex, type)`` pairs matched (case-insensitively, with
        ``re.search``) against the leaf's "/"-joined path inside its model;
        first match wins, no match gives ``"other"``. ``None`` uses
        :data:`DEFAULT_RULES`, which know Hugging Face Flax BERT, RoBERTa and
        GPT-2 names and common generic ones (``q_proj``, ``mlp``, ``norm``...).

    Returns:
      A tree of the same structure as ``params`` with ``ParamKey`` leaves; a
      :class:`Cohort`'s leaves get one member's label (path and shape inside
      the member, without the model axis).

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"gpt2": {"h": {"0": {"attn": {"c_attn": {"kernel": jnp.zeros((6, 2))}}}}}}
      >>> classify_parameters(params)["gpt2"]["h"]["0"]["attn"]["c_attn"]["kernel"]
      ParamKey(type='attention', shape=(6, 2))
    """
    _tree.check_multi_model_tree(params)
    compiled = compile_rules(rules)
    # A cohort's leaves are labelled as one member's: path and shape inside it.
    leaves, treedef = _tree.flatten_leaves(params)
    labels = [
        ParamKey(next((k for p, k in compiled if p.search(leaf.path)), "other"), leaf.shape)
        for leaf in leaves
    ]
    return jax.tree_util.tree_unflatten(treedef, labels)


LabelSpec = Any  # None | Callable[[params], labels] | labels tree


def resolve_labels(params: Any, labels: LabelSpec) -> list[Any]:
    """Returns one hashable label per flattened leaf of ``params``.

    ``labels`` is ``None`` (default classification), a callable mapping
    ``params`` to a label tree, or a label tree with the structure of
    ``params`` (leaves: any hashable, e.g. :class:`ParamKey`).
    """
    if labels is None:
        labels = classify_parameters(params)
    elif callable(labels) and not isinstance(labels, ParamKey):
        labels = labels(params)
    treedef = jax.tree_util.tree_structure(params)
    try:
        flat = treedef.flatten_up_to(labels)
    except (ValueError, TypeError) as err:
        raise ValueError(f"labels must have the structure of the parameter tree: {err}") from None
    for leaf in flat:
        try:
            hash(leaf)
        except TypeError:
            raise TypeError(f"labels must be hashable, got {type(leaf).__name__}") from None
    return flat
