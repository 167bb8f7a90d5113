"""Tests for mmojax.models: HF-backed BERT / GPT-2 / RoBERTa models and heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmojax.models as mm

VOCAB = 100
LENGTH = 16
BATCH = 3
NUM_LABELS = 5


def _config(arch, **overrides):
    values = {
        "arch": arch,
        "hidden": 32,
        "layers": 1,
        "heads": 2,
        "intermediate": 64,
        "vocab_size": VOCAB,
        "max_length": LENGTH,
        "dropout": 0.1,
    }
    values.update(overrides)
    return mm.ModelConfig(**values)


@pytest.fixture(scope="module")
def models():
    """Every (arch, task) combination with a tiny configuration."""
    return {
        (arch, task): mm.build_model(_config(arch), task, num_labels=NUM_LABELS, seed=1)
        for arch in mm.ARCHS
        for task in mm.TASKS
    }


def _batch(seed=0, lengths=(LENGTH, 10, 4)):
    """Right-padded batch with pad id 0 after each sequence's length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(len(lengths), LENGTH)).astype(np.int32)
    mask = (np.arange(LENGTH)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    return {"input_ids": ids * mask, "attention_mask": mask}


def _names(model):
    return set(mm.flatten_params(model.params))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("task", mm.TASKS)
@pytest.mark.parametrize("arch", mm.ARCHS)
def test_output_shapes(models, arch, task):
    model = models[(arch, task)]
    out = model.apply_fn(model.params, _batch(), train=False)
    if task == "qa":
        start, end = out
        assert start.shape == end.shape == (BATCH, LENGTH)
        assert model.num_labels == 2
        outputs = [start, end]
    elif task == "token_classification":
        assert out.shape == (BATCH, LENGTH, NUM_LABELS)
        outputs = [out]
    else:
        assert out.shape == (BATCH, NUM_LABELS)
        outputs = [out]
    for logits in outputs:
        assert logits.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(logits)))
    assert model.name == arch and model.task == task and model.config.arch == arch


def test_full_length_input_without_padding(models):
    """max_length tokens fit the position tables (RoBERTa offsets by pad id + 1)."""
    batch = {
        "input_ids": np.arange(1, LENGTH + 1, dtype=np.int32)[None, :].repeat(BATCH, 0),
        "attention_mask": np.ones((BATCH, LENGTH), np.int32),
    }
    for arch in mm.ARCHS:
        model = models[(arch, "token_classification")]
        out = model.apply_fn(model.params, batch, train=False)
        assert np.all(np.isfinite(np.asarray(out))), arch


# ----------------------------------------------------------------------- param names

BERT_NAMES = {
    "bert/embeddings/word_embeddings/embedding",
    "bert/embeddings/position_embeddings/embedding",
    "bert/embeddings/token_type_embeddings/embedding",
    "bert/encoder/layer/0/attention/self/query/kernel",
    "bert/encoder/layer/0/attention/self/key/kernel",
    "bert/encoder/layer/0/attention/output/dense/kernel",
    "bert/encoder/layer/0/intermediate/dense/kernel",
    "bert/encoder/layer/0/output/LayerNorm/scale",
}
GPT2_NAMES = {
    "transformer/wte/embedding",
    "transformer/wpe/embedding",
    "transformer/h/0/attn/c_attn/kernel",
    "transformer/h/0/attn/c_proj/kernel",
    "transformer/h/0/mlp/c_fc/kernel",
    "transformer/h/0/mlp/c_proj/kernel",
    "transformer/h/0/ln_1/scale",
    "transformer/ln_f/scale",
}
ROBERTA_NAMES = {name.replace("bert/", "roberta/", 1) for name in BERT_NAMES}
HEAD_NAMES = {
    ("bert", "classification"): {"bert/pooler/dense/kernel", "classifier/kernel"},
    ("bert", "token_classification"): {"classifier/kernel", "classifier/bias"},
    ("bert", "qa"): {"qa_outputs/kernel", "qa_outputs/bias"},
    ("roberta", "classification"): {"classifier/dense/kernel", "classifier/out_proj/kernel"},
    ("roberta", "token_classification"): {"classifier/kernel"},
    ("roberta", "qa"): {"qa_outputs/kernel"},
    ("gpt2", "classification"): {"score/kernel"},
    ("gpt2", "token_classification"): {"classifier/kernel", "classifier/bias"},
    ("gpt2", "qa"): {"qa_outputs/kernel", "qa_outputs/bias"},
}
BACKBONE_NAMES = {"bert": BERT_NAMES, "gpt2": GPT2_NAMES, "roberta": ROBERTA_NAMES}


