"""Tokenised, padded data sets and length buckets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_BUCKETS = (16, 32, 64, 128)
DEFAULT_QA_BUCKETS = (64, 128, 256, 384)
IGNORE_INDEX = -100

MASK_KEY = "mask"
INDEX_KEY = "example_index"


def validate_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """Checks and sorts a set of bucket lengths.

    Args:
        buckets: Sequence lengths (positive integers).

    Returns:
        The distinct lengths in increasing order.

    Raises:
        ValueError: If ``buckets`` is empty or holds a length < 3 (room for
            ``[CLS]``, one token and ``[SEP]``).
    """
    out = tuple(sorted({int(b) for b in buckets}))
    if not out or out[0] < 3:
        raise ValueError(f"buckets must be non-empty lengths >= 3, got {tuple(buckets)}")
    return out


def bucket_for_length(length: int, buckets: Sequence[int]) -> int:
    """Returns the smallest bucket that holds ``length`` tokens (else the largest).

    Args:
        length: Number of tokens.
        buckets: Increasing bucket lengths.

    Returns:
        The padded length to use.
    """
    for b in buckets:
        if length <= b:
            return int(b)
    return int(buckets[-1])


def pad_rows(rows: Sequence[Sequence[int]], width: int, pad: int) -> np.ndarray:
    """Stacks integer rows into an int32 ``[len(rows), width]`` array.

    Args:
        rows: Rows of at most ``width`` integers.
        width: Columns of the result.
        pad: Value for the unused columns.

    Returns:
        The padded array.
    """
    out = np.full((len(rows), width), pad, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A tokenised split stored at the largest bucket length.

    Batches are cut to the bucket of their longest example by :meth:`gather`.

    Attributes:
        arrays: Per-example numpy arrays, all with leading dimension ``N``.
        lengths: int32 ``[N]`` number of real tokens (specials included).
        seq_keys: Keys of ``arrays`` whose second axis is the token axis.
        pad_values: Fill value per key for padding rows of an eval batch.
        buckets: Allowed padded lengths, increasing.
        alignment: Task metadata used to decode predictions
            (:class:`~mmojax.data.NerAlignment`,
            :class:`~mmojax.data.QASpans`, or ``None``).
    """

    arrays: Mapping[str, np.ndarray]
    lengths: np.ndarray
    seq_keys: tuple[str, ...]
    pad_values: Mapping[str, int]
    buckets: tuple[int, ...]
    alignment: Any = None

    def __post_init__(self) -> None:
        n = len(self.lengths)
        for key, arr in self.arrays.items():
            if arr.shape[0] != n:
                raise ValueError(f"array {key!r} has {arr.shape[0]} rows, expected {n}")
            if key in self.seq_keys and arr.shape[1] != self.buckets[-1]:
                raise ValueError(f"array {key!r} must have {self.buckets[-1]} columns")
        if MASK_KEY in self.arrays or INDEX_KEY in self.arrays:
            raise ValueError(f"{MASK_KEY!r} and {INDEX_KEY!r} are reserved batch keys")

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, rows: np.ndarray, num_rows: int | None = None) -> dict[str, np.ndarray]:
        """Builds a batch from the given example indices.

        Token-axis arrays are cut to the bucket of the longest selected
        example. With ``num_rows`` larger than ``len(rows)``, padding rows are
        appended (filled with ``pad_values``, ``mask`` 0, ``example_index`` -1).

        Args:
            rows: Example indices (int array).
            num_rows: Rows of the batch (default: ``len(rows)``).

        Returns:
            The arrays, plus ``mask`` (float32 ``[B]``, 1 for real rows) and
            ``example_index`` (int32 ``[B]``).
        """
        rows = np.asarray(rows, dtype=np.int64)
        num_rows = len(rows) if num_rows is None else num_rows
        longest = int(self.lengths[rows].max()) if len(rows) else 1
        width = bucket_for_length(longest, self.buckets)
        batch: dict[str, np.ndarray] = {}
        for key, arr in self.arrays.items():
            part = arr[rows, :width] if key in self.seq_keys else arr[rows]
            if num_rows > len(rows):
                fill = np.full(
                    (num_rows - len(rows), *part.shape[1:]), self.pad_values[key], part.dtype
                )
                part = np.concatenate([part, fill])
            batch[key] = part
        mask = np.zeros(num_rows, np.float32)
        mask[: len(rows)] = 1.0
        index = np.full(num_rows, -1, np.int32)
        index[: len(rows)] = rows
        batch[MASK_KEY] = mask
        batch[INDEX_KEY] = index
        return batch

    def bucket_counts(self) -> dict[int, int]:
        """Counts examples per bucket (by each example's own length).

        Returns:
            ``{bucket_length: number_of_examples}`` for every bucket.
        """
        idx = np.searchsorted(np.asarray(self.buckets), self.lengths, side="left")
        idx = np.minimum(idx, len(self.buckets) - 1)
        counts = np.bincount(idx, minlength=len(self.buckets))
        return {b: int(c) for b, c in zip(self.buckets, counts, strict=True)}
