"""Stacked cohorts: k same-architecture models on a leading axis equal the k models held apart."""

import zlib

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import cohort_optimizer

import mmojax
from mmojax.train import ModelFns, init_train_state, make_train_step

H, V, T, B = 8, 11, 5, 4
K = 3


def _normal(key, shape, scale=0.3):
    return scale * jax.random.normal(key, shape, jnp.float32)


def bert_params(seed, layers=1):
    """A BERT-like tree with Hugging Face Flax names (kernels (in, out))."""
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    dense = lambda i, o: {"kernel": _normal(next(keys), (i, o)), "bias": _normal(next(keys), (o,))}  # noqa: E731
    norm = lambda: {
        "scale": 1.0 + _normal(next(keys), (H,), 0.1),
        "bias": _normal(next(keys), (H,), 0.1),
    }  # noqa: E731
    layer = lambda: {  # noqa: E731
        "attention": {
            "self": {"query": dense(H, H), "key": dense(H, H), "value": dense(H, H)},
            "output": {"dense": dense(H, H), "LayerNorm": norm()},
        },
        "intermediate": {"dense": dense(H, 2 * H)},
        "output": {"dense": dense(2 * H, H), "LayerNorm": norm()},
    }
    return {
        "embeddings": {"word_embeddings": {"embedding": _normal(next(keys), (V, H))}},
        "encoder": {"layer": {str(i): layer() for i in range(layers)}},
        "classifier": dense(H, 2),
    }


def gpt2_params(seed, layers=1):
    """A GPT-2-like tree (Conv1D kernels stored (out, in), fused c_attn)."""
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    conv = lambda i, o: {"kernel": _normal(next(keys), (o, i)), "bias": _normal(next(keys), (o,))}  # noqa: E731
    norm = lambda: {
        "scale": 1.0 + _normal(next(keys), (H,), 0.1),
        "bias": _normal(next(keys), (H,), 0.1),
    }  # noqa: E731
    block = lambda: {  # noqa: E731
        "ln_1": norm(),
        "attn": {"c_attn": conv(H, 3 * H), "c_proj": conv(H, H)},
        "ln_2": norm(),
        "mlp": {"c_fc": conv(H, 2 * H), "c_proj": conv(2 * H, H)},
    }
    return {
        "wte": {"embedding": _normal(next(keys), (V, H))},
        "h": {str(i): block() for i in range(layers)},
        "ln_f": norm(),
        "score": {"kernel": _normal(next(keys), (H, 2)), "bias": _normal(next(keys), (2,))},
    }


