"""Alignment: canonical views of HF Flax layouts, depth pairing, the role plans, fallback."""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from transformers import (
    BertConfig,
    FlaxBertModel,
    FlaxGPT2Model,
    FlaxRobertaModel,
    GPT2Config,
    RobertaConfig,
)
from transformers.models.bert.modeling_flax_bert import FlaxBertLayer
from transformers.models.gpt2.modeling_flax_gpt2 import FlaxGPT2Block

import mmojax
import mmojax.models
from mmojax.optim import _pool, _views

H = 8


@functools.cache
def hf_bare_shapes():
    """Abstract HF Flax base-model trees (no task prefix): BERT 2, GPT-2 2, RoBERTa 3 layers."""
    bert = FlaxBertModel(
        BertConfig(
            hidden_size=H,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=4 * H,
            vocab_size=11,
            max_position_embeddings=16,
        ),
        _do_init=False,
    )
    roberta = FlaxRobertaModel(
        RobertaConfig(
            hidden_size=H,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=4 * H,
            vocab_size=11,
            max_position_embeddings=18,
        ),
        _do_init=False,
    )
    gpt2 = FlaxGPT2Model(
        GPT2Config(n_embd=H, n_layer=2, n_head=2, vocab_size=11, n_positions=16), _do_init=False
    )
    return {
        name: jax.eval_shape(lambda m=m: m.init_weights(jax.random.key(0), m.input_shape))
        for name, m in (("bert", bert), ("gpt2", gpt2), ("roberta", roberta))
    }


@pytest.fixture(scope="module")
def bare_shapes():
    return hf_bare_shapes()


@pytest.fixture(scope="module")
def task_shapes():
    """mmojax's tiny task models (``bert/``, ``transformer/``, ``roberta/`` prefixes, heads)."""
    models = mmojax.models.build_models(
        "bert,gpt2,roberta", preset="tiny", vocab_size=100, max_length=16
    )
    return jax.eval_shape(lambda: {n: m.params for n, m in models.items()})


def views_by_name(alignment):
    return {v.name: v for v in alignment.views}


def test_gpt2_views(bare_shapes):
    views = views_by_name(mmojax.align_parameters(bare_shapes))
    for k, role in enumerate(("q", "k", "v")):
        v = views[f"gpt2/h/1/attn/c_attn/kernel[{role}].T"]
        assert (v.role, v.kind, v.shape, v.layer, v.num_layers) == (
            f"attn.{role}",
            "kernel",
            (H, H),
            1,
            2,
        )
        assert (v.index_map.axis, v.index_map.start, v.index_map.stop) == (0, k * H, (k + 1) * H)
        b = views[f"gpt2/h/1/attn/c_attn/bias[{role}]"]
        assert (b.role, b.kind, b.shape) == (f"attn.{role}", "bias", (H,))
    assert views["gpt2/h/0/mlp/c_fc/kernel.T"].shape == (H, 4 * H)
    assert views["gpt2/h/0/mlp/c_fc/kernel.T"].role == "mlp.up"
    assert views["gpt2/h/0/mlp/c_proj/kernel.T"].shape == (4 * H, H)
    assert views["gpt2/h/0/mlp/c_proj/kernel.T"].role == "mlp.down"
    assert views["gpt2/h/0/attn/c_proj/kernel.T"].role == "attn.out"
    assert views["gpt2/h/0/ln_1/scale"].role == "norm.attn"
    assert views["gpt2/h/0/ln_2/bias"].role == "norm.mlp"
    assert views["gpt2/ln_f/scale"].role == "norm.final"
    assert views["gpt2/wte/embedding"].role == "embed.tok"
    assert views["gpt2/wpe/embedding"].role == "embed.pos"


