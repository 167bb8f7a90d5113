"""Translation of :class:`ModelConfig` into Hugging Face configs and modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from transformers import BertConfig, GPT2Config, RobertaConfig
from transformers.models.bert import modeling_flax_bert as hf_bert
from transformers.models.roberta import modeling_flax_roberta as hf_roberta

from ._config import TASKS, ModelConfig
from ._gpt2_heads import (
    GPT2QuestionAnsweringHead,
    GPT2SequenceClassifier,
    GPT2TokenClassifier,
)

_MODULES: dict[tuple[str, str], type[nn.Module]] = {
    ("bert", "classification"): hf_bert.FlaxBertForSequenceClassificationModule,
    ("bert", "token_classification"): hf_bert.FlaxBertForTokenClassificationModule,
    ("bert", "qa"): hf_bert.FlaxBertForQuestionAnsweringModule,
    ("roberta", "classification"): hf_roberta.FlaxRobertaForSequenceClassificationModule,
    ("roberta", "token_classification"): hf_roberta.FlaxRobertaForTokenClassificationModule,
    ("roberta", "qa"): hf_roberta.FlaxRobertaForQuestionAnsweringModule,
    ("gpt2", "classification"): GPT2SequenceClassifier,
    ("gpt2", "token_classification"): GPT2TokenClassifier,
    ("gpt2", "qa"): GPT2QuestionAnsweringHead,
}


def roberta_max_positions(config: ModelConfig) -> int:
    """Number of RoBERTa position embeddings needed for ``config.max_length``.

    RoBERTa position ids start at ``pad_token_id + 1``, so the table needs
    ``max_length + pad_token_id + 1`` rows; at least ``max_length + 2`` rows are
    allocated, matching the HF convention (514 for 512 tokens).

    Args:
        config: Model configuration.

    Returns:
        The ``max_position_embeddings`` value to use.
    """
    return max(config.max_length + 2, config.max_length + config.pad_token_id + 1)


_HF_CONFIG_CLASSES = {"bert": BertConfig, "gpt2": GPT2Config, "roberta": RobertaConfig}

# HF dropout fields set from the single ``ModelConfig.dropout`` rate (``classifier_dropout``
# None makes the BERT/RoBERTa heads use ``hidden_dropout_prob``, as for from-scratch models).
_DROPOUT_FIELDS = {
    "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout"),
    "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "roberta": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
}


def _sizes(arch: str, hf: Any) -> dict[str, Any]:
    """The :class:`ModelConfig` size fields that a Hugging Face config describes."""
    if arch == "gpt2":
        return {
            "hidden": hf.n_embd,
            "layers": hf.n_layer,
            "heads": hf.n_head,
            "intermediate": hf.n_inner if hf.n_inner is not None else 4 * hf.n_embd,
            "vocab_size": hf.vocab_size,
            "max_length": hf.n_positions,
        }
    positions = hf.max_position_embeddings
    if arch == "roberta":  # the inverse of roberta_max_positions
        positions -= max(2, (hf.pad_token_id or 0) + 1)
    return {
        "hidden": hf.hidden_size,
        "layers": hf.num_hidden_layers,
        "heads": hf.num_attention_heads,
        "intermediate": hf.intermediate_size,
        "vocab_size": hf.vocab_size,
        "max_length": positions,
    }


def gpt2_pad_token_id(fields: Mapping[str, Any]) -> int:
    """Pad id for a GPT-2 config, which usually has none.

    GPT-2 checkpoints define no pad token (``pad_token_id`` null). mmojax's GPT-2
    models never look at the pad id (padding is ``attention_mask == 0``), but a
    config needs one: the checkpoint's ``pad_token_id`` if set, else its
    ``eos_token_id`` (the usual ``tokenizer.pad_token = tokenizer.eos_token``
    convention, which PyTorch's ``GPT2ForSequenceClassification`` also needs to
    find the last token), else 0.

    Args:
        fields: The ``config.json`` fields.

    Returns:
        The pad id.
    """
    vocab = fields.get("vocab_size", GPT2Config().vocab_size)
    for key in ("pad_token_id", "eos_token_id"):
        value = fields.get(key)
        if isinstance(value, int) and 0 <= value < vocab:
            return value
    return 0


def model_config_from_hf(
    arch: str, fields: Mapping[str, Any], *, dropout: float | None = None
) -> ModelConfig:
    """Describes a checkpoint's ``config.json`` as a :class:`ModelConfig`.

    The inverse of :func:`hf_config`: the sizes come from ``fields`` and the
    whole of ``fields`` is kept in ``ModelConfig.hf_config``.

    Args:
        arch: One of ``ARCHS``; must be the ``model_type`` of ``fields``.
        fields: The ``config.json`` contents, without the task-specific entries
            (``architectures``, ``id2label``, ``label2id``, ``num_labels``).
        dropout: The one dropout rate of the model; ``None`` keeps the
            checkpoint's hidden dropout (``hidden_dropout_prob`` / ``resid_pdrop``).

    Returns:
        The configuration.
    """
    fields = dict(fields)
    if arch == "gpt2":
        fields["pad_token_id"] = gpt2_pad_token_id(fields)
    hf = _HF_CONFIG_CLASSES[arch].from_dict(dict(fields))  # from_dict adds entries to its input
    if dropout is None:
        dropout = getattr(hf, _DROPOUT_FIELDS[arch][0])
    pad = hf.pad_token_id if hf.pad_token_id is not None else 0
    return ModelConfig(
        arch=arch, dropout=float(dropout), pad_token_id=pad, hf_config=fields, **_sizes(arch, hf)
    )


def _checkpoint_hf_config(config: ModelConfig, labels: int) -> Any:
    """The HF config of a model loaded from a checkpoint (``config.hf_config`` set)."""
    fields = dict(config.hf_config or {})
    for key in ("architectures", "id2label", "label2id", "num_labels", "model_type"):
        fields.pop(key, None)
    fields.update(dict.fromkeys(_DROPOUT_FIELDS[config.arch], float(config.dropout)))
    if config.arch != "gpt2":
        fields["classifier_dropout"] = None
    fields.update(pad_token_id=config.pad_token_id, num_labels=labels)
    hf = _HF_CONFIG_CLASSES[config.arch].from_dict(fields)
    described = {"pad_token_id": config.pad_token_id, **_sizes(config.arch, hf)}
    for name, value in described.items():
        if getattr(config, name) != value:
            raise ValueError(
                f"ModelConfig.{name} ({getattr(config, name)}) disagrees with its hf_config "
                f"({value}); change the checkpoint's config instead of the ModelConfig"
            )
    return hf


def hf_config(config: ModelConfig, task: str, num_labels: int) -> Any:
    """Builds the Hugging Face configuration object for a backbone and task.

    A from-scratch configuration maps its fields onto the HF config; one with
    ``hf_config`` (loaded from a checkpoint) uses those fields, with the dropout
    rates set from ``config.dropout`` and the number of labels from ``num_labels``.

    Args:
        config: Model configuration.
        task: One of ``TASKS``.
        num_labels: Number of classes (ignored for ``"qa"``, which always has
            two outputs: start and end logits).

    Returns:
        A ``BertConfig``, ``RobertaConfig`` or ``GPT2Config``.

    Raises:
        ValueError: If ``config.hf_config`` is set and the size fields of
            ``config`` disagree with it.
    """
    labels = 2 if task == "qa" else num_labels
    if config.hf_config is not None:
        return _checkpoint_hf_config(config, labels)
    rate = float(config.dropout)
    if config.arch == "gpt2":
        return GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.max_length,
            n_embd=config.hidden,
            n_layer=config.layers,
            n_head=config.heads,
            n_inner=config.intermediate,
            resid_pdrop=rate,
            embd_pdrop=rate,
            attn_pdrop=rate,
            summary_first_dropout=rate,
            pad_token_id=config.pad_token_id,
            num_labels=labels,
        )
    common = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.intermediate,
        "hidden_dropout_prob": rate,
        "attention_probs_dropout_prob": rate,
        "pad_token_id": config.pad_token_id,
        "num_labels": labels,
    }
    if config.arch == "bert":
        return BertConfig(max_position_embeddings=config.max_length, type_vocab_size=2, **common)
    return RobertaConfig(
        max_position_embeddings=roberta_max_positions(config),
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        **common,
    )


def hf_module(config: ModelConfig, task: str, num_labels: int) -> nn.Module:
    """Instantiates the ``flax.linen`` module for a backbone and task.

    Args:
        config: Model configuration.
        task: One of ``TASKS``.
        num_labels: Number of classes (ignored for ``"qa"``).

    Returns:
        An unbound flax module computing float32 logits.

    Raises:
        ValueError: For an unknown task, or a ``config`` whose fields disagree
            with its ``hf_config``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    module_cls = _MODULES[(config.arch, task)]
    return module_cls(config=hf_config(config, task, num_labels))
