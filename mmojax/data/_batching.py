"""Deterministic, resumable batch iteration over an encoded split."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ._encoded import EncodedSplit


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """Returns the example order of one epoch.

    The order depends only on ``(seed, epoch, num_examples)``, so models that
    are trained side by side on the same split see the same examples in the
    same order, whatever their tokenizer.

    Args:
        num_examples: Size of the split.
        seed: Data-order seed.
        epoch: Epoch number (0-based).

    Returns:
        A permutation of ``range(num_examples)`` (int64).
    """
    rng = np.random.Generator(np.random.PCG64([seed, epoch]))
    return rng.permutation(num_examples)


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """Yields batches (dicts of numpy arrays) of an :class:`EncodedSplit`.

    Training mode (``shuffle=True``, ``drop_last=True``) visits a fresh
    permutation each epoch (see :func:`epoch_permutation`) and drops the
    incomplete last batch. Evaluation mode (``shuffle=False``,
    ``drop_last=False``) visits examples in order and pads the last batch to
    ``batch_size`` rows; ``batch["mask"]`` is 1.0 for real rows and 0.0 for
    padding rows, so masked metrics are exact.

    Iteration runs for ``num_epochs`` epochs (forever if ``None``). The
    position of the next batch is :attr:`position`, a plain dict
    ``{"epoch": e, "index": i}``; :meth:`restore` jumps back to such a
    position, so a resumed run yields exactly the same following batches.

    Args:
        split: The encoded examples.
        batch_size: Rows per batch.
        seed: Data-order seed (used when ``shuffle`` is true).
        shuffle: Whether to shuffle every epoch.
        drop_last: Whether to drop the incomplete last batch of an epoch
            (otherwise it is padded to ``batch_size`` rows).
        num_epochs: Number of epochs to yield, or ``None`` for no limit.

    Raises:
        ValueError: If ``batch_size`` < 1, or no full batch fits in the split
            while ``drop_last`` is true.
    """

    def __init__(
        self,
        split: EncodedSplit,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_epochs: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._split = split
        self._batch_size = batch_size
        self._seed = seed
        self._shuffle = shuffle
        self._drop_last = drop_last
        self._num_epochs = num_epochs
        n = len(split)
        self._num_batches = n // batch_size if drop_last else -(-n // batch_size)
        if self._num_batches == 0:
            raise ValueError(f"split of {n} examples holds no batch of {batch_size}")
        self._epoch = 0
        self._index = 0
        self._order_epoch = -1  # epoch whose permutation is cached in _order
        self._order = np.arange(n)

    @classmethod
    def for_eval(cls, split: EncodedSplit, batch_size: int) -> BatchIterator:
        """Returns a one-pass, in-order, padded iterator for evaluation."""
        return cls(split, batch_size, shuffle=False, drop_last=False, num_epochs=1)

    @property
    def num_batches_per_epoch(self) -> int:
        """Number of batches in every epoch."""
        return self._num_batches

    @property
    def position(self) -> dict[str, int]:
        """Position of the next batch: ``{"epoch": int, "index": int}``."""
        return {"epoch": self._epoch, "index": self._index}

    def restore(self, position: Mapping[str, int]) -> BatchIterator:
        """Moves to a position previously read from :attr:`position`.

        Args:
            position: ``{"epoch": e, "index": i}`` with ``e >= 0`` and
                ``0 <= i <= num_batches_per_epoch``.

        Returns:
            This iterator.

        Raises:
            ValueError: If the position is malformed or out of range.
        """
        try:
            epoch, index = int(position["epoch"]), int(position["index"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"position must be {{'epoch': int, 'index': int}}, got {position!r}"
            ) from err
        if epoch < 0 or not 0 <= index <= self._num_batches:
            raise ValueError(
                f"position {position!r} out of range ({self._num_batches} batches per epoch)"
            )
        if index == self._num_batches:
            epoch, index = epoch + 1, 0
        self._epoch, self._index = epoch, index
        return self

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Returns the example order used in ``epoch``."""
        if self._shuffle and epoch != self._order_epoch:
            self._order = epoch_permutation(len(self._split), self._seed, epoch)
            self._order_epoch = epoch
        return self._order

    def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yields the remaining batches of the current epoch, then stops.

        Yields:
            Batches, as :meth:`__next__` returns them.
        """
        epoch = self._epoch
        while self._epoch == epoch:
            try:
                yield next(self)
            except StopIteration:
                return

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._num_epochs is not None and self._epoch >= self._num_epochs:
            raise StopIteration
        order = self.epoch_order(self._epoch)
        rows = order[self._index * self._batch_size : (self._index + 1) * self._batch_size]
        batch = self._split.gather(rows, self._batch_size)
        self._index += 1
        if self._index == self._num_batches:
            self._epoch, self._index = self._epoch + 1, 0
        return batch
