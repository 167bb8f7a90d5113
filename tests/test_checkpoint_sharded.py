"""Sharded checkpoints: a state saved on a mesh restores onto any mesh, or one device, exactly.

A cohort of 4 BERT-like members plus a GPT-2-like model trains 3 steps on
``model=2,data=2`` (the 4 host CPU devices tests/conftest.py forces) and is
saved; it restores onto its own layout, one device and ``model=1,data=4``.
"""

import distributed_worker as worker
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from mmojax.train import (
    Checkpointer,
    CheckpointError,
    init_train_state,
    make_mesh,
    make_train_step,
    shard_state,
)

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (forced host) devices")

SAVED_AT = 3


def template(mesh=None, tree=None):
    """A fresh train state of the test's models: on one device, or placed on ``mesh``."""
    tx = worker.make_tx()
    state = init_train_state(worker.cohort_tree() if tree is None else tree, tx, seed=worker.SEED)
    return state if mesh is None else shard_state(state, mesh)


def assert_equal_trees(a, b):
    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)
    assert len(la) == len(lb)
    for (path, x), y in zip(la, lb):
        np.testing.assert_array_equal(
            np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path)
        )


@pytest.fixture(scope="module")
def mesh():
    return make_mesh("model=2,data=2")


@pytest.fixture(scope="module")
def step(mesh):
    """The sharded train step (compiled once for the module)."""
    return make_train_step(worker.MODELS, worker.make_tx(), mesh=mesh)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mesh, step):
    """``(checkpointer, host copy of the state)`` after ``SAVED_AT`` sharded steps."""
    state = worker.train(template(mesh), step, 0, SAVED_AT, mesh)
    ckpt = Checkpointer(tmp_path_factory.mktemp("sharded") / "checkpoints")
    ckpt.save(SAVED_AT, state, {"step": SAVED_AT})
    yield ckpt, jax.device_get(state)
    ckpt.close()


def test_restores_onto_its_own_mesh_with_the_template_shardings(saved, mesh):
    ckpt, host = saved
    target = template(mesh)
    restored, meta, at = ckpt.restore(target)
    assert at == SAVED_AT and meta == {"step": SAVED_AT}
    assert_equal_trees(restored, host)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
        assert got.sharding == want.sharding
    embedding = restored.params["bert"].params["embeddings"]["word_embeddings"]["embedding"]
    assert embedding.sharding.spec == P("model")  # a cohort leaf: really split
    assert (
        len(embedding.addressable_shards) == 4
        and embedding.addressable_shards[0].data.shape[0] == 2
    )


def test_restores_onto_one_device(saved):
    ckpt, host = saved
    fresh = Checkpointer(ckpt.directory)  # as a new process would
    restored, _, at = fresh.restore(template())
    fresh.close()
    assert at == SAVED_AT
    assert_equal_trees(restored, host)
    device = jax.devices()[0]
    assert all(x.sharding == SingleDeviceSharding(device) for x in jax.tree.leaves(restored))


def test_restores_onto_another_mesh(saved):
    ckpt, host = saved
    other = make_mesh("model=1,data=4")
    target = template(other)
    restored, _, _ = ckpt.restore(target)
    assert_equal_trees(restored, host)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
        assert got.sharding == want.sharding


def test_a_one_device_checkpoint_restores_onto_a_mesh(tmp_path, mesh):
    state = template()
    ckpt = Checkpointer(tmp_path / "one")
    ckpt.save(0, state, {})
    restored, _, _ = ckpt.restore(template(mesh))
    ckpt.close()
    assert_equal_trees(restored, jax.device_get(state))
    assert restored.params["bert"].params["classifier"]["bias"].sharding.spec == P("model")


def test_a_template_of_another_config_is_reported(saved, mesh):
    ckpt, _ = saved
    target = template(mesh)
    bert = target.params["bert"].params
    bert["classifier"]["bias"] = jax.device_put(  # 3 labels, not 2
        np.zeros((worker.K, 3), np.float32), NamedSharding(mesh, P("model"))
    )
    with pytest.raises(
        CheckpointError,
        match=r"array \d+ has shape \(4, 2\) float32, expected "
        r"\(4, 3\) float32 \(different config\?\)",
    ):
        ckpt.restore(target)


def test_a_resumed_sharded_run_equals_an_uninterrupted_one(saved, mesh, step):
    ckpt, _ = saved
    resumed, _, start = ckpt.restore(template(mesh))
    resumed = worker.train(resumed, step, start, 2 * SAVED_AT, mesh)
    full = worker.train(template(mesh), step, 0, 2 * SAVED_AT, mesh)
    assert_equal_trees(jax.device_get(resumed), jax.device_get(full))