@pytest.mark.parametrize("task", mm.TASKS)
@pytest.mark.parametrize("arch", mm.ARCHS)
def test_parameter_names_follow_hf(models, arch, task):
    model = models[(arch, task)]
    names = _names(model)
    missing = (BACKBONE_NAMES[arch] | HEAD_NAMES[(arch, task)]) - names
    assert not missing
    leaves = jax.tree_util.tree_leaves(model.params)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert isinstance(model.params, dict)


def test_parameter_shapes(models):
    cfg = _config("gpt2")
    flat = mm.flatten_params(models[("gpt2", "qa")].params)
    assert flat["transformer/wpe/embedding"].shape == (LENGTH, cfg.hidden)
    # HF's FlaxConv1D stores kernels (out, in); mmojax holds them (in, out), like nn.Dense.
    assert flat["transformer/h/0/mlp/c_fc/kernel"].shape == (cfg.hidden, cfg.intermediate)
    assert flat["transformer/h/0/attn/c_attn/kernel"].shape == (cfg.hidden, 3 * cfg.hidden)
    assert flat["qa_outputs/kernel"].shape == (cfg.hidden, 2)
    flat = mm.flatten_params(models[("roberta", "qa")].params)
    assert flat["roberta/embeddings/position_embeddings/embedding"].shape == (LENGTH + 2, 32)
    assert flat["roberta/embeddings/token_type_embeddings/embedding"].shape == (1, 32)
    flat = mm.flatten_params(models[("bert", "qa")].params)
    assert flat["bert/encoder/layer/0/intermediate/dense/kernel"].shape == (32, 64)


def test_gpt2_held_in_out_computes_what_the_hf_module_computes(models):
    # apply_fn swaps the held (in, out) kernels back to HF's (out, in) for the module.
    model = models[("gpt2", "classification")]
    batch = {"input_ids": np.array([[3, 4, 5, 6], [7, 8, 9, 0]]), "attention_mask": np.ones((2, 4))}
    batch["attention_mask"][1, 3] = 0
    hf = mm.swap_conv1d_layout(model.params)
    want = model.module.apply({"params": hf}, batch["input_ids"], batch["attention_mask"])
    got = model.apply_fn(model.params, batch, train=False)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    fresh = mm.flatten_params(model.init(jax.random.PRNGKey(model.seed)))
    assert fresh["transformer/h/0/attn/c_attn/kernel"].shape == (32, 96)


def test_conv1d_layout_helpers(models):
    gpt2 = models[("gpt2", "token_classification")].params
    paths = mm.conv1d_kernel_paths(gpt2)
    assert sorted(p.split("/")[-2] for p in paths) == ["c_attn", "c_fc", "c_proj", "c_proj"]
    swapped = mm.flatten_params(mm.swap_conv1d_layout(gpt2))
    flat = mm.flatten_params(gpt2)
    np.testing.assert_array_equal(
        swapped["transformer/h/0/mlp/c_fc/kernel"], flat["transformer/h/0/mlp/c_fc/kernel"].T
    )
    assert swapped["classifier/kernel"] is flat["classifier/kernel"]
    back = mm.flatten_params(mm.swap_conv1d_layout(mm.swap_conv1d_layout(gpt2)))
    assert all(np.array_equal(back[k], flat[k]) for k in flat)
    assert mm.conv1d_kernel_paths(models[("bert", "qa")].params) == []


def test_layers_and_config_reach_hf_modules():
    for arch in mm.ARCHS:
        model = mm.build_model(_config(arch, layers=2, intermediate=48), "qa")
        names = "\n".join(_names(model))
        assert "/1/" in names and "/2/" not in names, arch
    gpt2 = mm.hf_config(_config("gpt2", intermediate=48), "classification", 3)
    assert gpt2.n_inner == 48 and gpt2.num_labels == 3 and gpt2.n_positions == LENGTH
    roberta = mm.hf_config(_config("roberta"), "qa", 7)
    assert roberta.num_labels == 2 and roberta.pad_token_id == 0
    assert roberta.max_position_embeddings == LENGTH + 2


