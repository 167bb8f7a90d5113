"""Locally trained WordPiece tokenizers (never downloads anything)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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
    """Trains a BERT-style WordPiece tokenizer on ``texts``.

    The special tokens get the first ids: ``[PAD]`` = 0, ``[UNK]`` = 1,
    ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4. The tokenizer has no
    post-processor, padding or truncation: the encoders in this package add
    ``[CLS]``/``[SEP]`` and pad themselves.

    Args:
        texts: Training sentences (any iterable; consumed once).
        vocab_size: Maximum vocabulary size, special tokens included.
        min_frequency: Minimum count for a merge to enter the vocabulary.
        lowercase: Whether to lowercase (and strip accents from) the input.

    Returns:
        The trained tokenizer.

    Raises:
        ValueError: If ``vocab_size`` is too small to hold the special tokens.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    logger.info("trained WordPiece tokenizer with %d tokens", tokenizer.get_vocab_size())
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


def encoder_token_ids(tokenizer: Tokenizer) -> SpecialTokenIds:
    """Checks that ``tokenizer`` can be used by the ``encode_*`` functions.

    The encoders add special tokens, truncate and pad themselves, so the
    tokenizer must not be configured to truncate or pad on its own.

    Args:
        tokenizer: The tokenizer.

    Returns:
        Its special token ids (see :func:`special_token_ids`).

    Raises:
        ValueError: If the tokenizer truncates or pads, or lacks a special token.
    """
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        raise ValueError(
            "tokenizer must not truncate or pad by itself; call tokenizer.no_truncation() "
            "and tokenizer.no_padding() first"
        )
    return special_token_ids(tokenizer)
