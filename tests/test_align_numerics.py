"""Gradient sharing and sync on canonical views: hand computations and a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference
from helpers import assert_close_flat, to_flat_np
from test_align import H, hf_bare_shapes

import mmojax
from mmojax.optim import _plan, _pool

# ---------------------------------------------------------------------------
# A NumPy transcription of the role groupings, written from the HF layouts by
# hand (not from mmojax's rules): each leaf's views as explicit slices and
# transposes, leave-own-model-out pools, and the 2-vs-3-layer pairing of the
# README (slots at 1/4 and 3/4 take layers 0 and 2 of a 3-layer model).
# ---------------------------------------------------------------------------
WEIGHTS_3 = {"bert": 1.0, "gpt2": 0.8, "roberta": 1.2}
PAIRS = {"bert": {0: 0, 1: 1}, "gpt2": {0: 0, 1: 1}, "roberta": {0: 0, 2: 1}}
BERT_ROLES = {
    "attention/self/query": "attn.q",
    "attention/self/key": "attn.k",
    "attention/self/value": "attn.v",
    "attention/output/dense": "attn.out",
    "attention/output/LayerNorm": "norm.attn",
    "intermediate/dense": "mlp.up",
    "output/dense": "mlp.down",
    "output/LayerNorm": "norm.mlp",
}
GPT2_ROLES = {
    "attn/c_proj": "attn.out",
    "mlp/c_fc": "mlp.up",
    "mlp/c_proj": "mlp.down",
    "ln_1": "norm.attn",
    "ln_2": "norm.mlp",
}
OTHER_ROLES = {
    "embeddings/word_embeddings": "embed.tok",
    "embeddings/position_embeddings": "embed.pos",
    "embeddings/token_type_embeddings": "embed.type",
    "embeddings/LayerNorm": "norm.embed",
    "pooler/dense": "head.pool",
    "wte": "embed.tok",
    "wpe": "embed.pos",
    "ln_f": "norm.final",
}


def _whole(transposed):
    def get(x):
        return x.T if transposed else x

    def put(x, v):
        x[...] = v.T if transposed else v

    return get, put


def _rows(lo, hi, transposed):
    def get(x):
        return x[lo:hi].T if transposed else x[lo:hi]

    def put(x, v):
        x[lo:hi] = v.T if transposed else v

    return get, put


def ref_views(path):
    """``[(role, kind, layer, get, put)]`` of one leaf of the bare HF trees."""
    parts = path.split("/")
    kind, name = parts[-1], "/".join(parts[:-1])
    if parts[0] == "h":
        layer, block = int(parts[1]), "/".join(parts[2:-1])
        transposed = kind == "kernel"
        if block == "attn/c_attn":
            return [
                (f"attn.{r}", kind, layer, *_rows(k * H, (k + 1) * H, transposed))
                for k, r in enumerate("qkv")
            ]
        return [(GPT2_ROLES[block], kind, layer, *_whole(transposed))]
    if parts[0] == "encoder":
        return [(BERT_ROLES["/".join(parts[3:-1])], kind, int(parts[2]), *_whole(False))]
    return [(OTHER_ROLES[name], kind, None, *_whole(False))]


def ref_mix(tree, weights, coef, grouping, reduction="mean"):
    w = reference.normalise(weights, list(tree))
    groups = {}
    for model, paths in tree.items():
        for path, x in paths.items():
            for role, kind, layer, get, put in ref_views(path):
                view = get(x)
                key = (role, kind, view.shape)
                if grouping == "role_depth" and layer is not None:
                    if layer not in PAIRS[model]:
                        continue
                    key += (PAIRS[model][layer],)
                groups.setdefault(key, []).append((model, path, view, put))
    out = {m: {p: x.copy() for p, x in paths.items()} for m, paths in tree.items()}
    for members in groups.values():
        if len({m for m, *_ in members}) < 2:
            continue
        for i, (model, path, view, put) in enumerate(members):
            pooled = [(m, v) for j, (m, _, v, _) in enumerate(members) if j == i or m != model]
            pool = sum(w[m] * v for m, v in pooled)
            if reduction == "mean":
                pool = pool / sum(w[m] for m, _ in pooled)
            put(out[model][path], (1 - coef) * view + coef * pool)
    return out


def random_tree(seed, dtype=jnp.float32):
    shapes = hf_bare_shapes()
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([jax.random.normal(k, s.shape, dtype) for k, s in zip(keys, leaves)])


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weights", [None, WEIGHTS_3])
def test_share_matches_reference(grouping, reduction, weights):
    grads = random_tree(1)
    tx = mmojax.share_gradients(
        alpha=0.3, model_weights=weights, reduction=reduction, grouping=grouping
    )
    out, _ = jax.jit(tx.update)(grads, tx.init(grads))
    ref = ref_mix(to_flat_np(grads), weights, 0.3, grouping, reduction)
    assert_close_flat(out, ref)
    assert not np.allclose(
        out["gpt2"]["h"]["0"]["attn"]["c_attn"]["kernel"],
        grads["gpt2"]["h"]["0"]["attn"]["c_attn"]["kernel"],
    )


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
def test_sync_is_the_formula_on_the_views(grouping):
    params, updates = random_tree(2), random_tree(3)
    tx = mmojax.sync_parameters(
        optax.identity(), beta=0.3, sync_every=1, model_weights=WEIGHTS_3, grouping=grouping
    )
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    new = optax.apply_updates(params, out)
    moved = to_flat_np(jax.tree.map(lambda p, u: p + u, params, updates))
    assert_close_flat(new, ref_mix(moved, WEIGHTS_3, 0.3, grouping))
    # Off-sync updates pass through bit for bit, views and all.
    tx = mmojax.sync_parameters(optax.identity(), beta=0.3, sync_every=2, grouping=grouping)
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(updates), strict=True):
        np.testing.assert_array_equal(a, b)


def _mlp_tree(up_b, down_b, fc_g, proj_g):
    return {
        "bert": {
            "encoder": {
                "layer": {
                    "0": {
                        "intermediate": {"dense": {"kernel": up_b}},
                        "output": {"dense": {"kernel": down_b}},
                    }
                }
            }
        },
        "gpt2": {"h": {"0": {"mlp": {"c_fc": {"kernel": fc_g}, "c_proj": {"kernel": proj_g}}}}},
    }


def test_c_fc_pools_with_bert_intermediate_by_hand():
    # H = 2, inner = 3. BERT kernels are (in, out); GPT-2's are stored (out, in).
    grads = _mlp_tree(
        up_b=jnp.array([[1.0, 2, 3], [4, 5, 6]]),  # (2, 3) up
        down_b=jnp.array([[7.0, 8], [9, 10], [11, 12]]),  # (3, 2) down
        fc_g=jnp.array([[10.0, 40], [20, 50], [30, 60]]),  # (3, 2) = up.T
        proj_g=jnp.array([[-1.0, -2, -3], [-4, -5, -6]]),
    )  # (2, 3) = down.T
    tx = mmojax.share_gradients(
        alpha=0.5, model_weights={"bert": 1.0, "gpt2": 3.0}, grouping="role"
    )
    out, _ = tx.update(grads, tx.init(grads))
    # weights 1/4, 3/4. up: pool = 1/4 up_b + 3/4 fc_g.T = [[7.75, 15.5, 23.25], [31, 38.75, 46.5]]
    #   bert:  1/2 up_b + 1/2 pool              = [[4.375, 8.75, 13.125], [17.5, 21.875, 26.25]]
    #   gpt2: (1/2 fc_g.T + 1/2 pool).T         = [[8.875, 35.5], [17.75, 44.375], [26.625, 53.25]]
    # down: pool = 1/4 down_b + 3/4 proj_g.T    = [[1, -1], [0.75, -1.25], [0.5, -1.5]]
    #   bert:  1/2 down_b + 1/2 pool            = [[4, 3.5], [4.875, 4.375], [5.75, 5.25]]
    #   gpt2: (1/2 proj_g.T + 1/2 pool).T       = [[0, -0.625, -1.25], [-2.5, -3.125, -3.75]]
    expected = _mlp_tree(
        up_b=np.array([[4.375, 8.75, 13.125], [17.5, 21.875, 26.25]]),
        down_b=np.array([[4, 3.5], [4.875, 4.375], [5.75, 5.25]]),
        fc_g=np.array([[8.875, 35.5], [17.75, 44.375], [26.625, 53.25]]),
        proj_g=np.array([[0, -0.625, -1.25], [-2.5, -3.125, -3.75]]),
    )
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(expected), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # The paper's grouping pools c_fc (3, 2) with BERT's *down* projection (3, 2) as stored.
    paper = mmojax.share_gradients(alpha=0.5, model_weights={"bert": 1.0, "gpt2": 3.0})
    out, _ = paper.update(grads, paper.init(grads))
    fc, down = (
        grads["gpt2"]["h"]["0"]["mlp"]["c_fc"]["kernel"],
        grads["bert"]["encoder"]["layer"]["0"]["output"]["dense"]["kernel"],
    )
    np.testing.assert_allclose(
        out["gpt2"]["h"]["0"]["mlp"]["c_fc"]["kernel"],
        0.5 * fc + 0.5 * (0.25 * down + 0.75 * fc),
        rtol=1e-6,
    )


def _qkv_tree(seed=0):
    ks = jax.random.split(jax.random.key(seed), 5)
    return {
        "bert": {
            "encoder": {
                "layer": {
                    "0": {
                        "attention": {
                            "self": {
                                "query": {
                                    "kernel": jax.random.normal(ks[0], (2, 2)),
                                    "bias": jax.random.normal(ks[1], (2,)),
                                },
                                "key": {"kernel": jax.random.normal(ks[2], (2, 2))},
                            }
                        }
                    }
                }
            }
        },  # no value, no key bias
        "gpt2": {
            "h": {
                "0": {
                    "attn": {
                        "c_attn": {
                            "kernel": jax.random.normal(
                                ks[3], (6, 2)
                            ),  # stored (3H, H) = [q | k | v] x in
                            "bias": jax.random.normal(ks[4], (6,)),
                        }
                    }
                }
            }
        },
    }


def test_qkv_slices_pool_with_their_own_groups_and_scatter_back():
    grads = _qkv_tree()
    alpha, wb, wg = 0.3, 0.25, 0.75
    tx = mmojax.share_gradients(
        alpha=alpha, model_weights={"bert": 1.0, "gpt2": 3.0}, grouping="role"
    )
    for update in (tx.update, jax.jit(tx.update)):
        out, _ = update(grads, tx.init(grads))
        b = grads["bert"]["encoder"]["layer"]["0"]["attention"]["self"]
        ob = out["bert"]["encoder"]["layer"]["0"]["attention"]["self"]
        c_attn, out_c_attn = (
            grads["gpt2"]["h"]["0"]["attn"]["c_attn"],
            out["gpt2"]["h"]["0"]["attn"]["c_attn"],
        )
        a, ab = np.asarray(c_attn["kernel"]), np.asarray(c_attn["bias"])
        oa, oab = np.asarray(out_c_attn["kernel"]), np.asarray(out_c_attn["bias"])
        pool_q = wb * np.asarray(b["query"]["kernel"]) + wg * a[0:2].T
        np.testing.assert_allclose(oa[0:2], ((1 - alpha) * a[0:2].T + alpha * pool_q).T, rtol=1e-6)
        np.testing.assert_allclose(
            ob["query"]["kernel"], (1 - alpha) * b["query"]["kernel"] + alpha * pool_q, rtol=1e-6
        )
        pool_k = wb * np.asarray(b["key"]["kernel"]) + wg * a[2:4].T
        np.testing.assert_allclose(oa[2:4], ((1 - alpha) * a[2:4].T + alpha * pool_k).T, rtol=1e-6)
        np.testing.assert_array_equal(oa[4:6], a[4:6])  # v: nobody to pool with, untouched
        pool_qb = wb * np.asarray(b["query"]["bias"]) + wg * ab[0:2]
        np.testing.assert_allclose(oab[0:2], (1 - alpha) * ab[0:2] + alpha * pool_qb, rtol=1e-6)
        np.testing.assert_array_equal(oab[2:6], ab[2:6])  # no key/value biases in BERT here


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pool_then_unpool_with_zero_coefficient_is_exact(grouping, dtype):
    grads = random_tree(4, dtype)
    flat = jax.tree.leaves(grads)
    plan = _plan.make_plan(grads, grouping=grouping, warn=False)
    assert any(
        m.view is not None and m.view.axis is not None
        for g in plan.shared_groups
        for m in g.members
    )  # fused slices are exercised
    weights = {m: 1 / 3 for m in plan.models}
    mixed = jax.jit(lambda f: _pool.mix_groups(f, plan, weights, 0.0))(flat)
    for a, b in zip(mixed, flat, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    tx = mmojax.share_gradients(alpha=0.0, grouping=grouping)
    out, _ = jax.jit(tx.update)(grads, tx.init(grads))
    for a, b in zip(jax.tree.leaves(out), flat, strict=True):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_role_never_pools_a_model_with_itself_by_hand():
    # H = 1: two BERT layers' query kernels and two GPT-2 c_attn kernels (q, k, v rows).
    def tree(b0, b1, g0, g1):
        q = lambda v: {"attention": {"self": {"query": {"kernel": jnp.array([[v]])}}}}
        c = lambda v: {"attn": {"c_attn": {"kernel": jnp.array([[v], [0.0], [0.0]])}}}
        return {
            "bert": {"encoder": {"layer": {"0": q(b0), "1": q(b1)}}},
            "gpt2": {"h": {"0": c(g0), "1": c(g1)}},
        }

    def qs(out):
        bert = out["bert"]["encoder"]["layer"]
        return [float(bert[i]["attention"]["self"]["query"]["kernel"][0, 0]) for i in "01"] + [
            float(out["gpt2"]["h"][i]["attn"]["c_attn"]["kernel"][0, 0]) for i in "01"
        ]

    grads = tree(1.0, 2.0, 10.0, 20.0)
    tx = mmojax.share_gradients(alpha=0.5, grouping="role")
    # Each member pools itself and the other model's two members (equal weights):
    #   bert L0: (1 + 10 + 20)/3,  bert L1: (2 + 10 + 20)/3,
    #   gpt2 L0: (1 + 2 + 10)/3,   gpt2 L1: (1 + 2 + 20)/3.
    expected = [
        0.5 * 1 + 0.5 * 31 / 3,
        0.5 * 2 + 0.5 * 32 / 3,
        0.5 * 10 + 0.5 * 13 / 3,
        0.5 * 20 + 0.5 * 23 / 3,
    ]
    assert qs(tx.update(grads, tx.init(grads))[0]) == pytest.approx(expected, rel=1e-6)
    # "sum": weights 1/2 each, no division: bert L0 pool = (1 + 10 + 20) / 2.
    tx = mmojax.share_gradients(alpha=0.5, grouping="role", reduction="sum")
    expected = [
        0.5 * 1 + 0.5 * 15.5,
        0.5 * 2 + 0.5 * 16,
        0.5 * 10 + 0.5 * 6.5,
        0.5 * 20 + 0.5 * 11.5,
    ]
    assert qs(tx.update(grads, tx.init(grads))[0]) == pytest.approx(expected, rel=1e-6)
    # Changing BERT's layer 1 moves GPT-2's results, never BERT's layer 0.
    tx = mmojax.share_gradients(alpha=0.5, grouping="role")
    before = qs(tx.update(grads, tx.init(grads))[0])
    after = qs(tx.update(tree(1.0, 7.0, 10.0, 20.0), tx.init(grads))[0])
    assert after[0] == before[0] and after[2] != before[2] and after[3] != before[3]


def _primitives(jaxpr):
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
def test_views_are_static_slices(grouping):
    params, grads = random_tree(5), random_tree(6)
    share = mmojax.share_gradients(alpha=0.2, grouping=grouping)
    sync = mmojax.sync_parameters(optax.identity(), beta=0.2, sync_every=1, grouping=grouping)
    for tx, args in (
        (share, (grads, share.init(params))),
        (sync, (grads, sync.init(params), params)),
    ):
        prims = _primitives(jax.make_jaxpr(lambda *a, tx=tx: tx.update(*a)[0])(*args).jaxpr)
        assert {"slice", "transpose", "concatenate"} <= prims
        assert not prims & {
            "gather",
            "scatter",
            "scatter-add",
            "dynamic_slice",
            "dynamic_update_slice",
        }


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
def test_multi_model_optimizer_uses_the_grouping(grouping):
    params = random_tree(7)

    def train(tx, steps=3):
        @jax.jit
        def step(p, state, i):
            grads = jax.tree.map(lambda x: jnp.sin(x * (i + 1.0)), p)
            updates, state = tx.update(grads, state, p)
            return optax.apply_updates(p, updates), state

        p, state = params, tx.init(params)
        for i in range(steps):
            p, state = step(p, state, jnp.float32(i))
        return p

    ours = train(
        mmojax.multi_model_optimizer(
            learning_rate=1e-2,
            warmup_steps=0,
            alpha=0.3,
            beta=0.2,
            sync_every=2,
            adaptive=False,
            weight_decay=0.0,
            grouping=grouping,
        )
    )
    chain = train(
        mmojax.sync_parameters(
            optax.chain(
                mmojax.share_gradients(0.3, grouping=grouping),
                optax.scale_by_adam(),
                optax.scale(-1e-2),
            ),
            beta=0.2,
            sync_every=2,
            grouping=grouping,
        )
    )
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(chain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