# ----------------------------------------------------------------------- GPT-2 pooling


def test_last_token_index():
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mm.last_token_index(mask), [3, 1, 3, 0])


def test_gpt2_classification_pools_last_real_token(models):
    model = models[("gpt2", "classification")]
    batch = _batch(lengths=(LENGTH, 10, 4))
    base = np.asarray(model.apply_fn(model.params, batch, train=False))

    in_padding = {k: v.copy() for k, v in batch.items()}
    in_padding["input_ids"][1, 10:] = 7
    in_padding["input_ids"][2, 4:] = 9
    np.testing.assert_allclose(
        model.apply_fn(model.params, in_padding, train=False), base, rtol=1e-6, atol=1e-6
    )

    last_real = {k: v.copy() for k, v in batch.items()}
    for row, last in enumerate((LENGTH - 1, 9, 3)):
        last_real["input_ids"][row, last] = (batch["input_ids"][row, last] % (VOCAB - 1)) + 1
    changed = np.asarray(model.apply_fn(model.params, last_real, train=False))
    assert np.all(np.abs(changed - base).max(axis=-1) > 1e-6)


def test_gpt2_classification_left_and_right_padding_agree():
    """Pooling picks the last real token, and positions count real tokens only."""
    model = mm.build_model(_config("gpt2", dropout=0.0), "classification", 4)
    lengths = (6, 11, LENGTH)
    right = _batch(lengths=lengths)
    left = {key: np.zeros_like(value) for key, value in right.items()}
    for row, n in enumerate(lengths):
        for key in right:
            left[key][row] = np.roll(right[key][row], LENGTH - n)
    out_right = model.apply_fn(model.params, right, train=False)
    out_left = model.apply_fn(model.params, left, train=False)
    np.testing.assert_allclose(out_left, out_right, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("arch", mm.ARCHS)
def test_eval_deterministic_and_train_dropout(models, arch):
    model = models[(arch, "token_classification")]
    batch = _batch()
    eval_a = np.asarray(model.apply_fn(model.params, batch, train=False))
    eval_b = np.asarray(model.apply_fn(model.params, batch, train=False, rng=jax.random.key(3)))
    np.testing.assert_array_equal(eval_a, eval_b)

    train_1 = np.asarray(model.apply_fn(model.params, batch, train=True, rng=jax.random.key(1)))
    train_1b = np.asarray(model.apply_fn(model.params, batch, train=True, rng=jax.random.key(1)))
    train_2 = np.asarray(model.apply_fn(model.params, batch, train=True, rng=jax.random.key(2)))
    np.testing.assert_array_equal(train_1, train_1b)
    assert not np.allclose(train_1, train_2)
    assert not np.allclose(train_1, eval_a)


def test_train_requires_rng_unless_no_dropout(models):
    model = models[("bert", "classification")]
    with pytest.raises(ValueError, match="rng"):
        model.apply_fn(model.params, _batch(), train=True)
    no_dropout = mm.build_model(_config("gpt2", dropout=0.0), "classification")
    batch = _batch()
    np.testing.assert_allclose(
        no_dropout.apply_fn(no_dropout.params, batch, train=True),
        no_dropout.apply_fn(no_dropout.params, batch, train=False),
        rtol=1e-6,
    )


def test_token_type_ids(models):
    batch = _batch()
    typed = dict(batch, token_type_ids=np.ones_like(batch["input_ids"]))
    bert = models[("bert", "classification")]
    assert not np.allclose(
        bert.apply_fn(bert.params, batch, train=False),
        bert.apply_fn(bert.params, typed, train=False),
    )
    roberta = models[("roberta", "classification")]  # single token type: ignored
    np.testing.assert_array_equal(
        roberta.apply_fn(roberta.params, batch, train=False),
        roberta.apply_fn(roberta.params, typed, train=False),
    )


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"arch": "t5"}, ValueError, "arch"),
        ({"hidden": 30, "heads": 4}, ValueError, "divisible"),
        ({"layers": 0}, ValueError, "layers"),
        ({"heads": 2.0}, TypeError, "heads"),
        ({"intermediate": True}, TypeError, "intermediate"),
        ({"vocab_size": -1}, ValueError, "vocab_size"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"dropout": -0.1}, ValueError, "dropout"),
        ({"dropout": "0.1"}, TypeError, "dropout"),
        ({"pad_token_id": VOCAB}, ValueError, "pad_token_id"),
    ],
)
def test_config_validation(changes, error, field):
    values = {"arch": "bert", **changes}
    arch = values.pop("arch")
    with pytest.raises(error, match=field):
        _config(arch, **values)


