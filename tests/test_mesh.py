"""The (model, data) device mesh: layouts, equality with one device, communication, no recompiles.

Runs on the 4 host CPU devices that tests/conftest.py forces.
"""

import re

import jax
import numpy as np
import pytest
from helpers import cohort_optimizer
from jax.sharding import PartitionSpec as P
from test_cohorts import BERT, GPT2, assert_trees_close, batch_at, bert_params, gpt2_params

import mmojax
from mmojax.train import (
    batch_shardings,
    init_train_state,
    make_eval_step,
    make_mesh,
    make_train_step,
    parse_mesh,
    shard_batch,
    shard_state,
    state_shardings,
)

K = 4
MODELS = {"bert": BERT, "gpt2": GPT2}

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (forced host) devices")


def cohort_tree():
    return {"bert": mmojax.stack_models([bert_params(s) for s in range(K)]), "gpt2": gpt2_params(7)}


COHORT_WEIGHTS = {"bert": [1.0, 0.8, 1.2, 0.9], "gpt2": 1.1}


def optimizer(grouping="role_depth", weights=COHORT_WEIGHTS, **overrides):
    return cohort_optimizer(grouping, weights, **overrides)


def run(steps, mesh=None, grouping="role_depth", params=None, weights=COHORT_WEIGHTS, **overrides):
    tx = optimizer(grouping, weights, **overrides)
    state = init_train_state(cohort_tree() if params is None else params, tx, seed=3)
    if mesh is not None:
        state = shard_state(state, mesh)
    step = make_train_step(MODELS, tx, mesh=mesh)
    history = []
    for i in range(steps):
        batch = batch_at(i) if mesh is None else shard_batch(batch_at(i), mesh)
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    return state, history, step


# ------------------------------------------------------------------------ the layout


def test_parse_and_make_mesh():
    assert parse_mesh("model=2,data=2") == {"model": 2, "data": 2}
    assert parse_mesh(" data = 4 ") == {"model": 1, "data": 4}
    for bad in ("model=0", "pipeline=2", "model=2,model=2", "model:2", ""):
        with pytest.raises(ValueError, match="mesh"):
            parse_mesh(bad)
    mesh = make_mesh("model=2,data=2")
    assert mesh.axis_names == ("model", "data") and mesh.devices.shape == (2, 2)
    assert make_mesh().shape == {"model": 1, "data": jax.device_count()}
    assert make_mesh({"model": 2}).devices.size == 2
    with pytest.raises(ValueError, match="needs 8 devices, there are 4"):
        make_mesh("model=4,data=2")


