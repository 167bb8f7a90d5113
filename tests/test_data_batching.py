"""Tests for BatchIterator: deterministic order, exact resume and eval padding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmojax import data


def make_split(n: int, seed: int = 0, pad: int = 0) -> data.EncodedSplit:
    """A small encoded split with random lengths; token ids encode the example index."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 20, size=n).astype(np.int32)
    ids = np.full((n, 32), pad, np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = 1000 + i
    return data.EncodedSplit(
        arrays={
            "input_ids": ids,
            "attention_mask": (np.arange(32) < lengths[:, None]).astype(np.int32),
            "labels": (np.arange(n) % 2).astype(np.int32),
        },
        lengths=lengths,
        seq_keys=("input_ids", "attention_mask"),
        pad_values={"input_ids": pad, "attention_mask": 0, "labels": 0},
        buckets=(8, 16, 32),
    )


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_resume_from_position_yields_identical_batches():
    split = make_split(50)
    it = data.BatchIterator(split, 8, seed=7)
    assert it.num_batches_per_epoch == 6
    take(it, 9)  # crosses into the second epoch
    position = it.position
    assert position == {"epoch": 1, "index": 3}
    assert json.loads(json.dumps(position)) == position
    expected = take(it, 10)
    resumed = data.BatchIterator(split, 8, seed=7).restore(position)
    assert_same_batches(take(resumed, 10), expected)
    assert resumed.position == it.position


def test_epoch_order_is_seeded_permutation():
    split = make_split(50)
    it = data.BatchIterator(split, 8, seed=3)
    for epoch in range(2):
        seen = np.concatenate([b["example_index"] for b in it.epoch_batches()])
        perm = np.random.Generator(np.random.PCG64([3, epoch])).permutation(50)
        np.testing.assert_array_equal(seen, perm[:48])
        assert len(set(seen.tolist())) == 48
        assert batch_ids_match(split, it, epoch)
    assert it.position == {"epoch": 2, "index": 0}


def batch_ids_match(split, it, epoch):
    order = it.epoch_order(epoch)
    return bool((split.arrays["input_ids"][order, 0] == 1000 + order).all())


def test_order_depends_only_on_seed_not_on_encoding():
    a = data.BatchIterator(make_split(40, seed=0), 4, seed=11)
    b = data.BatchIterator(make_split(40, seed=1, pad=5), 4, seed=11)
    c = data.BatchIterator(make_split(40, seed=0), 4, seed=12)
    ia = [x["example_index"] for x in take(a, 12)]
    ib = [x["example_index"] for x in take(b, 12)]
    ic = [x["example_index"] for x in take(c, 12)]
    np.testing.assert_array_equal(ia, ib)
    assert not np.array_equal(ia, ic)


def test_training_batches_are_full_and_consistent():
    split = make_split(30)
    for batch in data.BatchIterator(split, 7, seed=0, num_epochs=3):
        rows = batch["example_index"]
        assert (rows >= 0).all() and (batch["mask"] == 1.0).all()
        width = batch["input_ids"].shape[1]
        assert width == data.bucket_for_length(int(split.lengths[rows].max()), (8, 16, 32))
        np.testing.assert_array_equal(batch["input_ids"][:, 0], 1000 + rows)
        np.testing.assert_array_equal(batch["labels"], rows % 2)
        assert batch["mask"].dtype == np.float32 and batch["example_index"].dtype == np.int32


def test_eval_iterator_pads_last_batch_with_mask():
    split = make_split(10)
    it = data.BatchIterator.for_eval(split, 4)
    batches = list(it)
    assert it.num_batches_per_epoch == 3 and len(batches) == 3
    np.testing.assert_array_equal(
        np.concatenate([b["example_index"] for b in batches])[:10], np.arange(10)
    )
    last = batches[-1]
    assert last["mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert last["example_index"].tolist() == [8, 9, -1, -1]
    assert last["input_ids"].shape[0] == 4
    assert (last["input_ids"][2:] == 0).all() and (last["attention_mask"][2:] == 0).all()
    # Masked metrics over padded batches equal the metric over the real examples.
    predicted = [np.zeros(4, np.int32) for _ in batches]
    correct = sum(
        ((p == b["labels"]) * b["mask"]).sum() for p, b in zip(predicted, batches, strict=True)
    )
    total = sum(b["mask"].sum() for b in batches)
    assert total == 10
    assert correct / total == pytest.approx(np.mean(split.arrays["labels"] == 0))
    with pytest.raises(StopIteration):
        next(it)


def test_restore_validates_and_normalises_positions():
    it = data.BatchIterator(make_split(20), 5, seed=0)
    assert it.restore({"epoch": 2, "index": 4}).position == {"epoch": 3, "index": 0}
    for bad in ({"epoch": -1, "index": 0}, {"epoch": 0, "index": 5}, {"epoch": 0}, {"index": 1}):
        with pytest.raises(ValueError):
            it.restore(bad)


def test_invalid_iterator_arguments():
    with pytest.raises(ValueError):
        data.BatchIterator(make_split(3), 4)
    with pytest.raises(ValueError):
        data.BatchIterator(make_split(3), 0)
    assert data.BatchIterator(make_split(3), 4, drop_last=False).num_batches_per_epoch == 1


def test_epoch_permutation_helper():
    np.testing.assert_array_equal(
        data.epoch_permutation(9, 5, 2),
        np.random.Generator(np.random.PCG64([5, 2])).permutation(9),
    )