def test_bert_roberta_views(bare_shapes):
    alignment = mmojax.align_parameters(bare_shapes)
    views = views_by_name(alignment)
    expected = {
        "attention/self/query/kernel": ("attn.q", "kernel", (H, H)),
        "attention/self/key/bias": ("attn.k", "bias", (H,)),
        "attention/self/value/kernel": ("attn.v", "kernel", (H, H)),
        "attention/output/dense/kernel": ("attn.out", "kernel", (H, H)),
        "attention/output/LayerNorm/scale": ("norm.attn", "scale", (H,)),
        "intermediate/dense/kernel": ("mlp.up", "kernel", (H, 4 * H)),
        "output/dense/kernel": ("mlp.down", "kernel", (4 * H, H)),
        "output/dense/bias": ("mlp.down", "bias", (H,)),
        "output/LayerNorm/bias": ("norm.mlp", "bias", (H,)),
    }
    for model in ("bert", "roberta"):
        for path, want in expected.items():
            v = views[f"{model}/encoder/layer/1/{path}"]
            assert (v.role, v.kind, v.shape) == want, (model, path)
            assert v.index_map.is_identity
        assert views[f"{model}/embeddings/LayerNorm/scale"].role == "norm.embed"
        assert views[f"{model}/embeddings/token_type_embeddings/embedding"].role == "embed.type"
        assert views[f"{model}/pooler/dense/kernel"].role == "head.pool"
    assert alignment.num_layers == {"bert": 2, "gpt2": 2, "roberta": 3}
    assert not alignment.unmatched


def test_task_prefixes_and_heads(task_shapes, bare_shapes):
    alignment = mmojax.align_parameters(task_shapes)
    assert not alignment.unmatched
    views = views_by_name(alignment)
    # mmojax's models hold GPT-2's Conv1D kernels (in, out): views without a transpose.
    assert views["gpt2/transformer/h/0/attn/c_attn/kernel[:, q]"].role == "attn.q"
    assert views["gpt2/transformer/h/0/attn/c_proj/kernel"].index_map.is_identity
    assert views["bert/bert/encoder/layer/0/intermediate/dense/kernel"].role == "mlp.up"
    assert views["roberta/roberta/encoder/layer/1/output/dense/kernel"].role == "mlp.down"
    assert views["gpt2/score/kernel"].role == "head.out"
    assert views["bert/classifier/kernel"].role == "head.out"
    assert views["roberta/classifier/dense/kernel"].role == "head.pool"
    assert views["roberta/classifier/out_proj/kernel"].role == "head.out"
    assert views["bert/bert/pooler/dense/kernel"].role == "head.pool"
    # With or without the task model's prefix, a backbone leaf gets the same views.
    prefix = {"bert": "bert/", "gpt2": "transformer/", "roberta": "roberta/"}
    prefixed = {
        (v.model, v.path[len(prefix[v.model]) :], str(v.index_map)): (v.role, v.kind)
        for v in alignment.views
        if v.path.startswith(prefix[v.model])
    }
    held = {**bare_shapes, "gpt2": mmojax.models.swap_conv1d_layout(bare_shapes["gpt2"])}
    bare = {
        (v.model, v.path, str(v.index_map)): (v.role, v.kind)
        for v in mmojax.align_parameters(held).views
    }
    common = set(prefixed) & set(bare)
    assert len(common) > 80
    assert all(prefixed[k] == bare[k] for k in common)


