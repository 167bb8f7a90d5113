"""Locally trained WordPiece tokenizers (never downloads anything)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

logger = logging.getLogger(__name__)

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)


class SpecialTokenIds(NamedTuple):
    """Ids of the special tokens of a tokenizer."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 1,
    lowercase: bool = True,
) -> Tokenizer:
    """Builds a BERT-style WordPiece tokenizer from ``texts``, deterministically.

    The vocabulary is: the special tokens (``[PAD]`` = 0, ``[UNK]`` = 1,
    ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4), then every character seen
    (as a word start and as a ``##`` continuation), then whole words by
    decreasing count (ties in alphabetical order) until ``vocab_size``. A word
    outside the vocabulary is split greedily into the longest known pieces,
    down to characters, so nothing becomes ``[UNK]`` that was seen in training.

    Unlike ``tokenizers``' own WordPiece trainer, whose merges are broken by
    hash order and differ from call to call, the same texts always give the
    same ids, which exact resume and paired comparisons need. The tokenizer has
    no post-processor, padding or truncation: the encoders in this package add
    ``[CLS]``/``[SEP]`` and pad themselves.

    Args:
        texts: Training sentences (any iterable; consumed once).
        vocab_size: Maximum vocabulary size, special tokens included (the
            characters are always kept, even beyond it).
        min_frequency: Minimum count for a whole word to enter the vocabulary.
        lowercase: Whether to lowercase (and strip accents from) the input.

    Returns:
        The tokenizer.

    Raises:
        ValueError: If ``vocab_size`` is too small to hold the special tokens.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(word for word, _ in words)
    chars = sorted({c for word in counts for c in word})
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size or count < min_frequency:
            break
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    logger.info("built WordPiece tokenizer with %d tokens", tokenizer.get_vocab_size())
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike[str]) -> None:
    """Saves a tokenizer as a single JSON file (parent folders are created).

    Args:
        tokenizer: The tokenizer.
        path: Destination ``.json`` file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(os.fspath(p))


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Loads a tokenizer saved by :func:`save_tokenizer` (or any ``tokenizer.json``).

    Args:
        path: The JSON file.

    Returns:
        The tokenizer.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {os.fspath(p)!r}")
    return Tokenizer.from_file(os.fspath(p))


def special_token_ids(tokenizer: Tokenizer) -> SpecialTokenIds:
    """Looks up the ids of ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[MASK]``.

    Args:
        tokenizer: A tokenizer whose vocabulary contains the BERT special tokens.

    Returns:
        The ids.

    Raises:
        ValueError: If one of the tokens is not in the vocabulary.
    """
    ids = [tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS]
    missing = [tok for tok, i in zip(SPECIAL_TOKENS, ids, strict=True) if i is None]
    if missing:
        raise ValueError(f"tokenizer has no special token(s) {missing}")
    return SpecialTokenIds(*ids)
