"""mmojax's transformations against the NumPy transcription in ``reference.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference
from helpers import WEIGHTS, assert_close_flat, flat_keys, make_tree, to_flat_np

import mmojax


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_share_gradients_matches_algorithm_1(reduction, weights):
    grads = make_tree(1)
    tx = mmojax.share_gradients(alpha=0.2, model_weights=weights, reduction=reduction)
    out, _ = jax.jit(tx.update)(grads, tx.init(grads))
    ref = reference.share(to_flat_np(grads), flat_keys(grads), weights, 0.2, reduction)
    assert_close_flat(out, ref)
    # The tree has keys with several members in one model ("a" attention) and
    # unshared keys ("c" mlp kernel): both must be exercised.
    assert not np.allclose(to_flat_np(out)["a"]["attn/k"], to_flat_np(grads)["a"]["attn/k"])
    np.testing.assert_array_equal(out["c"]["mlp"]["kernel"], grads["c"]["mlp"]["kernel"])


def test_share_gradients_hand_computed_weights():
    g = {"a": {"w": jnp.array([1.0])}, "b": {"w": jnp.array([4.0])}}
    tx = mmojax.share_gradients(alpha=0.5, model_weights={"a": 3.0, "b": 1.0})
    out, _ = tx.update(g, tx.init(g))
    # weights 0.75/0.25 -> pool = 0.75 * 1 + 0.25 * 4 = 1.75 (mean and sum agree: sum w = 1)
    assert out["a"]["w"].tolist() == pytest.approx([0.5 * 1 + 0.5 * 1.75])
    assert out["b"]["w"].tolist() == pytest.approx([0.5 * 4 + 0.5 * 1.75])
    tx = mmojax.share_gradients(alpha=0.5, model_weights={"a": 3.0, "b": 1.0}, reduction="sum")
    g3 = {"a": {"w": jnp.array([1.0]), "v": jnp.array([2.0])}, "b": {"w": jnp.array([4.0])}}
    out, _ = tx.update(g3, tx.init(g3))
    # "a" has two members of key other(1,): sum pool = 0.75*1 + 0.75*2 + 0.25*4 = 3.25
    assert out["b"]["w"].tolist() == pytest.approx([0.5 * 4 + 0.5 * 3.25])
    tx = mmojax.share_gradients(alpha=0.5, model_weights={"a": 3.0, "b": 1.0})
    out, _ = tx.update(g3, tx.init(g3))
    # mean divides by the members' weights, 0.75 + 0.75 + 0.25 = 1.75
    assert out["b"]["w"].tolist() == pytest.approx([0.5 * 4 + 0.5 * 3.25 / 1.75])


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_sync_matches_algorithm_2(weights):
    params, updates = make_tree(2), make_tree(3)
    tx = mmojax.sync_parameters(optax.identity(), beta=0.1, sync_every=1, model_weights=weights)
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    new = optax.apply_updates(params, out)
    moved = jax.tree.map(lambda p, u: p + u, params, updates)
    ref = reference.sync(to_flat_np(moved), flat_keys(params), weights, 0.1)
    assert_close_flat(new, ref)


def test_sync_hand_traced_trajectory():
    # Two models, one shared leaf, constant updates, beta 0.5 every 2 updates.
    params = {"a": {"w": jnp.array([0.0])}, "b": {"w": jnp.array([10.0])}}
    updates = {"a": {"w": jnp.array([1.0])}, "b": {"w": jnp.array([-1.0])}}
    tx = mmojax.sync_parameters(
        optax.identity(), beta=0.5, sync_every=2, model_weights={"a": 1.0, "b": 3.0}
    )
    state = tx.init(params)
    step = jax.jit(tx.update)
    trajectory = []
    for _ in range(4):
        out, state = step(updates, state, params)
        params = optax.apply_updates(params, out)
        trajectory.append((float(params["a"]["w"][0]), float(params["b"]["w"][0])))
    # step 1: (1, 9), no sync.
    # step 2: moved (2, 8); avg = 0.25*2 + 0.75*8 = 6.5; -> (4.25, 7.25).
    # step 3: (5.25, 6.25), no sync.
    # step 4: moved (6.25, 5.25); avg = 0.25*6.25 + 0.75*5.25 = 5.5; -> (5.875, 5.375).
    expected = [(1.0, 9.0), (4.25, 7.25), (5.25, 6.25), (5.875, 5.375)]
    np.testing.assert_allclose(trajectory, expected, rtol=0, atol=1e-6)
    assert int(state.count) == 4


def test_sync_happens_on_updates_10_20():
    params = {"a": {"w": jnp.zeros(1)}, "b": {"w": jnp.ones(1)}}
    zero = jax.tree.map(jnp.zeros_like, params)
    tx = mmojax.sync_parameters(optax.identity(), beta=0.1, sync_every=10)
    state = tx.init(params)
    synced_at = []
    for t in range(1, 21):
        out, state = tx.update(zero, state, params)
        if float(jnp.abs(out["a"]["w"]).sum()) > 0:
            synced_at.append(t)
        params = optax.apply_updates(params, out)
    assert synced_at == [10, 20]


def test_convergence_matches_algorithm_3():
    models = ["a", "b"]
    window, every = 5, 3
    tx = mmojax.scale_by_convergence(
        window,
        convergence_update_every=every,
        convergence_ema=0.9,
        min_convergence_scale=0.5,
        max_convergence_scale=1.5,
    )
    g = {"a": {"w": jnp.ones(2)}, "b": {"w": jnp.ones(2)}}
    state = tx.init(g)
    step = jax.jit(tx.update)
    ref = reference.Convergence(models, window, every)
    rng = np.random.default_rng(0)
    for t in range(30):
        losses = {"a": 5.0 * np.exp(-0.3 * t) + 0.1 * rng.random(), "b": 3.0 - 0.9 * t}
        if t == 7:
            losses["a"] = np.nan  # not recorded
        out, state = step(g, state, losses={m: jnp.float32(v) for m, v in losses.items()})
        scales = ref.step(losses)
        for m in models:
            np.testing.assert_allclose(out[m]["w"], scales[m], rtol=1e-5)
            np.testing.assert_allclose(mmojax.convergence_rates(state)[m], ref.rates[m], rtol=1e-5)
    assert ref.rates["b"] < 1.0 and ref.rates["a"] < 1.0  # the estimator really moved
    assert int(state.num_losses["a"]) == 29 and int(state.num_losses["b"]) == 30


@pytest.mark.parametrize("accumulate", [1, 2])
def test_full_optimizer_matches_reference(accumulate):
    params = make_tree(4)
    steps = 12
    grads_seq = [make_tree(100 + t) for t in range(steps * accumulate)]
    losses_seq = [
        {"a": 3.0 - 0.2 * t + 0.01 * t * t, "b": 2.0 - 0.05 * t, "c": 1.0 + 0.3 * t}
        for t in range(steps * accumulate)
    ]
    tx = mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        model_weights=WEIGHTS,
        alpha=0.2,
        beta=0.1,
        sync_every=5,
        warmup_steps=3,
        total_steps=20,
        convergence_window=4,
        convergence_update_every=2,
        gradient_accumulation_steps=accumulate,
    )
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads, losses):
        updates, state = tx.update(grads, state, params, losses=losses)
        return optax.apply_updates(params, updates), state

    p = params
    for g, losses in zip(grads_seq, losses_seq):
        p, state = step(p, state, g, {m: jnp.float32(v) for m, v in losses.items()})

    # The reference sees the mean gradient and mean loss of each accumulation window.
    def mean_over(seq, fn):
        return [fn(seq[i : i + accumulate]) for i in range(0, len(seq), accumulate)]

    ref_grads = mean_over(
        [to_flat_np(g) for g in grads_seq],
        lambda w: {m: {k: sum(x[m][k] for x in w) / len(w) for k in w[0][m]} for m in w[0]},
    )
    ref_losses = mean_over(losses_seq, lambda w: {m: sum(x[m] for x in w) / len(w) for m in w[0]})
    ref = reference.run_optimizer(
        to_flat_np(params),
        ref_grads,
        ref_losses,
        flat_keys(params),
        lr=1e-2,
        weights=WEIGHTS,
        alpha=0.2,
        beta=0.1,
        every=5,
        warmup=3,
        total=20,
        window=4,
        update_every=2,
    )
    assert_close_flat(p, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 17, 36])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_weighted_sum_both_paths_match_numpy(n, dtype):
    # Below STACK_FROM members the pool is a sum of terms, from it a contraction of chunk sums.
    from mmojax.optim import _pool

    rng = np.random.default_rng(n)
    xs = [rng.normal(size=(3, 5)).astype(np.float32) for _ in range(n)]
    ws = list(rng.uniform(0.1, 1.0, size=n))
    got = _pool._weighted_sum([jnp.asarray(x, dtype) for x in xs], ws, jnp.float32)
    want = sum(w * np.asarray(jnp.asarray(x, dtype), np.float32) for w, x in zip(ws, xs))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
