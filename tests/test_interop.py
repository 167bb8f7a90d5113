"""The shared interoperability suite (STYLE.md) run over every transformation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import make_tree

import mmojax


def assert_trees_differ(a, b):
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


LOSSES = {"a": 1.0, "b": 2.0, "c": 0.5}

# Alignment rules for the toy tree of helpers.py, so that the role groupings
# run through real views: "c" stores its mlp kernel (out, in) (a transposed
# view), the attention leaves are fused pairs split along their output axis
# (several members of one model in a group: leave-own-model-out pools), and
# the rest (embedding, head) falls back to (type, shape).
TOY_RULES = (
    mmojax.AlignRule(r"^c/mlp/kernel$", "mlp.up", transpose=True),
    mmojax.AlignRule(r"/mlp/(kernel|bias)$", "mlp.up"),
    mmojax.AlignRule(r"/attn/[qkv]$", ("attn.x", "attn.y"), kind="kernel", transpose=True),
    mmojax.AlignRule(r"/norm/scale$", "norm"),
)
ROLE = {"grouping": "role", "align_rules": TOY_RULES}
ROLE_DEPTH = {"grouping": "role_depth", "align_rules": TOY_RULES}

FACTORIES = {
    "share_gradients": lambda: mmojax.share_gradients(alpha=0.3),
    "share_gradients_sum": lambda: mmojax.share_gradients(alpha=0.3, reduction="sum"),
    "sync_parameters": lambda: mmojax.sync_parameters(optax.identity(), beta=0.2, sync_every=1),
    "scale_by_convergence": lambda: mmojax.scale_by_convergence(2, convergence_update_every=1),
    "scale_by_model_learning_rate": lambda: mmojax.scale_by_model_learning_rate(
        1e-2, model_weights={"a": 1.0, "b": 2.0, "c": 1.0}
    ),
    "clip_by_model_global_norm": lambda: mmojax.clip_by_model_global_norm(0.5),
    "accumulate_gradients": lambda: mmojax.accumulate_gradients(
        mmojax.scale_by_convergence(2, convergence_update_every=1), gradient_accumulation_steps=2
    ),
    "multi_model_optimizer": lambda: mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=2,
        sync_every=2,
        convergence_window=2,
        convergence_update_every=1,
        clip_norm=1.0,
    ),
    "multi_model_optimizer_accum": lambda: mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=0,
        sync_every=1,
        gradient_accumulation_steps=2,
        convergence_window=2,
        convergence_update_every=1,
    ),
    "share_gradients_role": lambda: mmojax.share_gradients(alpha=0.3, **ROLE),
    "share_gradients_role_depth_sum": lambda: mmojax.share_gradients(
        alpha=0.3, reduction="sum", **ROLE_DEPTH
    ),
    "sync_parameters_role": lambda: mmojax.sync_parameters(
        optax.identity(), beta=0.2, sync_every=1, **ROLE
    ),
    "sync_parameters_role_depth": lambda: mmojax.sync_parameters(
        optax.identity(), beta=0.2, sync_every=2, **ROLE_DEPTH
    ),
    "multi_model_optimizer_role": lambda: mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=2,
        sync_every=2,
        convergence_window=2,
        convergence_update_every=1,
        clip_norm=1.0,
        **ROLE,
    ),
    "multi_model_optimizer_role_depth": lambda: mmojax.multi_model_optimizer(
        learning_rate=1e-2,
        warmup_steps=0,
        sync_every=1,
        gradient_accumulation_steps=2,
        convergence_window=2,
        convergence_update_every=1,
        model_weights={"a": 1.0, "b": 2.0},
        **ROLE_DEPTH,
    ),
}


@pytest.fixture(params=sorted(FACTORIES))
def tx(request):
    return FACTORIES[request.param]()


def run(tx, params, steps=3, jit=True):
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: p * (0.5 + i), params)
        updates, state = update(grads, state, params, losses=LOSSES)
        params = optax.apply_updates(params, updates)
    return params, state


def test_is_extra_args_transformation(tx):
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    state = tx.init(make_tree())
    assert isinstance(state, tuple) and hasattr(state, "_fields"), type(state)


def test_jit_matches_eager(tx):
    params = make_tree()
    jitted, _ = run(tx, params, jit=True)
    eager, _ = run(tx, params, jit=False)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_no_retrace(tx):
    params = make_tree()
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params, losses=LOSSES)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(3):
        params, state = step(params, state, params)
    assert len(traces) == 1


def test_composes_with_chain(tx):
    # optax.chain must equal running the transformation, then adamw, by hand:
    # the extra args reach the transformation and its state round-trips.
    params = make_tree()
    chained, _ = run(optax.chain(tx, optax.adamw(1e-3)), params)
    adamw = optax.adamw(1e-3)
    p, s1, s2 = params, tx.init(params), adamw.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda x, i=i: x * (0.5 + i), p)
        u, s1 = tx.update(grads, s1, p, losses=LOSSES)
        u, s2 = adamw.update(u, s2, p)
        p = optax.apply_updates(p, u)
    assert_trees_differ(chained, params)
    for a, b in zip(jax.tree.leaves(chained), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_composes_with_multisteps(tx):
    # MultiSteps over 4 micro-batches must equal 2 explicit updates on the mean gradients.
    params = make_tree()
    multi = optax.MultiSteps(tx, every_k_schedule=2)
    state = multi.init(params)
    update = jax.jit(multi.update)
    micro = [jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 1.0)), params) for i in range(4)]
    p = params
    for grads in micro:
        updates, state = update(grads, state, p, losses=LOSSES)
        p = optax.apply_updates(p, updates)
    assert int(state.gradient_step) == 2
    ref, ref_state = params, tx.init(params)
    for k in (0, 2):
        mean = jax.tree.map(lambda a, b: (a + b) / 2, micro[k], micro[k + 1])
        updates, ref_state = tx.update(mean, ref_state, ref, losses=LOSSES)
        ref = optax.apply_updates(ref, updates)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_keeps_dtype(tx, dtype):
    params = make_tree(dtype=dtype)
    state = tx.init(params)
    updates, _ = jax.jit(tx.update)(params, state, params, losses=LOSSES)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == p.dtype
        assert u.shape == p.shape


def test_init_accepts_shape_dtype_struct(tx):
    params = make_tree()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract_state = jax.eval_shape(tx.init, abstract)
    concrete = tx.init(params)
    assert jax.tree.structure(abstract_state) == jax.tree.structure(concrete)
    for a, c in zip(jax.tree.leaves(abstract_state), jax.tree.leaves(concrete)):
        assert a.shape == c.shape and a.dtype == c.dtype