def test_presets():
    small = {arch: mm.preset("small", arch, vocab_size=8000, max_length=128) for arch in mm.ARCHS}
    assert [small[a].layers for a in ("bert", "gpt2", "roberta")] == [2, 2, 3]
    assert all(c.hidden == 128 and c.heads == 2 and c.vocab_size == 8000 for c in small.values())
    tiny = mm.preset("tiny", "gpt2", vocab_size=50, max_length=8)
    assert (tiny.hidden, tiny.layers, tiny.heads, tiny.intermediate) == (64, 2, 2, 256)
    base = mm.preset("base", "bert", vocab_size=30522, max_length=512, dropout=0.0)
    assert (base.hidden, base.layers, base.heads, base.intermediate) == (768, 12, 12, 3072)
    assert base.dropout == 0.0 and base.head_dim == 64
    assert mm.preset("small", "roberta", vocab_size=10, max_length=8, layers=5).layers == 5
    with pytest.raises(ValueError, match="huge"):
        mm.preset("huge", "bert", vocab_size=10, max_length=8)
    with pytest.raises(ValueError, match="hiden"):
        mm.preset("tiny", "bert", vocab_size=10, max_length=8, hiden=3)
    with pytest.raises(ValueError, match="heads"):
        mm.preset("tiny", "bert", vocab_size=10, max_length=8, heads=3)


def test_build_model_validation():
    with pytest.raises(ValueError, match="task"):
        mm.build_model(_config("bert"), "ner")
    with pytest.raises(ValueError, match="num_labels"):
        mm.build_model(_config("bert"), "classification", num_labels=0)


# ------------------------------------------------------------------------------ losses


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_classification_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 1, 0])
    nll = -_np_log_softmax(logits)[np.arange(6), labels]
    correct = logits.argmax(-1) == labels
    loss, metrics = mm.classification_loss(logits, labels)
    np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], correct.mean(), rtol=1e-6)
    mask = np.array([1, 1, 0, 1, 0, 1], np.float32)
    loss, metrics = mm.classification_loss(logits, labels, mask)
    np.testing.assert_allclose(loss, nll[mask > 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], correct[mask > 0].mean(), rtol=1e-6)
    # Hand-checked case: uniform logits -> log(num_classes).
    loss, _ = mm.classification_loss(np.zeros((2, 3)), np.array([0, 2]))
    np.testing.assert_allclose(loss, np.log(3.0), rtol=1e-6)


def test_token_classification_loss_ignores_minus_100():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 3)).astype(np.float32)
    labels = np.array([[0, 1, -100, 2, -100], [-100, 2, 2, 0, -100]])
    valid = labels != -100
    log_probs = _np_log_softmax(logits)
    nll = -np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    loss, metrics = mm.token_classification_loss(logits, labels)
    np.testing.assert_allclose(loss, nll[valid].mean(), rtol=1e-5)
    acc = (logits.argmax(-1) == labels)[valid].mean()
    np.testing.assert_allclose(metrics["accuracy"], acc, rtol=1e-6)
    assert float(metrics["num_tokens"]) == valid.sum()
    # Changing logits at ignored positions has no effect; all-ignored gives 0.
    logits2 = logits.copy()
    logits2[~valid] = 100.0
    np.testing.assert_allclose(mm.token_classification_loss(logits2, labels)[0], loss, rtol=1e-6)
    empty_loss, _ = mm.token_classification_loss(logits, np.full((2, 5), -100))
    assert float(empty_loss) == 0.0


def test_qa_loss_matches_numpy():
    rng = np.random.default_rng(2)
    start = rng.normal(size=(4, 7)).astype(np.float32)
    end = rng.normal(size=(4, 7)).astype(np.float32)
    starts = np.array([0, 3, 6, 2])
    ends = np.array([1, 3, 6, -100])  # last end is ignored
    s_nll = -_np_log_softmax(start)[np.arange(4), starts]
    e_nll = -_np_log_softmax(end)[np.arange(4), np.maximum(ends, 0)]
    loss, metrics = mm.qa_loss(start, end, starts, ends)
    np.testing.assert_allclose(loss, 0.5 * (s_nll.mean() + e_nll[:3].mean()), rtol=1e-5)
    s_ok = start.argmax(-1) == starts
    e_ok = end.argmax(-1) == ends
    np.testing.assert_allclose(metrics["start_accuracy"], s_ok.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["end_accuracy"], e_ok[:3].mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["exact_match"], (s_ok & e_ok)[:3].mean(), rtol=1e-6)


