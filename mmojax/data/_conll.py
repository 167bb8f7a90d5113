"""CoNLL-2003 named-entity recognition loader (IOB2 tags)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ._errors import DataError
from ._io import read_lines, require_file
from ._types import DatasetSplits, TaggingSplit

logger = logging.getLogger(__name__)

_TAG_RE = re.compile(r"^(O|[BI]-\S+)$")


def read_conll_file(path: str | os.PathLike[str]) -> TaggingSplit:
    """Reads one CoNLL file: one ``token ... TAG`` line per word.

    Columns are whitespace separated; the first column is the word and the
    last the tag, so both the two-column ``token TAG`` layout and the original
    four-column ``token POS CHUNK TAG`` layout are accepted. ``-DOCSTART-``
    lines are skipped and a blank line ends a sentence.

    Args:
        path: The file to read.

    Returns:
        The sentences and their tags.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: On a line with a single column, a tag that is neither
            ``O`` nor ``B-``/``I-`` prefixed, a file with no sentences, or
            non-UTF-8 bytes.
    """
    p = require_file(path)
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    word_tags: list[str] = []
    for lineno, line in enumerate(read_lines(p), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(words)
                tags.append(word_tags)
                words, word_tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(p, lineno, f"expected 'token TAG' (2 or 4 columns), got {line!r}")
        tag = fields[-1]
        if not _TAG_RE.match(tag):
            raise DataError(p, lineno, f"tag must be 'O' or start with 'B-'/'I-', got {tag!r}")
        words.append(fields[0])
        word_tags.append(tag)
    if words:
        sentences.append(words)
        tags.append(word_tags)
    if not sentences:
        raise DataError(p, 1, "no sentences found")
    return TaggingSplit(sentences, tags)


def ner_label_names(tag_seqs: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Builds a tag vocabulary: ``"O"`` first, then all ``B-``/``I-`` tags sorted.

    Both the ``B-`` and the ``I-`` tag of every entity type that occurs are
    included, even if only one of them was seen.

    Args:
        tag_seqs: Tag sequences (e.g. the train and validation tags together).

    Returns:
        The label names; a tag's id is its index.
    """
    types = {tag[2:] for seq in tag_seqs for tag in seq if tag != "O"}
    return ("O", *sorted(f"{p}-{t}" for t in types for p in ("B", "I")))


def load_conll(path: str | os.PathLike[str]) -> DatasetSplits[TaggingSplit]:
    """Loads CoNLL-2003 from a directory with ``train.txt`` and ``valid.txt``.

    Args:
        path: The directory.

    Returns:
        Train and validation splits; ``label_names`` is the tag vocabulary of
        both splits with ``"O"`` at index 0 (see :func:`ner_label_names`).

    Raises:
        FileNotFoundError: If the directory or one of the files is missing.
        DataError: If a file is malformed.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"CoNLL directory not found: {os.fspath(path)!r} (expected train.txt and valid.txt)"
        )
    train = read_conll_file(root / "train.txt")
    val = read_conll_file(root / "valid.txt")
    labels = ner_label_names(train.tags + val.tags)
    logger.info(
        "loaded CoNLL from %s: %d train, %d validation sentences", root, len(train), len(val)
    )
    return DatasetSplits(train, val, labels)
