"""Entity-level precision/recall/F1 for IOB2 tag sequences (seqeval-style)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class EntityScores(NamedTuple):
    """Micro-averaged entity scores.

    Attributes:
        precision: Correct predicted entities / predicted entities.
        recall: Correct predicted entities / true entities.
        f1: Harmonic mean of precision and recall (0 if both are 0).
        num_true: Number of true entities.
        num_pred: Number of predicted entities.
        num_correct: Number of predicted entities matching a true one exactly.
    """

    precision: float
    recall: float
    f1: float
    num_true: int
    num_pred: int
    num_correct: int


def _split_tag(tag: str) -> tuple[str, str]:
    """Splits ``"B-PER"`` into ``("B", "PER")``; anything else is ``("O", "")``."""
    if tag == "O" or len(tag) < 2 or tag[1] != "-":
        return "O", ""
    return tag[0], tag[2:]


def extract_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Finds the entity spans of one IOB2 tag sequence.

    An entity starts at a ``B-X`` tag, and also (leniently, like seqeval's
    default mode) at an ``I-X`` tag that does not continue an entity of the
    same type ``X``. It continues over following ``I-X`` tags. Tags other than
    ``B-``/``I-`` prefixed ones count as ``O``.

    Args:
        tags: The tags of one sentence.

    Returns:
        ``(type, start, end)`` per entity, ``end`` exclusive, in order.
    """
    entities: list[tuple[str, int, int]] = []
    current: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag)
        continues = prefix == "I" and kind == current
        if current is not None and not continues:
            entities.append((current, start, i))
            current = None
        if prefix in ("B", "I") and not continues:
            current, start = kind, i
    if current is not None:
        entities.append((current, start, len(tags)))
    return entities


def entity_f1(
    true_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]
) -> EntityScores:
    """Computes entity-level micro precision, recall and F1.

    A predicted entity is correct only if a true entity has exactly the same
    span and type. Entities never cross sentence boundaries.

    Args:
        true_tag_seqs: Gold IOB2 tags, one sequence per sentence.
        pred_tag_seqs: Predicted tags, aligned with ``true_tag_seqs``.

    Returns:
        The scores (all 0.0 when there are no entities at all).

    Raises:
        ValueError: If the number of sentences or a sentence length differ.
    """
    if len(true_tag_seqs) != len(pred_tag_seqs):
        raise ValueError(f"{len(true_tag_seqs)} true sequences but {len(pred_tag_seqs)} predicted")
    num_true = num_pred = num_correct = 0
    for i, (true, pred) in enumerate(zip(true_tag_seqs, pred_tag_seqs, strict=True)):
        if len(true) != len(pred):
            raise ValueError(f"sentence {i}: {len(true)} true tags but {len(pred)} predicted")
        true_set = set(extract_entities(true))
        pred_set = set(extract_entities(pred))
        num_true += len(true_set)
        num_pred += len(pred_set)
        num_correct += len(true_set & pred_set)
    precision = num_correct / num_pred if num_pred else 0.0
    recall = num_correct / num_true if num_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EntityScores(precision, recall, f1, num_true, num_pred, num_correct)