# --------------------------------------------------------------------- jit and grads


def test_joint_jit_and_finite_gradients():
    built = mm.build_models(
        "bert,gpt2,roberta",
        "tiny",
        "classification",
        vocab_size=VOCAB,
        max_length=LENGTH,
        num_labels=3,
        hidden=32,
        layers=1,
        intermediate=64,
    )
    batch = _batch()
    labels = jnp.array([0, 1, 2])
    params = {name: model.params for name, model in built.items()}

    @jax.jit
    def step(params, rng):
        def total(params):
            losses = {}
            for i, (name, model) in enumerate(built.items()):
                logits = model.apply_fn(
                    params[name], batch, train=True, rng=jax.random.fold_in(rng, i)
                )
                losses[name] = mm.classification_loss(logits, labels)[0]
            return sum(losses.values()), losses

        return jax.value_and_grad(total, has_aux=True)(params)

    (loss, per_model), grads = step(params, jax.random.key(0))
    assert np.isfinite(float(loss)) and set(per_model) == set(built)
    for name, tree in grads.items():
        leaves = jax.tree_util.tree_leaves(tree)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves), name
        assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0, name
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)


def test_jit_qa_matches_eager(models):
    model = models[("roberta", "qa")]
    batch = _batch()
    fn = jax.jit(lambda p, b: model.apply_fn(p, b, train=False))
    jitted = fn(model.params, batch)
    eager = model.apply_fn(model.params, batch, train=False)
    for a, b in zip(jitted, eager):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ build_models / table


def test_build_models_seeds_and_errors():
    kwargs = {"vocab_size": VOCAB, "max_length": LENGTH, "hidden": 32, "layers": 1}
    kwargs["intermediate"] = 64
    both = mm.build_models("bert, roberta", "tiny", **kwargs)
    assert list(both) == ["bert", "roberta"]
    assert both["bert"].seed != both["roberta"].seed
    alone = mm.build_models(["roberta"], "tiny", **kwargs)
    assert alone["roberta"].seed == both["roberta"].seed  # order/set independent
    np.testing.assert_array_equal(
        mm.flatten_params(alone["roberta"].params)["classifier/out_proj/kernel"],
        mm.flatten_params(both["roberta"].params)["classifier/out_proj/kernel"],
    )
    other = mm.build_models("roberta", "tiny", seed=1, **kwargs)
    assert other["roberta"].seed != alone["roberta"].seed
    fresh = alone["roberta"].init(jax.random.key(123))
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(
        alone["roberta"].init_params
    )
    with pytest.raises(ValueError, match="valid names.*bert.*gpt2.*roberta"):
        mm.build_models("bert,xlnet", **kwargs)
    with pytest.raises(ValueError, match="more than once"):
        mm.build_models("bert,bert", **kwargs)
    with pytest.raises(ValueError, match="no model names"):
        mm.build_models(" , ", **kwargs)


def test_parameter_count_and_table(models):
    chosen = {f"{arch}-{task}": models[(arch, task)] for arch, task in models}
    for model in chosen.values():
        manual = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(model.params))
        assert mm.parameter_count(model.params) == manual
        split = mm.parameter_breakdown(model.params)
        assert split["embedding"] + split["rest"] == split["total"] == manual
        assert split["embedding"] >= VOCAB * 32
    table = mm.parameter_table(list(models.values()))
    lines = table.splitlines()
    assert "params(M)" in lines[0] and lines[-1].startswith("total")
    assert len(lines) == len(models) + 4
    for arch in mm.ARCHS:
        for task in mm.TASKS:
            assert any(line.split()[:3] == [arch, arch, task] for line in lines)
    assert mm.parameter_count({"a": np.zeros((2, 3)), "b": [np.zeros(4)]}) == 10


def test_public_api():
    assert len(set(mm.__all__)) == len(mm.__all__)
    assert all(hasattr(mm, name) for name in mm.__all__)
