"""Encoding of text-classification splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from ._encoded import DEFAULT_BUCKETS, EncodedSplit, pad_rows, validate_buckets
from ._frame import token_frame
from ._types import TextClassificationSplit


def encode_classification(
    tokenizer: Tokenizer,
    split: TextClassificationSplit,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> EncodedSplit:
    """Tokenises sentences as ``[CLS] tokens [SEP]``, truncated to the largest bucket.

    The special tokens are those of the tokenizer's family (see
    :func:`~mmojax.data.token_frame`): ``<s> tokens </s>`` for RoBERTa's,
    ``tokens <|endoftext|>`` for GPT-2's.

    Args:
        tokenizer: The project's WordPiece tokenizer (see
            :func:`~mmojax.data.train_tokenizer`) or a checkpoint's; it must not
            truncate or pad by itself.
        split: Sentences and labels.
        buckets: Allowed padded lengths.

    Returns:
        An :class:`EncodedSplit` with ``input_ids`` and ``attention_mask``
        (int32 ``[N, max(buckets)]``, padded with ``[PAD]``/0) and ``labels``
        (int32 ``[N]``).
    """
    buckets = validate_buckets(buckets)
    frame = token_frame(tokenizer)
    max_len = buckets[-1]
    keep = max_len - frame.single_overhead
    encodings = tokenizer.encode_batch(list(split.texts), add_special_tokens=False)
    rows = [[*frame.begin, *enc.ids[:keep], *frame.end] for enc in encodings]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    input_ids = pad_rows(rows, max_len, frame.pad)
    attention_mask = (np.arange(max_len)[None, :] < lengths[:, None]).astype(np.int32)
    return EncodedSplit(
        arrays={
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": np.asarray(split.labels, dtype=np.int32),
        },
        lengths=lengths,
        seq_keys=("input_ids", "attention_mask"),
        pad_values={"input_ids": frame.pad, "attention_mask": 0, "labels": 0},
        buckets=buckets,
    )
