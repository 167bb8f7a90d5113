"""Plain containers for loaded (not yet tokenised) data sets."""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

import numpy as np

SplitT = TypeVar("SplitT")


@dataclasses.dataclass(frozen=True)
class DatasetSplits(Generic[SplitT]):
    """A training split and a validation split of one data set.

    Attributes:
        train: The training split.
        validation: The validation (evaluation) split.
        label_names: Names of the label ids: ``label_names[i]`` is the name of
            label ``i`` (class names for classification, tags for NER; empty
            for extractive QA).
    """

    train: SplitT
    validation: SplitT
    label_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TextClassificationSplit:
    """Sentences with one integer label each.

    Attributes:
        texts: The raw sentences.
        labels: int32 array of shape ``[len(texts)]``.
    """

    texts: list[str]
    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int32)
        if labels.shape != (len(self.texts),):
            raise ValueError(f"labels must have shape ({len(self.texts)},), got {labels.shape}")
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, n: int | None) -> TextClassificationSplit:
        """Returns the first ``n`` examples (all of them if ``n`` is ``None``)."""
        if n is None:
            return self
        return TextClassificationSplit(self.texts[:n], self.labels[:n])


@dataclasses.dataclass(frozen=True)
class TaggingSplit:
    """Word-tokenised sentences with one tag per word (e.g. NER).

    Attributes:
        sentences: One list of words per sentence.
        tags: One list of tags per sentence, aligned with ``sentences``.
    """

    sentences: list[list[str]]
    tags: list[list[str]]

    def __post_init__(self) -> None:
        if len(self.sentences) != len(self.tags):
            raise ValueError(f"{len(self.sentences)} sentences but {len(self.tags)} tag sequences")
        for i, (words, tags) in enumerate(zip(self.sentences, self.tags, strict=True)):
            if len(words) != len(tags):
                raise ValueError(f"sentence {i}: {len(words)} words but {len(tags)} tags")

    def __len__(self) -> int:
        return len(self.sentences)


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One extractive question-answering example (SQuAD style).

    Attributes:
        id: The question id.
        context: The paragraph that contains the answer.
        question: The question.
        answers: Gold answer texts (several annotators; may repeat).
        answer_starts: Character offset of each answer in ``context``.
    """

    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
