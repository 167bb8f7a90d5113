"""Encoding of text-classification splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from ._encoded import DEFAULT_BUCKETS, EncodedSplit, pad_rows, validate_buckets
from ._tokenizer import encoder_token_ids
from ._types import TextClassificationSplit


def encode_classification(
    tokenizer: Tokenizer,
    split: TextClassificationSplit,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> EncodedSplit:
    """Tokenises sentences as ``[CLS] tokens [SEP]``, truncated to the largest bucket.

    Args:
        tokenizer: Tokenizer with BERT special tokens (see
            :func:`~mmojax.data.train_tokenizer`); it must not truncate or pad
            by itself.
        split: Sentences and labels.
        buckets: Allowed padded lengths.

    Returns:
        An :class:`EncodedSplit` with ``input_ids`` and ``attention_mask``
        (int32 ``[N, max(buckets)]``, padded with ``[PAD]``/0) and ``labels``
        (int32 ``[N]``).
    """
    buckets = validate_buckets(buckets)
    specials = encoder_token_ids(tokenizer)
    max_len = buckets[-1]
    encodings = tokenizer.encode_batch(list(split.texts), add_special_tokens=False)
    rows = [[specials.cls, *enc.ids[: max_len - 2], specials.sep] for enc in encodings]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    input_ids = pad_rows(rows, max_len, specials.pad)
    attention_mask = (np.arange(max_len)[None, :] < lengths[:, None]).astype(np.int32)
    return EncodedSplit(
        arrays={
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": np.asarray(split.labels, dtype=np.int32),
        },
        lengths=lengths,
        seq_keys=("input_ids", "attention_mask"),
        pad_values={"input_ids": specials.pad, "attention_mask": 0, "labels": 0},
        buckets=buckets,
    )