def test_gpt2_orientation_is_read_per_model_from_c_attn(bare_shapes):
    # Hugging Face's (out, in) and mmojax's (in, out) GPT-2 give the same views, up to
    # the transpose, the square attn/c_proj included; each model is read on its own.
    held = mmojax.models.swap_conv1d_layout(bare_shapes["gpt2"])
    hf_views = mmojax.align_parameters({"a": bare_shapes["gpt2"], "b": held}).views
    a = {(v.path, v.index_map.tag): v for v in hf_views if v.model == "a"}
    b = {(v.path, v.index_map.tag): v for v in hf_views if v.model == "b"}
    assert a.keys() == b.keys()
    for key, va in a.items():
        vb = b[key]
        assert (va.role, va.kind, va.shape, va.layer) == (vb.role, vb.kind, vb.shape, vb.layer)
        assert not vb.index_map.transpose
        assert va.index_map.transpose == (va.kind == "kernel")
    assert b[("h/0/attn/c_proj/kernel", "")].index_map.is_identity
    assert b[("h/0/attn/c_attn/kernel", "q")].index_map.axis == 1
    # Without a fused c_attn to tell, the kernels are Hugging Face's (out, in).
    mlp_only = {"gpt2": {"h": {"0": {"mlp": held["h"]["0"]["mlp"]}}}}
    (view, *_) = [
        v for v in mmojax.align_parameters(mlp_only).views if v.path.endswith("c_fc/kernel")
    ]
    assert view.index_map.transpose and view.shape == (4 * H, H)
    # One model holding its fused kernels both ways is refused.
    mixed = {"gpt2": {"h": {"0": held["h"]["0"], "1": bare_shapes["gpt2"]["h"]["1"]}}}
    with pytest.raises(ValueError, match=r"both \(out, in\).*and \(in, out\)"):
        mmojax.align_parameters(mixed)
    with pytest.raises(TypeError, match="transpose must be a bool or 'auto'"):
        mmojax.AlignRule("x", "attn.q", transpose="yes")


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
def test_sharing_a_held_gpt2_equals_sharing_hf_layout(grouping):
    # The same gradients in either GPT-2 layout give the same shared gradients.
    grads = jax.tree.map(
        lambda s: jax.random.normal(jax.random.key(hash(s.shape) % 1000), s.shape),
        hf_bare_shapes(),
    )
    held = {**grads, "gpt2": mmojax.models.swap_conv1d_layout(grads["gpt2"])}
    tx = mmojax.share_gradients(0.5, grouping=grouping)
    want, _ = tx.update(grads, tx.init(grads))
    got, _ = tx.update(held, tx.init(held))
    got = {**got, "gpt2": mmojax.models.swap_conv1d_layout(got["gpt2"])}
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), got, want)


def _capture(module, variables, *args):
    _, state = module.apply(variables, *args, capture_intermediates=True, mutable=["intermediates"])
    return state["intermediates"]


