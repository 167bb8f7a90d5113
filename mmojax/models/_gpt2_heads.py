"""Task heads on top of the Hugging Face Flax GPT-2 backbone.

``transformers`` ships no Flax GPT-2 classification or QA models, so these
small ``flax.linen`` modules wrap :class:`FlaxGPT2Module` (whose parameters
live under ``transformer/...``) and add heads named like their PyTorch
counterparts: ``score``, ``classifier`` and ``qa_outputs``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from transformers import GPT2Config
from transformers.models.gpt2.modeling_flax_gpt2 import FlaxGPT2Module


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last non-padding position of each sequence.

    Works for right and left padding; an all-ones row yields ``L - 1`` and an
    all-zeros row yields ``0``.

    Args:
        attention_mask: ``[B, L]`` array, non-zero for real tokens.

    Returns:
        ``[B]`` int32 indices.
    """
    positions = jnp.arange(attention_mask.shape[-1], dtype=jnp.int32)
    return jnp.max(jnp.where(attention_mask > 0, positions, 0), axis=-1)


def gpt2_position_ids(attention_mask: jax.Array) -> jax.Array:
    """Position ids that count real tokens only (robust to left padding).

    With right padding, or no padding, this equals ``arange(L)`` on real tokens.

    Args:
        attention_mask: ``[B, L]`` array, non-zero for real tokens.

    Returns:
        ``[B, L]`` int32 position ids in ``[0, L)``.
    """
    counts = jnp.cumsum((attention_mask > 0).astype(jnp.int32), axis=-1)
    return jnp.maximum(counts - 1, 0)


class _GPT2WithHead(nn.Module):
    """Shared GPT-2 backbone call; subclasses add the head."""

    config: GPT2Config
    dtype: jnp.dtype = jnp.float32

    def _hidden_states(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool
    ) -> jax.Array:
        """Runs the backbone and returns ``[B, L, H]`` final hidden states."""
        backbone = FlaxGPT2Module(self.config, dtype=self.dtype, name="transformer")
        outputs = backbone(
            input_ids,
            attention_mask,
            gpt2_position_ids(attention_mask),
            deterministic=deterministic,
            return_dict=False,
        )
        return outputs[0]

    def _dense(self, features: int, name: str, use_bias: bool = True) -> nn.Dense:
        """Dense layer initialised like GPT-2 (normal, ``initializer_range``)."""
        return nn.Dense(
            features,
            use_bias=use_bias,
            dtype=self.dtype,
            kernel_init=jax.nn.initializers.normal(stddev=self.config.initializer_range),
            name=name,
        )


class GPT2SequenceClassifier(_GPT2WithHead):
    """GPT-2 sequence classifier pooling the last non-padding token.

    Parameters: ``transformer/...`` (backbone) and ``score/kernel`` (no bias,
    as in ``transformers.GPT2ForSequenceClassification``).
    """

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """Computes ``[B, num_labels]`` logits."""
        hidden = self._hidden_states(input_ids, attention_mask, deterministic)
        index = last_token_index(attention_mask)
        pooled = jnp.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0, :]
        pooled = nn.Dropout(rate=self.config.summary_first_dropout)(
            pooled, deterministic=deterministic
        )
        return self._dense(self.config.num_labels, "score", use_bias=False)(pooled)


class GPT2TokenClassifier(_GPT2WithHead):
    """GPT-2 per-token classifier (dropout + dense ``classifier``)."""

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """Computes ``[B, L, num_labels]`` logits."""
        hidden = self._hidden_states(input_ids, attention_mask, deterministic)
        hidden = nn.Dropout(rate=self.config.resid_pdrop)(hidden, deterministic=deterministic)
        return self._dense(self.config.num_labels, "classifier")(hidden)


class GPT2QuestionAnsweringHead(_GPT2WithHead):
    """GPT-2 extractive QA head (dense ``qa_outputs`` to start/end logits)."""

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> tuple[jax.Array, jax.Array]:
        """Computes ``([B, L], [B, L])`` start and end logits."""
        hidden = self._hidden_states(input_ids, attention_mask, deterministic)
        logits = self._dense(2, "qa_outputs")(hidden)
        return logits[..., 0], logits[..., 1]