def test_state_shardings_put_cohort_members_on_the_model_axis():
    mesh = make_mesh("model=2,data=2")
    tx = optimizer()
    state = shard_state(init_train_state(cohort_tree(), tx, seed=0), mesh)
    for leaf in jax.tree.leaves(state.params["bert"]):
        assert leaf.sharding.spec == P("model")
        # each device holds its model-axis index's 2 members
        assert {s.data.shape[0] for s in leaf.addressable_shards} == {K // 2}
    for leaf in jax.tree.leaves(state.params["gpt2"]):
        assert leaf.sharding.spec == P() and leaf.sharding.is_fully_replicated
    # Adam's moments mirror the params: the cohort's on the model axis too.
    specs = {
        leaf.sharding.spec
        for leaf in jax.tree.leaves(state.opt_state)
        if leaf.ndim >= 2 and leaf.shape[0] == K and leaf.shape[1:] == (11, 8)
    }
    assert specs == {P("model")}
    with pytest.raises(ValueError, match="has 3 members, which the model axis of size 2"):
        state_shardings({"bert": mmojax.stack_models([bert_params(s) for s in range(3)])}, mesh)
    with pytest.raises(ValueError, match="batch size must be a multiple"):
        batch_shardings({"input_ids": np.zeros((3, 5), np.int32)}, mesh)


# ----------------------------------------------------------------- the same results


@pytest.mark.parametrize("shape", ["model=2,data=2", "model=4,data=1", "model=1,data=4"])
def test_a_sharded_step_gives_the_single_device_results(shape):
    steps = 9  # syncs at 4 and 8
    ref, ref_history, _ = run(steps)
    state, history, step = run(steps, make_mesh(shape))
    assert_trees_close(state.params, ref.params, rtol=1e-5, atol=1e-6)
    assert_trees_close(state.opt_state, ref.opt_state, rtol=1e-5, atol=1e-6)
    for got, want in zip(history, ref_history):
        np.testing.assert_allclose(got["bert"]["loss"], want["bert"]["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["gpt2"]["lr"], want["gpt2"]["lr"], rtol=1e-5)
    # One program for every step (sync steps included): nothing recompiles.
    (jitted,) = step.compiled.values()
    assert jitted._cache_size() == 1
    for leaf in jax.tree.leaves(state.params["bert"]):
        assert leaf.sharding.spec == P("model")


def test_accumulated_micro_batches_on_a_mesh_give_the_single_device_results():
    # 10 micro-batches = 5 updates (a sync at 4): the accumulate-only branch and
    # the update branch of the step's conditional both run sharded.
    ref, _, _ = run(10, gradient_accumulation_steps=2)
    state, _, step = run(10, make_mesh("model=2,data=2"), gradient_accumulation_steps=2)
    assert int(state.opt_state.mini_step) == 0
    assert_trees_close(state.params, ref.params, rtol=1e-5, atol=1e-6)
    assert_trees_close(state.opt_state, ref.opt_state, rtol=1e-5, atol=1e-6)
    (jitted,) = step.compiled.values()
    assert jitted._cache_size() == 1


def test_plain_models_on_a_data_mesh_give_the_single_device_results():
    params = {"bert": bert_params(0), "gpt2": gpt2_params(7)}
    tx_kwargs = dict(params=params, weights={"bert": 1.0, "gpt2": 0.8})
    ref, _, _ = run(5, **tx_kwargs)
    state, _, _ = run(5, make_mesh("data=4"), **tx_kwargs)
    assert_trees_close(state.params, ref.params, rtol=1e-5, atol=1e-6)


def test_eval_step_on_a_mesh_returns_replicated_outputs():
    mesh = make_mesh("model=2,data=2")
    params = cohort_tree()
    want = make_eval_step(MODELS, lambda out, b: {"logits": out})(params, batch_at(0))
    step = make_eval_step(MODELS, lambda out, b: {"logits": out}, mesh=mesh)
    got = step(shard_state(params, mesh), shard_batch(batch_at(0), mesh))
    assert got["bert"]["logits"].sharding.is_fully_replicated
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- communication


def _collectives(hlo: str) -> dict[str, list[tuple[int, ...]]]:
    """Result shapes of every collective in a compiled HLO text, by kind."""
    out: dict[str, list[tuple[int, ...]]] = {}
    for kind in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
        for line in hlo.splitlines():
            if re.search(rf"\s{kind}(-start)?\(", line):
                result = line.split("=", 1)[1].split(kind)[0]
                shapes = [
                    tuple(int(d) for d in dims.split(",") if d)
                    for dims in re.findall(r"\[([\d,]*)\]", result)
                ]
                out.setdefault(kind, []).extend(shapes)
    return out


def test_only_pools_cross_the_model_axis_no_model_is_gathered():
    mesh = make_mesh("model=2,data=2")
    tx = optimizer()
    state = shard_state(init_train_state(cohort_tree(), tx, seed=0), mesh)
    step = make_train_step(MODELS, tx, mesh=mesh)
    step(state, shard_batch(batch_at(0), mesh))  # builds the jitted function
    state = shard_state(init_train_state(cohort_tree(), tx, seed=0), mesh)
    (jitted,) = step.compiled.values()
    hlo = jitted.lower(state, shard_batch(batch_at(0), mesh)).compile().as_text()
    collectives = _collectives(hlo)
    # Parameter shapes: a member's leaf, the stacked leaf, one device's shard of it.
    param_shapes = set()
    for leaf in jax.tree.leaves(state.params["bert"]):
        shape = tuple(leaf.shape)
        param_shapes |= {shape, shape[1:], (K // 2, *shape[1:]), (1, *shape[1:])}
    for kind in ("all-gather", "all-to-all", "collective-permute"):
        moved = [s for s in collectives.get(kind, []) if s in param_shapes and len(s) >= 2]
        assert moved == [], f"{kind} moves parameter-shaped arrays: {moved}"
    # The pooled gradients and sync sums: all-reduces (over the model axis).
    assert collectives.get("all-reduce")
