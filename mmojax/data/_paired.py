"""One split, several tokenizations: every model reads the same examples in its own tokens.

When the models of a run use different tokenizers (a pretrained BERT with its
WordPiece, a GPT-2 with byte-level BPE), each tokenizes the *same* examples.
:func:`pair_splits` joins their encodings into one :class:`EncodedSplit`
whose rows are still the examples, so one :class:`BatchIterator` draws the
same examples for every model and comparisons stay paired. A model's arrays
are stored under ``"<model>/<key>"``; arrays that every model shares (a
sentence's class label) are stored once under their own key. All models are
padded to one width per batch (the bucket of the longest tokenization), so the
jitted step compiles once per bucket, as with one tokenizer.

:func:`model_batch` gives a model its view of a batch (its own arrays under
their plain keys, plus the shared ones); :func:`model_split` its view of a
split (for decoding predictions through its own alignment).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._encoded import EncodedSplit

SEPARATOR = "/"


@dataclasses.dataclass(frozen=True)
class PairedAlignment:
    """Per-model metadata of a paired split.

    Attributes:
        lengths: ``{model: int32 [N]}`` real tokens of each model's encoding.
        alignments: ``{model: alignment}`` of each model's encoding (NER
            word starts, QA spans, or ``None``).
    """

    lengths: Mapping[str, np.ndarray]
    alignments: Mapping[str, Any]


def pair_splits(splits: Mapping[str, EncodedSplit]) -> EncodedSplit:
    """Joins per-model encodings of the same examples into one split.

    Args:
        splits: ``{model: EncodedSplit}``, all of the same examples (same
            number of rows) and buckets.

    Returns:
        The joined split (see the module docstring). With a single model its
        split is returned unchanged.

    Raises:
        ValueError: If the splits differ in rows or buckets, or a model name
            contains ``/``.
    """
    names = list(splits)
    if len(names) == 1:
        return splits[names[0]]
    if any(SEPARATOR in n for n in names):
        raise ValueError(f"model names may not contain {SEPARATOR!r}: {names}")
    first = splits[names[0]]
    for name in names[1:]:
        other = splits[name]
        if len(other) != len(first):
            raise ValueError(
                f"{name} has {len(other)} encoded examples, {names[0]} has {len(first)}: "
                "paired splits must encode the same examples"
            )
        if other.buckets != first.buckets:
            raise ValueError(f"{name} has buckets {other.buckets}, {names[0]} {first.buckets}")
    shared = [
        key
        for key in first.arrays
        if key not in first.seq_keys
        and all(
            key in s.arrays
            and key not in s.seq_keys
            and np.array_equal(s.arrays[key], first.arrays[key])
            for s in splits.values()
        )
    ]
    arrays = {key: first.arrays[key] for key in shared}
    pad_values = {key: first.pad_values[key] for key in shared}
    seq_keys = []
    for name, split in splits.items():
        for key, arr in split.arrays.items():
            if key in shared:
                continue
            arrays[f"{name}{SEPARATOR}{key}"] = arr
            pad_values[f"{name}{SEPARATOR}{key}"] = split.pad_values[key]
            if key in split.seq_keys:
                seq_keys.append(f"{name}{SEPARATOR}{key}")
    lengths = np.max(np.stack([s.lengths for s in splits.values()]), axis=0)
    return EncodedSplit(
        arrays=arrays,
        lengths=lengths.astype(np.int32),
        seq_keys=tuple(seq_keys),
        pad_values=pad_values,
        buckets=first.buckets,
        alignment=PairedAlignment(
            {n: s.lengths for n, s in splits.items()},
            {n: s.alignment for n, s in splits.items()},
        ),
    )


def _own_view(mapping: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The shared entries of ``mapping`` and ``name``'s own ones, under their plain keys."""
    prefix = name + SEPARATOR
    return {
        (key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in mapping.items()
        if SEPARATOR not in key or key.startswith(prefix)
    }


def is_paired(split: EncodedSplit) -> bool:
    """Whether ``split`` joins several models' encodings."""
    return isinstance(split.alignment, PairedAlignment)


def model_batch(batch: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Model ``name``'s view of a batch: its own arrays under plain keys, and the shared ones.

    A batch of an unpaired split is returned as it is (every model reads it).
    Works on numpy and traced arrays alike (it only renames keys).
    """
    if not any(key.startswith(name + SEPARATOR) for key in batch):
        return batch
    return _own_view(batch, name)


def model_split(split: EncodedSplit, name: str) -> EncodedSplit:
    """Model ``name``'s own encoding inside a paired split (``split`` itself if unpaired)."""
    if not is_paired(split):
        return split
    align: PairedAlignment = split.alignment
    if name not in align.alignments:
        raise KeyError(f"the split has no encoding for {name!r}; it has {list(align.alignments)}")
    prefix = name + SEPARATOR
    return EncodedSplit(
        arrays=_own_view(split.arrays, name),
        lengths=align.lengths[name],
        seq_keys=tuple(k[len(prefix) :] for k in split.seq_keys if k.startswith(prefix)),
        pad_values=_own_view(split.pad_values, name),
        buckets=split.buckets,
        alignment=align.alignments[name],
    )
