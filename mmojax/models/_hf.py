"""Translation of :class:`ModelConfig` into Hugging Face configs and modules."""

from __future__ import annotations

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


def hf_config(config: ModelConfig, task: str, num_labels: int) -> Any:
    """Builds the Hugging Face configuration object for a backbone and task.

    Args:
        config: Model configuration.
        task: One of ``TASKS``.
        num_labels: Number of classes (ignored for ``"qa"``, which always has
            two outputs: start and end logits).

    Returns:
        A ``BertConfig``, ``RobertaConfig`` or ``GPT2Config``.
    """
    labels = 2 if task == "qa" else num_labels
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
        ValueError: For an unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    module_cls = _MODULES[(config.arch, task)]
    return module_cls(config=hf_config(config, task, num_labels))
