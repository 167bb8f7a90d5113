"""Architecture-agnostic model configuration and named size presets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

ARCHS: tuple[str, ...] = ("bert", "gpt2", "roberta")
"""Supported backbone architectures."""

TASKS: tuple[str, ...] = ("classification", "token_classification", "qa")
"""Supported task heads."""

# Each preset maps a field name either to one value for every architecture or
# to a per-architecture dict. "small" follows the benchmark specification
# ("hidden 128, 2/2/3 layers" for BERT / GPT-2 / RoBERTa).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 256},
    "small": {
        "hidden": 128,
        "layers": {"bert": 2, "gpt2": 2, "roberta": 3},
        "heads": 2,
        "intermediate": 512,
    },
    "base": {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072},
}


def _check_int(name: str, value: Any, minimum: int) -> None:
    """Raises TypeError/ValueError unless ``value`` is an int (not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size and regularisation settings for one transformer backbone.

    Attributes:
        arch: Backbone architecture, one of ``ARCHS``.
        hidden: Hidden (embedding) size.
        layers: Number of transformer blocks.
        heads: Number of attention heads; must divide ``hidden``.
        intermediate: Feed-forward inner size (GPT-2 ``n_inner``).
        vocab_size: Vocabulary size of the tokenizer.
        max_length: Longest input sequence the model must accept.
        dropout: Dropout rate used for hidden states, attention probabilities
            and the task head.
        pad_token_id: Id of the padding token (RoBERTa derives position ids
            from it).
        hf_config: ``None`` for a from-scratch model. For a model loaded from a
            checkpoint (:func:`load_pretrained`): the fields of its
            ``config.json`` (a JSON-compatible dict, copied on construction),
            from which the Hugging Face config is built instead, so every field
            (``layer_norm_eps``, the activation, ``type_vocab_size``, ...) is the
            checkpoint's own. The fields above must then agree with it; the
            dropout rate above applies to every dropout of the model.

    Raises:
        ValueError: If a field has an invalid value; the message names the field.
        TypeError: If a field has the wrong type; the message names the field.
    """

    arch: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_length: int
    dropout: float = 0.1
    pad_token_id: int = 0
    hf_config: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {list(ARCHS)}, got {self.arch!r}")
        for name in ("hidden", "layers", "heads", "intermediate", "vocab_size", "max_length"):
            _check_int(name, getattr(self, name), 1)
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"dropout must be a float, got {self.dropout!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_int("pad_token_id", self.pad_token_id, 0)
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(
                f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})"
            )
        if self.hf_config is not None:
            if not isinstance(self.hf_config, Mapping):
                raise TypeError(f"hf_config must be a mapping or None, got {self.hf_config!r}")
            # A detached, canonical copy: later edits of the caller's dict cannot change it.
            object.__setattr__(self, "hf_config", json.loads(self._hf_config_json()))

    def _hf_config_json(self) -> str:
        try:
            return json.dumps(self.hf_config, sort_keys=True)
        except TypeError as error:
            raise TypeError(f"hf_config must be JSON-serialisable: {error}") from None

    def __hash__(self) -> int:
        # The generated hash would fail on the hf_config dict; hash its canonical JSON.
        values = tuple(
            getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "hf_config"
        )
        return hash((values, self._hf_config_json()))

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden // self.heads

    def replace(self, **changes: Any) -> ModelConfig:
        """Returns a validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def preset(
    name: str,
    arch: str,
    *,
    vocab_size: int,
    max_length: int,
    **overrides: Any,
) -> ModelConfig:
    """Builds a :class:`ModelConfig` from a named size preset.

    Args:
        name: Preset name, one of ``PRESETS`` ("tiny", "small", "base").
        arch: Backbone architecture, one of ``ARCHS``.
        vocab_size: Vocabulary size.
        max_length: Maximum sequence length.
        **overrides: Explicit :class:`ModelConfig` field values that take
            precedence over the preset (e.g. ``layers=4``, ``dropout=0.0``).

    Returns:
        The validated configuration.

    Raises:
        ValueError: For an unknown preset, architecture or field name, or an
            invalid resulting configuration.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; valid fields: {sorted(fields)}")
    values: dict[str, Any] = {}
    for key, value in PRESETS[name].items():
        values[key] = value[arch] if isinstance(value, dict) else value
    values.update(arch=arch, vocab_size=vocab_size, max_length=max_length)
    values.update(overrides)
    return ModelConfig(**values)
