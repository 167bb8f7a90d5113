"""SQuAD v1.1 exact-match and token-F1 scores."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalises an answer like the official SQuAD script.

    Lowercases, removes ASCII punctuation, removes the articles a/an/the and
    collapses whitespace.

    Args:
        text: An answer string.

    Returns:
        The normalised string.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, truth: str) -> float:
    """Token-overlap F1 of two answers after normalisation."""
    pred_tokens = normalize_answer(prediction).split()
    true_tokens = normalize_answer(truth).split()
    if not pred_tokens or not true_tokens:
        return float(pred_tokens == true_tokens)
    common = sum((Counter(pred_tokens) & Counter(true_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def _pairs(
    predictions: Mapping[str, str] | Sequence[str],
    references: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
) -> list[tuple[str, Sequence[str]]]:
    """Aligns predictions with references as (prediction, gold answers) pairs."""
    if isinstance(references, Mapping):
        if not isinstance(predictions, Mapping):
            raise TypeError("references is a mapping, so predictions must be one too")
        return [(predictions.get(qid, ""), golds) for qid, golds in references.items()]
    if isinstance(predictions, Mapping) or len(predictions) != len(references):
        raise ValueError("predictions and references must be sequences of the same length")
    return list(zip(predictions, references, strict=True))


def squad_exact_match_and_f1(
    predictions: Mapping[str, str] | Sequence[str],
    references: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
) -> dict[str, float]:
    """Scores predicted answers against gold answers, SQuAD v1.1 style.

    Each question scores the maximum over its gold answers; scores are then
    averaged over questions. A question missing from a ``predictions``
    mapping scores 0 (as in the official script). When both normalised
    strings are empty, F1 is 1 (they match exactly).

    Args:
        predictions: Predicted answer per question: a mapping from question id,
            or a sequence aligned with ``references``.
        references: Gold answers per question (a mapping from question id, or
            a sequence of answer lists).

    Returns:
        ``{"exact_match": ..., "f1": ...}`` as fractions in [0, 1] (multiply by
        100 for the usual SQuAD percentages).

    Raises:
        ValueError: If there are no references, a question has no gold answer,
            or aligned sequences differ in length.
    """
    pairs = _pairs(predictions, references)
    if not pairs:
        raise ValueError("no references to score")
    em_total = f1_total = 0.0
    for i, (pred, golds) in enumerate(pairs):
        if isinstance(golds, str) or not golds:
            raise ValueError(f"reference {i} must be a non-empty list of answer strings")
        em_total += max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1_total += max(_token_f1(pred, g) for g in golds)
    return {"exact_match": em_total / len(pairs), "f1": f1_total / len(pairs)}
