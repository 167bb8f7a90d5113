"""Pure ``jax.numpy`` losses and metrics for the supported task heads."""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE_INDEX = -100
"""Label value ignored by :func:`token_classification_loss` (HF convention)."""

Metrics = dict[str, jax.Array]


def _per_example_ce(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy and correctness per position; invalid labels give 0.

    Args:
        logits: ``[..., C]`` logits.
        labels: ``[...]`` integer labels; values outside ``[0, C)`` are
            treated as ignored (their loss and correctness are 0).

    Returns:
        ``(nll, correct)`` float32 arrays of shape ``labels.shape``.
    """
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.int32)
    num_classes = logits.shape[-1]
    safe = jnp.clip(labels, 0, num_classes - 1)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return nll, correct


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum(values * weights) / max(sum(weights), 1e-9)`` (0 when no weight)."""
    total = jnp.sum(weights)
    return jnp.sum(values * weights) / jnp.maximum(total, 1e-9)


def classification_loss(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """Mean softmax cross-entropy for sequence classification.

    Args:
        logits: ``[B, C]`` logits.
        labels: ``[B]`` integer labels in ``[0, C)``.
        mask: Optional ``[B]`` weights (e.g. 0 for padding examples of a
            fixed-size batch); the mean is taken over weighted examples.

    Returns:
        ``(loss, {"loss": loss, "accuracy": accuracy})``.
    """
    nll, correct = _per_example_ce(logits, labels)
    weights = jnp.ones_like(nll) if mask is None else jnp.asarray(mask, jnp.float32)
    loss = _weighted_mean(nll, weights)
    return loss, {"loss": loss, "accuracy": _weighted_mean(correct, weights)}


def token_classification_loss(
    logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX
) -> tuple[jax.Array, Metrics]:
    """Mean per-token cross-entropy, skipping ``ignore_index`` labels.

    Args:
        logits: ``[B, L, C]`` logits.
        labels: ``[B, L]`` integer labels; ``ignore_index`` (-100) marks
            padding, special tokens and non-first sub-words.
        ignore_index: Label value to skip.

    Returns:
        ``(loss, {"loss", "accuracy", "num_tokens"})`` where the means are over
        labelled tokens (0 if there are none).
    """
    labels = jnp.asarray(labels, jnp.int32)
    nll, correct = _per_example_ce(logits, labels)
    weights = (labels != ignore_index).astype(jnp.float32)
    loss = _weighted_mean(nll, weights)
    metrics = {
        "loss": loss,
        "accuracy": _weighted_mean(correct, weights),
        "num_tokens": jnp.sum(weights),
    }
    return loss, metrics


def qa_loss(
    start_logits: jax.Array,
    end_logits: jax.Array,
    start_positions: jax.Array,
    end_positions: jax.Array,
) -> tuple[jax.Array, Metrics]:
    """Extractive-QA loss: mean of start and end cross-entropies.

    Positions outside ``[0, L)`` (e.g. -100 or a clipped answer) are ignored,
    like Hugging Face's ``ignored_index`` handling.

    Args:
        start_logits: ``[B, L]`` start logits.
        end_logits: ``[B, L]`` end logits.
        start_positions: ``[B]`` answer start token indices.
        end_positions: ``[B]`` answer end token indices.

    Returns:
        ``(loss, {"loss", "start_accuracy", "end_accuracy", "exact_match"})``;
        ``exact_match`` is the fraction of examples with both ends correct.
    """
    length = start_logits.shape[-1]
    start_positions = jnp.asarray(start_positions, jnp.int32)
    end_positions = jnp.asarray(end_positions, jnp.int32)
    start_nll, start_ok = _per_example_ce(start_logits, start_positions)
    end_nll, end_ok = _per_example_ce(end_logits, end_positions)
    start_w = ((start_positions >= 0) & (start_positions < length)).astype(jnp.float32)
    end_w = ((end_positions >= 0) & (end_positions < length)).astype(jnp.float32)
    loss = 0.5 * (_weighted_mean(start_nll, start_w) + _weighted_mean(end_nll, end_w))
    both_w = start_w * end_w
    metrics = {
        "loss": loss,
        "start_accuracy": _weighted_mean(start_ok, start_w),
        "end_accuracy": _weighted_mean(end_ok, end_w),
        "exact_match": _weighted_mean(start_ok * end_ok, both_w),
    }
    return loss, metrics
