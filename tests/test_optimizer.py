"""multi_model_optimizer: identity reductions, learning rates, weights, accumulation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import WEIGHTS, make_tree

import mmojax


def train(tx, params, steps=15, losses=True):
    state = tx.init(params)

    @jax.jit
    def step(params, state, i):
        grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1.0)), params)
        kwargs = {"losses": {m: 1.0 / (i + 1.0) for m in params}} if losses else {}
        updates, state = tx.update(grads, state, params, **kwargs)
        return optax.apply_updates(params, updates), state

    for i in range(steps):
        params, state = step(params, state, jnp.float32(i))
    return params, state


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_trees_differ(a, b):
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_all_mechanisms_off_equals_adamw():
    params = make_tree(7)
    schedule = mmojax.warmup_cosine_schedule(1e-2, warmup_steps=4, total_steps=15)
    ours, _ = train(
        mmojax.multi_model_optimizer(learning_rate=schedule, alpha=0.0, beta=0.0, adaptive=False),
        params,
        losses=False,
    )
    ref, _ = train(optax.adamw(schedule, weight_decay=0.01), params, losses=False)
    assert_trees_differ(ours, params)
    assert_trees_close(ours, ref)
    # Same through the float-rate path of the factory, and with sync_every=0.
    ours2, _ = train(
        mmojax.multi_model_optimizer(
            learning_rate=1e-2,
            warmup_steps=4,
            total_steps=15,
            alpha=0.0,
            beta=0.1,
            sync_every=0,
            adaptive=False,
        ),
        params,
        losses=False,
    )
    assert_trees_close(ours2, ref)


def test_mechanisms_change_the_result():
    params = make_tree(7)
    base = dict(
        learning_rate=1e-2,
        warmup_steps=0,
        sync_every=3,
        convergence_window=3,
        convergence_update_every=1,
    )
    full, _ = train(mmojax.multi_model_optimizer(**base), params)
    for off in ({"alpha": 0.0}, {"beta": 0.0}, {"adaptive": False}):
        ablated, _ = train(mmojax.multi_model_optimizer(**{**base, **off}), params)
        assert_trees_differ(full, ablated)


def test_single_model_is_adamw():
    params = {"only": make_tree(3)["a"]}
    ours, _ = train(
        mmojax.multi_model_optimizer(
            learning_rate=1e-2, warmup_steps=0, adaptive=False, sync_every=1
        ),
        params,
        losses=False,
    )
    ref, _ = train(optax.adamw(1e-2, weight_decay=0.01), params, losses=False)
    assert mmojax.sharing_plan(params).shared_groups == ()
    assert_trees_close(ours, ref)


def test_every_leaf_its_own_key_is_identity():
    params = make_tree(5)
    counter = itertools.count()
    unique = jax.tree.map(lambda _: next(counter), params)
    grads = make_tree(6)
    tx = mmojax.share_gradients(alpha=0.5, labels=unique)
    out, _ = tx.update(grads, tx.init(params))
    assert_trees_close(out, grads, rtol=0, atol=0)
    sync = mmojax.sync_parameters(optax.identity(), beta=0.5, sync_every=1, labels=unique)
    out, _ = sync.update(grads, sync.init(params), params)
    assert_trees_close(out, grads, rtol=0, atol=0)


def test_alpha_zero_and_beta_zero_are_identity():
    params, grads = make_tree(1), make_tree(2)
    tx = mmojax.share_gradients(alpha=0.0)
    assert_trees_close(tx.update(grads, tx.init(params))[0], grads, rtol=0, atol=0)
    tx = mmojax.sync_parameters(optax.identity(), beta=0.0, sync_every=1)
    assert_trees_close(tx.update(grads, tx.init(params), params)[0], grads, rtol=0, atol=0)


def test_learning_rates_equal_weights_keep_base_rate():
    params = make_tree()
    tx = mmojax.multi_model_optimizer(learning_rate=3e-4, warmup_steps=0, adaptive=False)
    _, state = train(tx, params, steps=2, losses=False)
    for lr in mmojax.learning_rates(state).values():
        assert float(lr) == pytest.approx(3e-4, rel=1e-6)


def test_learning_rates_follow_weights_schedule_and_convergence():
    params = make_tree()
    tx = mmojax.multi_model_optimizer(
        learning_rate=1e-3,
        model_weights=WEIGHTS,
        warmup_steps=10,
        convergence_window=2,
        convergence_update_every=1,
        max_convergence_scale=3.0,
    )
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    losses = [{"a": 4.0, "b": 1.0, "c": 1.0}, {"a": 2.0, "b": 1.0, "c": 0.0}]
    for loss in losses:
        _, state = tx.update(grads, state, params, losses=loss)
    lrs = mmojax.learning_rates(state)
    rates = mmojax.convergence_rates(state)
    # Second update: t = 1 -> warmup 1/10. Slopes: a -2, b 0, c -1.
    expected_r = {"a": 0.9 + 0.1 / 3, "b": 1.0, "c": 0.9 + 0.1 / 2}
    for m in "abc":
        assert float(rates[m]) == pytest.approx(expected_r[m], rel=1e-6)
        assert float(lrs[m]) == pytest.approx(1e-3 * 0.1 * WEIGHTS[m] / expected_r[m], rel=1e-5)


def test_accumulation_feeds_mean_loss_and_counts_updates():
    params = {"a": {"w": jnp.ones(2)}, "b": {"w": jnp.ones(2)}}
    tx = mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=0,
        gradient_accumulation_steps=3,
        convergence_window=2,
        convergence_update_every=1,
        sync_every=1,
    )
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for loss in [1.0, 2.0, 6.0]:
        updates, state = tx.update(grads, state, params, losses={"a": loss, "b": 0.0})
    sync = state.inner_state
    inner = sync.inner_state
    assert int(inner.convergence.count) == 1 and int(sync.count) == 1
    assert float(inner.convergence.losses["a"][0]) == pytest.approx(3.0)
    assert int(state.mini_step) == 0
    # Between emissions the updates are zero.
    zero, state = tx.update(grads, state, params, losses={"a": 1.0, "b": 0.0})
    assert all(float(jnp.abs(u).sum()) == 0 for u in jax.tree.leaves(zero))


def test_per_model_clipping_never_mixes_models():
    g = {"a": {"w": jnp.full(4, 10.0)}, "b": {"w": jnp.full(4, 0.01)}}
    tx = mmojax.clip_by_model_global_norm(1.0)
    out, _ = tx.update(g, tx.init(g))
    assert float(optax.tree.norm(out["a"])) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_array_equal(out["b"]["w"], g["b"]["w"])


def test_schedule_values():
    s = mmojax.warmup_cosine_schedule(2.0, warmup_steps=4, total_steps=8, min_lr_ratio=0.5)
    got = [float(s(t)) for t in range(10)]
    cos = lambda x: 0.5 + 0.5 * 0.5 * (1 + np.cos(np.pi * x))  # noqa: E731
    expected = [0.0, 0.5, 1.0, 1.5, 2.0] + [2.0 * cos(k / 4) for k in range(1, 5)] + [1.0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_full_optimizer_equals_the_chain_of_its_transformations():
    # multi_model_optimizer must equal the documented composition of its pieces:
    # accumulation around sync around the chain of the other stages.
    params = make_tree(3)
    schedule = mmojax.warmup_cosine_schedule(1e-2, warmup_steps=3, total_steps=12)
    settings = dict(model_weights=WEIGHTS)
    ours, ours_state = train(
        mmojax.multi_model_optimizer(
            learning_rate=schedule,
            alpha=0.3,
            beta=0.2,
            sync_every=4,
            clip_norm=0.5,
            convergence_window=3,
            convergence_update_every=2,
            gradient_accumulation_steps=2,
            **settings,
        ),
        params,
        steps=24,
    )
    chain = optax.chain(
        mmojax.clip_by_model_global_norm(0.5),
        mmojax.share_gradients(0.3, **settings),
        optax.scale_by_adam(),
        optax.add_decayed_weights(0.01),
        mmojax.scale_by_convergence(3, convergence_update_every=2),
        mmojax.scale_by_model_learning_rate(schedule, **settings),
    )
    synced = mmojax.sync_parameters(chain, beta=0.2, sync_every=4, **settings)
    ref, _ = train(
        mmojax.accumulate_gradients(synced, gradient_accumulation_steps=2), params, steps=24
    )
    assert_trees_differ(ours, params)
    assert_trees_close(ours, ref, rtol=1e-5, atol=1e-7)
    assert int(ours_state.inner_state.count) == 12
