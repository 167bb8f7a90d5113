"""Template-generated synthetic sentiment data set.

Every sentence is built from one of a few simple, negation-free templates. Its
label is fixed by the polarity of the sentiment words put into the template
(adjectives, verbs, feelings), while subjects, adverbs and aspects are neutral,
so even small models can learn the task quickly.
"""

from __future__ import annotations

import logging

import numpy as np

from ._types import DatasetSplits, TextClassificationSplit

logger = logging.getLogger(__name__)

LABEL_NAMES = ("negative", "positive")

_SUBJECTS = (
    "the movie",
    "this film",
    "the show",
    "the book",
    "the restaurant",
    "the album",
    "the game",
    "this phone",
    "the hotel",
    "the play",
    "the concert",
    "the series",
    "the novel",
    "this laptop",
    "the cafe",
    "the museum",
)
_ADVERBS = (
    "really",
    "truly",
    "very",
    "quite",
    "absolutely",
    "incredibly",
    "genuinely",
    "surprisingly",
    "remarkably",
    "rather",
    "so",
    "simply",
)
_ASPECTS = (
    "acting",
    "story",
    "plot",
    "music",
    "characters",
    "dialogue",
    "ending",
    "writing",
    "pacing",
    "visuals",
    "service",
    "design",
    "atmosphere",
    "sound",
    "staff",
    "layout",
)
# Per polarity (index 0 = negative, 1 = positive).
_ADJECTIVES = (
    (
        "terrible",
        "awful",
        "boring",
        "dreadful",
        "dull",
        "horrible",
        "disappointing",
        "poor",
        "bland",
        "tedious",
        "mediocre",
        "annoying",
        "clumsy",
        "forgettable",
        "painful",
        "messy",
    ),
    (
        "wonderful",
        "excellent",
        "brilliant",
        "delightful",
        "great",
        "amazing",
        "charming",
        "superb",
        "enjoyable",
        "fantastic",
        "lovely",
        "impressive",
        "beautiful",
        "fun",
        "memorable",
        "touching",
    ),
)
_VERBS = (
    ("hated", "disliked", "regretted", "loathed", "despised", "resented"),
    ("loved", "enjoyed", "adored", "liked", "admired", "treasured"),
)
_FEELINGS = (
    ("bored", "annoyed", "disappointed", "frustrated", "tired", "angry", "unhappy", "sad"),
    ("happy", "inspired", "delighted", "uplifted", "satisfied", "thrilled", "glad", "cheerful"),
)
_TEMPLATES = (
    "{subject} was {adverb} {adj} .",
    "{subject} is {adj} and {adj2} .",
    "i {verb} {subject} .",
    "the {aspect} in {subject} was {adj} .",
    "{subject} had {adverb} {adj} {aspect} .",
    "{subject} left me feeling {feeling} .",
    "overall , {subject} was {adj} .",
    "i {verb} the {aspect} , it was {adverb} {adj} .",
    "what {adj} {aspect} !",
    "{subject} made me {adverb} {feeling} .",
)


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    """Draws one word uniformly."""
    return words[int(rng.integers(len(words)))]


def _sentence(rng: np.random.Generator, label: int) -> str:
    """Fills a random template with words of polarity ``label``."""
    template = _pick(rng, _TEMPLATES)
    adj = _pick(rng, _ADJECTIVES[label])
    adj2 = _pick(rng, tuple(a for a in _ADJECTIVES[label] if a != adj))
    text = template.format(
        subject=_pick(rng, _SUBJECTS),
        adverb=_pick(rng, _ADVERBS),
        aspect=_pick(rng, _ASPECTS),
        adj=adj,
        adj2=adj2,
        verb=_pick(rng, _VERBS[label]),
        feeling=_pick(rng, _FEELINGS[label]),
    )
    return text[0].upper() + text[1:]


def _unique_sentences(rng: np.random.Generator, label: int, n: int) -> list[str]:
    """Draws ``n`` distinct sentences of one polarity (duplicates only if unavoidable)."""
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n and attempts < 50 * n + 1000:
        attempts += 1
        text = _sentence(rng, label)
        if text not in seen:
            seen.add(text)
            out.append(text)
    if len(out) < n:
        logger.warning("synthetic sentiment: only %d distinct sentences; repeating", len(out))
        while len(out) < n:
            out.append(_sentence(rng, label))
    return out


def _interleave(
    rng: np.random.Generator, neg: list[str], pos: list[str]
) -> TextClassificationSplit:
    """Shuffles negative and positive sentences into one labelled split."""
    texts = neg + pos
    labels = np.array([0] * len(neg) + [1] * len(pos), dtype=np.int32)
    order = rng.permutation(len(texts))
    return TextClassificationSplit([texts[i] for i in order], labels[order])


def make_synthetic_sentiment(
    n_train: int = 500, n_val: int = 100, seed: int = 0
) -> DatasetSplits[TextClassificationSplit]:
    """Generates the synthetic binary sentiment data set.

    Labels are balanced within each split (the negative class gets the smaller
    half when a split size is odd). Sentences are distinct within and across
    the splits, so train and validation are disjoint. The result depends only
    on the arguments: the same seed gives identical texts and labels.

    Args:
        n_train: Number of training sentences.
        n_val: Number of validation sentences.
        seed: Seed of the random generator.

    Returns:
        Train and validation splits with ``label_names == ("negative", "positive")``.

    Raises:
        ValueError: If a size is negative.
    """
    if n_train < 0 or n_val < 0:
        raise ValueError(f"split sizes must be >= 0, got n_train={n_train}, n_val={n_val}")
    rng = np.random.Generator(np.random.PCG64([seed, 0x5E47]))
    n_pos_train, n_pos_val = (n_train + 1) // 2, (n_val + 1) // 2
    n_neg_train, n_neg_val = n_train - n_pos_train, n_val - n_pos_val
    neg = _unique_sentences(rng, 0, n_neg_train + n_neg_val)
    pos = _unique_sentences(rng, 1, n_pos_train + n_pos_val)
    train = _interleave(rng, neg[:n_neg_train], pos[:n_pos_train])
    val = _interleave(rng, neg[n_neg_train:], pos[n_pos_train:])
    return DatasetSplits(train=train, validation=val, label_names=LABEL_NAMES)