def test_views_compute_x_at_w_plus_b_in_the_hf_modules():
    """Every canonical kernel view W (in, out) and bias view b give the module's y = x W + b."""
    x = jax.random.normal(jax.random.key(0), (2, 5, H))
    gpt2 = FlaxGPT2Block(GPT2Config(n_embd=H, n_layer=1, n_head=2))
    g_vars = gpt2.init(jax.random.key(1), x)
    g_vars = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), g_vars
    )  # non-zero biases
    bert = FlaxBertLayer(BertConfig(hidden_size=H, num_attention_heads=2, intermediate_size=4 * H))
    mask = jnp.ones((2, 5))
    b_vars = bert.init(jax.random.key(3), x, mask, None)
    params = {
        "bert": {"encoder": {"layer": {"0": b_vars["params"]}}},
        "gpt2": {"h": {"0": g_vars["params"]}},
    }
    flat = jax.tree.leaves(params)
    views = views_by_name(mmojax.align_parameters(params))

    def w_b(model, prefix, tag=""):
        kernel = views[f"{model}/{prefix}/kernel{tag}{'.T' if model == 'gpt2' else ''}"]
        bias = views[f"{model}/{prefix}/bias{tag}"]
        return (
            kernel.index_map.gather(flat[kernel.index]),
            bias.index_map.gather(flat[bias.index]),
        )

    g = _capture(gpt2, g_vars, x)
    qkv = g["attn"]["c_attn"]["__call__"][0]
    for k, tag in enumerate("qkv"):
        w, b = w_b("gpt2", "h/0/attn/c_attn", f"[{tag}]")
        np.testing.assert_allclose(
            g["ln_1"]["__call__"][0] @ w + b, qkv[..., k * H : (k + 1) * H], rtol=1e-5, atol=1e-5
        )
    w, b = w_b("gpt2", "h/0/mlp/c_fc")
    fc = g["mlp"]["c_fc"]["__call__"][0]
    np.testing.assert_allclose(g["ln_2"]["__call__"][0] @ w + b, fc, rtol=1e-5, atol=1e-5)
    w, b = w_b("gpt2", "h/0/mlp/c_proj")
    np.testing.assert_allclose(
        jax.nn.gelu(fc, approximate=True) @ w + b,
        g["mlp"]["c_proj"]["__call__"][0],
        rtol=1e-5,
        atol=1e-5,
    )

    c = _capture(bert, b_vars, x, mask, None)
    w, b = w_b("bert", "encoder/layer/0/attention/self/query")
    np.testing.assert_allclose(
        x @ w + b, c["attention"]["self"]["query"]["__call__"][0], rtol=1e-5, atol=1e-5
    )
    w, b = w_b("bert", "encoder/layer/0/intermediate/dense")
    np.testing.assert_allclose(
        c["attention"]["output"]["LayerNorm"]["__call__"][0] @ w + b,
        c["intermediate"]["dense"]["__call__"][0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_depth_pairing():
    # 2 vs 3 layers: slots at 1/4, 3/4; layers at 1/6, 1/2, 5/6 -> 0 <-> 0, 1 <-> 2.
    assert mmojax.depth_pairing(3, grid=2) == {0: 0, 2: 1}
    assert mmojax.depth_pairing(2, grid=2) == {0: 0, 1: 1}
    assert mmojax.depth_pairing(5, grid=1) == {2: 0}
    assert mmojax.depth_pairing(4, grid=2) == {0: 0, 2: 1}  # exact ties go to the shallower layer
    assert mmojax.depth_pairing(12, grid=6) == {2 * j: j for j in range(6)}
    assert mmojax.depth_pairing(6, grid=4) == {0: 0, 2: 1, 3: 2, 5: 3}
    for depth in range(1, 13):
        for grid in range(1, depth + 1):
            pairs = mmojax.depth_pairing(depth, grid=grid)
            assert sorted(pairs.values()) == list(range(grid))  # every slot, distinct layers
            assert list(pairs) == sorted(pairs)  # monotone in depth


def test_role_depth_pairs_2_with_3_layers(bare_shapes):
    plan = mmojax.sharing_plan(bare_shapes, grouping="role_depth")
    q = {
        g.key.depth: {m.model: m.layer for m in g.members}
        for g in plan.shared_groups
        if g.key.role == "attn.q" and g.key.kind == "kernel"
    }
    assert q == {
        (0, 2): {"bert": 0, "gpt2": 0, "roberta": 0},
        (1, 2): {"bert": 1, "gpt2": 1, "roberta": 2},
    }
    assert len(plan.unpaired) == 16  # RoBERTa's middle layer: 16 leaves, none shared
    assert all(name.startswith("roberta/encoder/layer/1/") for name in plan.unpaired)
    assert "unpaired" in str(plan)


@pytest.mark.parametrize("grouping", ["role", "role_depth"])
def test_role_groups_never_mix_kinds_or_pool_a_model_with_itself(bare_shapes, grouping):
    plan = mmojax.sharing_plan(bare_shapes, grouping=grouping)
    align = {(v.index, v.index_map): v for v in mmojax.align_parameters(bare_shapes).views}
    assert plan.shared_groups
    for group in plan.shared_groups:
        assert not group.within_model
        kinds = {align[(m.index, m.view or _views.IDENTITY)].kind for m in group.members}
        assert kinds == {group.key.kind}
        if group.key.role.startswith("norm."):
            assert {m.path.rsplit("/", 1)[-1] for m in group.members} == {group.key.kind}
        shapes = {align[(m.index, m.view or _views.IDENTITY)].shape for m in group.members}
        assert shapes == {group.shape}
        if grouping == "role_depth":
            assert len({m.model for m in group.members}) == len(group.members)
    weights = {m: 1 / 3 for m in plan.models}
    for group in plan.shared_groups:
        recipe = _pool.pool_recipe(group, weights)
        for p, member in enumerate(group.members):
            pooled = set(recipe.buffers[recipe.reads[p]])
            if recipe.adds_self[p]:
                pooled.add(p)
            own = {q for q, other in enumerate(group.members) if other.model == member.model}
            assert pooled & own == {p}  # itself, never another member of its own model
        # One pool buffer per group; more only for models with several members (role).
        per_model = max(sum(m.model == n for m in group.members) for n in group.models)
        assert len(recipe.buffers) == (1 if per_model == 1 else len(group.models))
    # Under the paper's grouping a LayerNorm scale and bias do pool together.
    paper = mmojax.sharing_plan(bare_shapes)
    norm = next(g for g in paper.shared_groups if str(g.key) == f"norm({H},)")
    assert {m.path.rsplit("/", 1)[-1] for m in norm.members} == {"scale", "bias"}


def test_role_plan_pairs_c_fc_with_bert_intermediate(bare_shapes):
    def partners(plan, name):
        group = next(g for g in plan.shared_groups if name in {m.name for m in g.members})
        return {m.name for m in group.members}

    paper = partners(mmojax.sharing_plan(bare_shapes), "gpt2/h/0/mlp/c_fc/kernel")
    assert "bert/encoder/layer/0/output/dense/kernel" in paper  # the paper's mismatch
    role = partners(mmojax.sharing_plan(bare_shapes, grouping="role"), "gpt2/h/0/mlp/c_fc/kernel.T")
    assert "bert/encoder/layer/0/intermediate/dense/kernel" in role
    assert "bert/encoder/layer/0/output/dense/kernel" not in role
    depth = partners(
        mmojax.sharing_plan(bare_shapes, grouping="role_depth"), "gpt2/h/1/attn/c_attn/kernel[q].T"
    )
    assert depth == {
        "gpt2/h/1/attn/c_attn/kernel[q].T",
        "bert/encoder/layer/1/attention/self/query/kernel",
        "roberta/encoder/layer/2/attention/self/query/kernel",
    }
    text = mmojax.sharing_plan(bare_shapes, grouping="role").describe()
    assert "gpt2/h/0/attn/c_attn/kernel[q].T" in text and "gpt2/h/0/attn/c_attn/bias[v]" in text


def test_coverage(task_shapes, bare_shapes):
    cover = {g: mmojax.sharing_plan(task_shapes, grouping=g).coverage() for g in mmojax.GROUPINGS}
    assert cover["role"]["gpt2"] > cover["type_shape"]["gpt2"]  # c_attn now shares
    assert cover["role_depth"] == cover["role"]  # equal depths: nothing left unpaired
    cover = {
        g: mmojax.sharing_plan(bare_shapes, grouping=g).coverage() for g in ("role", "role_depth")
    }
    assert cover["role_depth"]["bert"] == pytest.approx(cover["role"]["bert"])
    assert cover["role_depth"]["roberta"] < cover["role"]["roberta"]  # its unpaired layer


def test_unknown_layout_falls_back_with_a_warning(bare_shapes, caplog):
    params = {m: dict(t) for m, t in bare_shapes.items()}
    params["bert"]["mystery"] = {"w": jax.ShapeDtypeStruct((3, 3), jnp.float32)}
    params["gpt2"]["mystery"] = {"w": jax.ShapeDtypeStruct((3, 3), jnp.float32)}
    params["gpt2"]["other_thing"] = {"w": jax.ShapeDtypeStruct((3, 3), jnp.float32)}
    with caplog.at_level(logging.WARNING, logger="mmojax"):
        plan = mmojax.sharing_plan(params, grouping="role")
    assert plan.unmatched == ("bert/mystery/w", "gpt2/mystery/w", "gpt2/other_thing/w")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    for name in plan.unmatched:
        assert name in messages[0]
    # Those leaves group by (type, shape) among themselves, the paper's way.
    fallback = [g for g in plan.shared_groups if isinstance(g.key, mmojax.ParamKey)]
    assert [(str(g.key), [m.name for m in g.members], g.within_model) for g in fallback] == [
        ("other(3, 3)", ["bert/mystery/w", "gpt2/mystery/w", "gpt2/other_thing/w"], True)
    ]
    # The type_shape plan does not warn; the transformations warn at init, not per update.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmojax"):
        mmojax.sharing_plan(params)
        tx = mmojax.share_gradients(grouping="role_depth")
        state = tx.init(params)
        assert len(caplog.records) == 1
        grads = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
        jax.jit(tx.update)(grads, state)
        assert len(caplog.records) == 1


def test_custom_rules_first_match_wins():
    params = {
        "x": {"blocks": {"0": {"wqkv": jnp.zeros((4, 12)), "norm": jnp.zeros(4)}}},
        "y": {"layers": {"0": {"q": {"kernel": jnp.zeros((4, 4))}}}},
    }
    rules = (
        mmojax.AlignRule(
            r"^x/blocks/(?P<layer>\d+)/wqkv$", ("attn.q", "attn.k", "attn.v"), kind="kernel"
        ),
        mmojax.AlignRule(r"layers/(?P<layer>\d+)/q/kernel$", "attn.q"),
        mmojax.AlignRule(r"norm", "norm.attn", kind="scale"),
        mmojax.AlignRule(r".*", "never.reached"),
    )
    alignment = mmojax.align_parameters(params, rules=rules)
    got = [(v.name, v.role, v.kind, v.shape, v.layer, v.num_layers) for v in alignment.views]
    assert got == [
        ("x/blocks/0/norm", "norm.attn", "scale", (4,), None, None),  # no `layer` group
        ("x/blocks/0/wqkv[:, q]", "attn.q", "kernel", (4, 4), 0, 1),
        ("x/blocks/0/wqkv[:, k]", "attn.k", "kernel", (4, 4), 0, 1),
        ("x/blocks/0/wqkv[:, v]", "attn.v", "kernel", (4, 4), 0, 1),
        ("y/layers/0/q/kernel", "attn.q", "kernel", (4, 4), 0, 1),
    ]
    assert "wqkv[:, q]" in str(alignment)
    plan = mmojax.sharing_plan(params, grouping="role_depth", align_rules=rules)
    (group,) = plan.shared_groups
    assert [m.name for m in group.members] == ["x/blocks/0/wqkv[:, q]", "y/layers/0/q/kernel"]


def test_rows_rule():
    params = {
        "bert": {"embeddings": {"position_embeddings": {"embedding": jnp.zeros((6, 2))}}},
        "roberta": {"embeddings": {"position_embeddings": {"embedding": jnp.zeros((8, 2))}}},
    }
    plan = mmojax.sharing_plan(params, grouping="role")
    assert not plan.shared_groups  # (6, 2) vs (8, 2)
    rules = (
        mmojax.AlignRule(
            r"^roberta/embeddings/position_embeddings/embedding$", "embed.pos", rows=(1, -1)
        ),
        *mmojax.DEFAULT_ALIGN_RULES,
    )
    plan = mmojax.sharing_plan(params, grouping="role", align_rules=rules)
    (group,) = plan.shared_groups
    assert [m.name for m in group.members] == [
        "bert/embeddings/position_embeddings/embedding",
        "roberta/embeddings/position_embeddings/embedding[1:7]",
    ]


def test_bad_alignment_settings():
    with pytest.raises(ValueError, match="grouping must be one of"):
        mmojax.share_gradients(grouping="layer")
    with pytest.raises(ValueError, match="grouping must be one of"):
        mmojax.sync_parameters(optax.identity(), grouping="")
    with pytest.raises(ValueError, match="grouping must be one of"):
        mmojax.multi_model_optimizer(grouping="roles")
    with pytest.raises(ValueError, match="grouping must be one of"):
        mmojax.sharing_plan({"a": {"w": jnp.zeros(1)}}, grouping="x")
    with pytest.raises(TypeError, match="sequence of AlignRule"):
        mmojax.share_gradients(align_rules=mmojax.AlignRule("x", "r"))
    with pytest.raises(TypeError, match="align rule 0"):
        mmojax.sync_parameters(optax.identity(), align_rules=[("x", "r")])
    with pytest.raises(ValueError, match="invalid regex"):
        mmojax.AlignRule("(", "r")
    with pytest.raises(TypeError, match="role"):
        mmojax.AlignRule("x", "")
    with pytest.raises(ValueError, match="must differ"):
        mmojax.AlignRule("x", ("a", "a"))
    with pytest.raises(ValueError, match="cannot be combined"):
        mmojax.AlignRule("x", ("a", "b"), rows=(0, 1))
    with pytest.raises(TypeError, match="rows"):
        mmojax.AlignRule("x", "a", rows=(0.5, 1))
    params = {"gpt2": {"h": {"0": {"attn": {"c_attn": {"kernel": jnp.zeros((7, 2))}}}}}}
    with pytest.raises(ValueError, match=r"gpt2/h/0/attn/c_attn/kernel \(7, 2\) into 3 parts"):
        mmojax.align_parameters(params)
