"""Encoding of word-tagged (NER) splits with first-sub-token label alignment."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from ._encoded import DEFAULT_BUCKETS, IGNORE_INDEX, EncodedSplit, pad_rows, validate_buckets
from ._frame import for_pretokenized, token_frame
from ._types import TaggingSplit


@dataclasses.dataclass(frozen=True)
class NerAlignment:
    """Word-to-token mapping of an encoded tagging split.

    Attributes:
        word_starts: Per sentence, an int32 array with the token position of
            each word's first sub-token, or -1 where the word was truncated
            away (or produced no tokens).
        label_names: Tag of each label id.
    """

    word_starts: list[np.ndarray]
    label_names: tuple[str, ...]


def encode_ner(
    tokenizer: Tokenizer,
    split: TaggingSplit,
    label_names: Sequence[str],
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> EncodedSplit:
    """Tokenises tagged sentences, labelling each word's first sub-token.

    The sequence is ``[CLS] sub-tokens [SEP]`` (or the tokenizer family's
    frame, see :func:`~mmojax.data.token_frame`), truncated to the largest
    bucket. Byte-level BPE tokenizers encode every word as if a space came
    before it (``add_prefix_space``, see :func:`~mmojax.data.for_pretokenized`).
    ``labels[i, t]`` is the tag id of the word whose first sub-token is at
    position ``t``; other sub-tokens, specials and padding get
    ``IGNORE_INDEX`` (-100).

    Args:
        tokenizer: The project's WordPiece tokenizer or a checkpoint's.
        split: Sentences and their tags.
        label_names: Tag vocabulary (e.g. ``DatasetSplits.label_names``).
        buckets: Allowed padded lengths.

    Returns:
        An :class:`EncodedSplit` with int32 ``[N, max(buckets)]`` arrays
        ``input_ids``, ``attention_mask`` and ``labels``; its ``alignment`` is
        a :class:`NerAlignment`.

    Raises:
        ValueError: If a tag is not in ``label_names``.
    """
    buckets = validate_buckets(buckets)
    frame = token_frame(tokenizer)
    max_len = buckets[-1]
    keep = max_len - frame.single_overhead
    first = len(frame.begin)
    label_ids = {name: i for i, name in enumerate(label_names)}
    encodings = for_pretokenized(tokenizer).encode_batch(
        [list(words) for words in split.sentences], is_pretokenized=True, add_special_tokens=False
    )
    rows: list[list[int]] = []
    label_rows: list[list[int]] = []
    word_starts: list[np.ndarray] = []
    for sent_idx, (enc, tags) in enumerate(zip(encodings, split.tags, strict=True)):
        ids = enc.ids[:keep]
        word_ids = enc.word_ids[:keep]
        starts = np.full(len(tags), -1, dtype=np.int32)
        labels = [IGNORE_INDEX] * (len(ids) + frame.single_overhead)
        previous = None
        for pos, word in enumerate(word_ids, start=first):
            if word is not None and word != previous:
                tag = tags[word]
                if tag not in label_ids:
                    raise ValueError(f"sentence {sent_idx}: tag {tag!r} is not in label_names")
                starts[word] = pos
                labels[pos] = label_ids[tag]
            previous = word
        rows.append([*frame.begin, *ids, *frame.end])
        label_rows.append(labels)
        word_starts.append(starts)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    return EncodedSplit(
        arrays={
            "input_ids": pad_rows(rows, max_len, frame.pad),
            "attention_mask": (np.arange(max_len)[None, :] < lengths[:, None]).astype(np.int32),
            "labels": pad_rows(label_rows, max_len, IGNORE_INDEX),
        },
        lengths=lengths,
        seq_keys=("input_ids", "attention_mask", "labels"),
        pad_values={"input_ids": frame.pad, "attention_mask": 0, "labels": IGNORE_INDEX},
        buckets=buckets,
        alignment=NerAlignment(word_starts, tuple(label_names)),
    )


def ner_predictions_to_tags(
    encoded: EncodedSplit, example_index: np.ndarray, predicted_ids: np.ndarray
) -> list[list[str]]:
    """Maps token-level predicted label ids back to one tag per word.

    Each word takes the prediction at its first sub-token; words that were
    truncated away get ``"O"``. Padding rows (``example_index`` -1) are
    skipped.

    Args:
        encoded: The split returned by :func:`encode_ner`.
        example_index: int ``[B]`` from the batch (``batch["example_index"]``).
        predicted_ids: int ``[B, L]`` predicted label ids for that batch.

    Returns:
        Word tags for each real row of the batch, in row order.

    Raises:
        TypeError: If ``encoded`` was not produced by :func:`encode_ner`.
    """
    align = encoded.alignment
    if not isinstance(align, NerAlignment):
        raise TypeError("encoded split has no NER alignment; use encode_ner")
    predicted_ids = np.asarray(predicted_ids)
    out: list[list[str]] = []
    for row, idx in enumerate(np.asarray(example_index)):
        if idx < 0:
            continue
        starts = align.word_starts[idx]
        tags = []
        for pos in starts:
            tags.append(align.label_names[int(predicted_ids[row, pos])] if pos >= 0 else "O")
        out.append(tags)
    return out