def _ln(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _attend(q, k, v):
    # Sigmoid attention: under softmax the key bias has a zero gradient (softmax is
    # shift-invariant), and Adam would turn its rounding noise into full steps.
    att = jax.nn.sigmoid(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(H))
    return att @ v / T


def _dropout(x, rng, train, rate=0.1):
    if not train:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def bert_apply(p, batch, *, train, rng):
    dense = lambda x, d: x @ d["kernel"] + d["bias"]  # noqa: E731
    x = _dropout(p["embeddings"]["word_embeddings"]["embedding"][batch["input_ids"]], rng, train)
    for i in range(len(p["encoder"]["layer"])):
        lp = p["encoder"]["layer"][str(i)]
        s = lp["attention"]["self"]
        a = _attend(dense(x, s["query"]), dense(x, s["key"]), dense(x, s["value"]))
        x = _ln(
            x + dense(a, lp["attention"]["output"]["dense"]), lp["attention"]["output"]["LayerNorm"]
        )
        h = dense(jax.nn.gelu(dense(x, lp["intermediate"]["dense"])), lp["output"]["dense"])
        x = _ln(x + h, lp["output"]["LayerNorm"])
    return dense(x.mean(1), p["classifier"])


def gpt2_apply(p, batch, *, train, rng):
    conv = lambda x, d: x @ d["kernel"].T + d["bias"]  # noqa: E731
    x = _dropout(p["wte"]["embedding"][batch["input_ids"]], rng, train)
    for i in range(len(p["h"])):
        bp = p["h"][str(i)]
        q, k, v = jnp.split(conv(_ln(x, bp["ln_1"]), bp["attn"]["c_attn"]), 3, axis=-1)
        x = x + conv(_attend(q, k, v), bp["attn"]["c_proj"])
        x = x + conv(jax.nn.gelu(conv(_ln(x, bp["ln_2"]), bp["mlp"]["c_fc"])), bp["mlp"]["c_proj"])
    x = _ln(x, p["ln_f"])
    return x[:, -1] @ p["score"]["kernel"] + p["score"]["bias"]


def xent(logits, batch):
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
    return loss, {"accuracy": (logits.argmax(-1) == batch["labels"]).mean()}


BERT, GPT2 = ModelFns(bert_apply, xent), ModelFns(gpt2_apply, xent)
MEMBER_WEIGHTS = (1.0, 0.8, 1.2)


def batch_at(i):
    key = jax.random.key(100 + i)
    return {
        "input_ids": jax.random.randint(key, (B, T), 0, V),
        "labels": jax.random.randint(jax.random.fold_in(key, 1), (B,), 0, 2),
    }


def members():
    return [bert_params(seed) for seed in range(K)]


def cohort_tree():
    return {"bert": mmojax.stack_models(members()), "gpt2": gpt2_params(7)}


def separate_tree():
    out = {f"bert/{i}": p for i, p in enumerate(members())}
    out["gpt2"] = gpt2_params(7)
    return out


def optimizer(grouping, names, **overrides):
    weights = {"gpt2": 0.9}
    if "bert" in names:
        weights["bert"] = list(MEMBER_WEIGHTS)
    else:
        weights.update({f"bert/{i}": w for i, w in enumerate(MEMBER_WEIGHTS)})
    return cohort_optimizer(grouping, weights, **overrides)


def split_cohort(tree):
    """A cohort tree's leaves as separate models ``bert/i`` (for comparing)."""
    out = {f"bert/{i}": m for i, m in enumerate(mmojax.unstack_models(tree["bert"]))}
    out["gpt2"] = tree["gpt2"]
    return out


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    la = jax.tree_util.tree_flatten_with_path(a)[0]
    lb = jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


def assert_trees_differ(a, b):
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --------------------------------------------------------------------------- the plan


@pytest.mark.parametrize("grouping", ["type_shape", "role", "role_depth"])
def test_plan_of_a_cohort_is_the_plan_of_its_members_held_apart(grouping):
    cohort = mmojax.sharing_plan(cohort_tree(), grouping=grouping)
    apart = mmojax.sharing_plan(separate_tree(), grouping=grouping)
    assert cohort.models == apart.models == ("bert/0", "bert/1", "bert/2", "gpt2")
    assert cohort.roots == ("bert", "gpt2") and cohort.cohorts == {"bert": K}
    assert [str(g.key) for g in cohort.groups] == [str(g.key) for g in apart.groups]
    assert [[m.name for m in g.members] for g in cohort.groups] == [
        [m.name for m in g.members] for g in apart.groups
    ]
    assert cohort.coverage() == apart.coverage()
    assert cohort.unpaired == apart.unpaired
    assert str(cohort) == str(apart)
    # A member is a slot of the stacked leaf, then the view.
    slots = {m.slot for g in cohort.shared_groups for m in g.members if m.model != "gpt2"}
    assert slots == set(range(K))


def test_type_shape_pools_a_members_own_leaves_as_separate_models_do():
    plan = mmojax.sharing_plan(cohort_tree(), grouping="type_shape")
    # Q, K, V and output kernels of every layer of every member share one key (the paper's
    # grouping), as they do for separately held models.
    group = next(g for g in plan.shared_groups if str(g.key) == "attention(8, 8)")
    per_model = {}
    for m in group.members:
        per_model[m.model] = per_model.get(m.model, 0) + 1
    layers = len(members()[0]["encoder"]["layer"])
    assert per_model["bert/0"] == per_model["bert/1"] == per_model["bert/2"] == 4 * layers
    assert group.within_model


def test_cohort_validation():
    with pytest.raises(ValueError, match="leading axis"):
        mmojax.sharing_plan({"a": mmojax.Cohort({"w": jnp.ones((2, 3)), "b": jnp.ones((3, 3))})})
    with pytest.raises(ValueError, match="clash"):
        mmojax.sharing_plan(
            {"a": mmojax.stack_models([{"w": jnp.ones(3)}] * 2), "a/1": {"w": jnp.ones(3)}}
        )
    with pytest.raises(ValueError, match="another tree structure"):
        mmojax.stack_models([{"w": jnp.ones(3)}, {"v": jnp.ones(3)}])
    tx = mmojax.multi_model_optimizer(model_weights={"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="a number or 2 numbers"):
        tx.init({"a": mmojax.stack_models([{"w": jnp.ones(3)}] * 2), "b": {"w": jnp.ones(3)}})
    with pytest.raises(ValueError, match="finite and >= 0"):
        mmojax.multi_model_optimizer(model_weights={"a": [1.0, -2.0]})


# ------------------------------------------------------------------ the optimizer alone


def _grads(params, i):
    return jax.tree.map(lambda x: jnp.sin(x * (i + 1.0)) + 0.1 * jnp.cos(3.0 * x), params)


def _losses(i):
    # Per-member losses that move differently, so Algorithm 3 gives each member its own rate.
    return {f"bert/{j}": 2.0 / (1.0 + (j + 1) * i) for j in range(K)} | {
        "gpt2": 1.0 / (1.0 + 0.1 * i)
    }


def _run_optimizer(tx, params, losses_of, steps):
    def step(p, s, i, losses):
        u, s = tx.update(_grads(p, i), s, p, losses=losses)
        return optax.apply_updates(p, u), s

    fn = jax.jit(step, donate_argnums=(0, 1))
    p, s = jax.tree.map(jnp.copy, params), tx.init(params)
    for i in range(steps):
        p, s = fn(p, s, jnp.float32(i), losses_of(i))
    return p, s


@pytest.mark.parametrize("grouping", ["type_shape", "role_depth"])
def test_optimizer_on_a_cohort_equals_the_members_held_apart(grouping):
    steps = 13  # syncs at updates 4, 8, 12; convergence estimates from update 4 on
    losses = _losses

    def cohort_losses(i):
        ls = losses(i)
        return {"bert": jnp.array([ls[f"bert/{j}"] for j in range(K)]), "gpt2": ls["gpt2"]}

    params = cohort_tree()
    got, s_got = _run_optimizer(optimizer(grouping, params), params, cohort_losses, steps)
    ref, s_ref = _run_optimizer(
        optimizer(grouping, separate_tree()), separate_tree(), losses, steps
    )
    assert_trees_differ(split_cohort(got), separate_tree())
    assert_trees_close(split_cohort(got), ref)
    lrs = mmojax.per_member(mmojax.learning_rates(s_got))
    rates = mmojax.per_member(mmojax.convergence_rates(s_got))
    assert lrs.keys() == mmojax.learning_rates(s_ref).keys()
    for name, lr in mmojax.learning_rates(s_ref).items():
        np.testing.assert_allclose(lrs[name], lr, rtol=1e-6)
        np.testing.assert_allclose(rates[name], mmojax.convergence_rates(s_ref)[name], rtol=1e-6)
    # The members really got rates of their own (adaptive on, different loss trends).
    assert len({round(float(r), 6) for r in mmojax.convergence_rates(s_got)["bert"]}) == K


def test_cohort_sync_changes_the_members_as_separate_models():
    # beta alone (no sharing): a sync step is the only coupling, and it must match.
    params = cohort_tree()
    kw = dict(alpha=0.0, beta=0.5, sync_every=2, adaptive=False, clip_norm=None)
    got, _ = _run_optimizer(optimizer("role_depth", params, **kw), params, lambda i: None, 4)
    ref, _ = _run_optimizer(
        optimizer("role_depth", separate_tree(), **kw), separate_tree(), lambda i: None, 4
    )
    nosync, _ = _run_optimizer(
        optimizer("role_depth", params, **{**kw, "beta": 0.0}), params, lambda i: None, 4
    )
    assert_trees_close(split_cohort(got), ref)
    assert_trees_differ(got, nosync)


def test_accumulated_updates_on_a_cohort_equal_separate_models():
    # Gradient accumulation averages each member's losses and gradients on its own.
    members_ = [{"mlp": {"kernel": jax.random.normal(jax.random.key(i), (4, 4))}} for i in range(K)]
    other = {"mlp": {"kernel": jax.random.normal(jax.random.key(9), (4, 4))}}
    kw = dict(
        learning_rate=0.1,
        warmup_steps=0,
        sync_every=2,
        beta=0.3,
        convergence_window=2,
        convergence_update_every=1,
        max_convergence_scale=3.0,
        gradient_accumulation_steps=2,
        grouping="type_shape",
    )

    def losses(i):
        return {f"m/{j}": 1.0 / (1.0 + (j + 1) * i) for j in range(K)} | {"x": 1.0 / (1.0 + i)}

    cohort = {"m": mmojax.stack_models(members_), "x": other}
    got, s_got = _run_optimizer(
        mmojax.multi_model_optimizer(**kw),
        cohort,
        lambda i: {"m": jnp.array([losses(i)[f"m/{j}"] for j in range(K)]), "x": losses(i)["x"]},
        8,
    )
    apart = {f"m/{j}": t for j, t in enumerate(members_)} | {"x": other}
    ref, s_ref = _run_optimizer(mmojax.multi_model_optimizer(**kw), apart, losses, 8)
    split = {f"m/{j}": t for j, t in enumerate(mmojax.unstack_models(got["m"]))} | {"x": got["x"]}
    assert_trees_differ(split, apart)
    assert_trees_close(split, ref)
    rates = mmojax.per_member(mmojax.convergence_rates(s_got))
    for name, r in mmojax.convergence_rates(s_ref).items():
        np.testing.assert_allclose(rates[name], r, rtol=1e-6)


# ---------------------------------------------------------------------- the train step


def _train(params, models, tx, steps, donate=True, **step_options):
    step = make_train_step(models, tx, donate=donate, **step_options)
    state = init_train_state(params, tx, seed=3)
    history = []
    for i in range(steps):
        state, metrics = step(state, batch_at(i))
        history.append(jax.device_get(metrics))
    return state, history


@pytest.mark.parametrize(
    "grouping", ["role_depth", pytest.param("type_shape", marks=pytest.mark.slow)]
)
def test_train_step_with_a_vmapped_cohort_equals_separate_models(grouping):
    steps = 12  # syncs at 4, 8, 12
    cohort = cohort_tree()
    state, history = _train(
        cohort, {"bert": BERT, "gpt2": GPT2}, optimizer(grouping, cohort), steps
    )
    apart = separate_tree()
    models = {f"bert/{i}": BERT for i in range(K)} | {"gpt2": GPT2}
    ref_state, ref_history = _train(apart, models, optimizer(grouping, apart), steps)
    assert_trees_differ(split_cohort(state.params), apart)
    assert_trees_close(split_cohort(state.params), ref_state.params)
    for metrics, ref in zip(history, ref_history):
        for key in ("loss", "accuracy", "grad_norm", "lr", "conv_rate"):
            assert metrics["bert"][key].shape == (K,)
            got = mmojax.per_member({"bert": metrics["bert"][key]})
            for i in range(K):
                np.testing.assert_allclose(
                    got[f"bert/{i}"], ref[f"bert/{i}"][key], rtol=1e-5, atol=1e-6, err_msg=key
                )
        np.testing.assert_allclose(metrics["gpt2"]["loss"], ref["gpt2"]["loss"], rtol=1e-5)
    assert state.nonfinite["bert"].shape == (K,)
    # The members see different dropout masks: their losses differ although
    # two of them would otherwise be fed the same batch with similar weights.
    assert len({round(float(x), 6) for x in history[0]["bert"]["loss"]}) == K


@pytest.mark.parametrize("chunk", [1, 3])  # 3: chunks of 3 and 1 (K = 4)
def test_a_cohort_run_in_chunks_of_members_equals_one_vmap(chunk):
    steps = 5  # a sync at 4
    cohort = cohort_tree()
    models = {"bert": BERT, "gpt2": GPT2}
    state, history = _train(cohort, models, optimizer("role_depth", cohort), steps)
    got, got_history = _train(
        cohort, models, optimizer("role_depth", cohort), steps, cohort_chunk=chunk
    )
    assert_trees_differ(got.params["bert"].params, cohort["bert"].params)
    assert_trees_close(got.params, state.params)
    for metrics, ref in zip(got_history, history):
        np.testing.assert_allclose(metrics["bert"]["loss"], ref["bert"]["loss"], rtol=1e-5)


def test_cohort_chunk_must_be_a_positive_int_and_not_on_a_model_axis():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="cohort_chunk must be an int >= 1"):
            make_train_step({"bert": BERT}, optax.sgd(0.1), cohort_chunk=bad)
    devices = np.array(jax.devices()[:2]).reshape(2, 1)
    mesh = jax.sharding.Mesh(devices, ("model", "data"))
    with pytest.raises(ValueError, match="'model' axis spreads over 2 device groups"):
        make_train_step({"bert": BERT}, optax.sgd(0.1), cohort_chunk=2, mesh=mesh)


def test_a_nonfinite_member_is_skipped_alone():
    cohort = cohort_tree()
    bad = jax.tree.map(lambda x: x.at[1].set(jnp.nan), cohort["bert"].params)
    cohort = {"bert": mmojax.Cohort(bad), "gpt2": cohort["gpt2"]}
    tx = optax.with_extra_args_support(optax.adam(1e-2))
    state, history = _train(cohort, {"bert": BERT, "gpt2": GPT2}, tx, 2)
    assert history[-1]["bert"]["finite"].tolist() == [True, False, True]
    assert state.nonfinite["bert"].tolist() == [0, 2, 0]
    assert state.skipped["bert"].tolist() == [0, 2, 0]
    before = mmojax.unstack_models(cohort["bert"])
    after = mmojax.unstack_models(state.params["bert"])
    assert_trees_differ(after[0], before[0])
    assert all(np.isnan(x).all() for x in jax.tree.leaves(after[1]))


def test_eval_step_runs_a_cohort_vmapped():
    from mmojax.train import make_eval_step

    cohort = cohort_tree()
    step = make_eval_step({"bert": BERT, "gpt2": GPT2}, lambda out, b: {"logits": out})
    out = step(cohort, batch_at(0))
    assert out["bert"]["logits"].shape == (K, B, 2)
    for i, p in enumerate(members()):
        np.testing.assert_allclose(
            out["bert"]["logits"][i], bert_apply(p, batch_at(0), train=False, rng=None), rtol=1e-5
        )


def _conds(jaxpr):
    """Every ``cond`` equation of a closed jaxpr, nested ones included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            out.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            out.extend(_conds(sub))
    return out


def test_the_sync_gate_of_a_vmapped_cohort_step_is_one_scalar_conditional():
    # The cohort's forward/backward runs under vmap; the optimizer runs on the stacked
    # tree, so its sync gate is one conditional on a scalar predicate, not a select
    # that would run the sync branch on every step.
    cohort = cohort_tree()
    tx = optimizer("role_depth", cohort)
    step = make_train_step({"bert": BERT, "gpt2": GPT2}, tx, jit=False)
    state = init_train_state(cohort, tx, seed=0)
    conds = _conds(jax.make_jaxpr(step)(state, batch_at(0)).jaxpr)
    # Its rare branch holds the sync (the pool sums), the common one passes them through.
    sync = [
        c
        for c in conds
        if len(c.params["branches"][1].jaxpr.eqns)
        > 10 * max(len(c.params["branches"][0].jaxpr.eqns), 1)
    ]
    assert len(sync) == 1
    assert sync[0].invars[0].aval.shape == ()  # the predicate: is this a sync step
    # The only other one zeroes the plain model's gradients when they are not finite
    # (true branch: the identity); the cohort's members are masked by a select.
    (mask,) = [c for c in conds if c is not sync[0]]
    assert mask.invars[0].aval.shape == () and not mask.params["branches"][1].jaxpr.eqns


def _donated_cohort_step():
    params = {
        "a": mmojax.stack_models([{"mlp": {"kernel": jnp.ones((64, 64))}}] * K),
        "b": {"mlp": {"kernel": jnp.ones((64, 64))}},
    }
    tx = mmojax.sync_parameters(optax.adamw(1e-3), beta=0.1, sync_every=10)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
    return lowered.compile().as_text()


def test_a_donated_cohort_sync_step_compiles_to_one_conditional():
    assert _donated_cohort_step().count("conditional(") == 1


def test_a_donated_cohort_sync_step_copies_no_state():
    # As tests/test_optim_design.py checks for separate models: no parameter-sized copy.
    text = _donated_cohort_step()
    entry = text[text.index("ENTRY") :]
    big_copies = [
        line
        for line in entry.splitlines()
        if " copy(" in line and ("[3,64,64]" in line or "[64,64]" in line)
    ]
    assert big_copies == []


def test_member_dropout_keys_are_those_of_separate_models():
    from mmojax.train._step import _member_keys

    key = jax.random.key(0)
    keys = _member_keys(key, "bert", K)
    for i in range(K):
        ref = jax.random.fold_in(key, zlib.crc32(f"bert/{i}".encode()))
        assert (jax.random.key_data(keys[i]) == jax.random.key_data(ref)).all()
