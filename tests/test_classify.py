"""Parameter classification and the sharing plan on Hugging Face Flax layouts."""

import jax
import jax.numpy as jnp
import pytest
from transformers import (
    BertConfig,
    FlaxBertModel,
    FlaxGPT2Model,
    FlaxRobertaModel,
    GPT2Config,
    RobertaConfig,
)

import mmojax
from mmojax.optim import _tree


@pytest.fixture(scope="module")
def hf_params():
    """Abstract HF Flax parameter trees (real names and shapes, no weights computed)."""
    bert = FlaxBertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
        ),
        _do_init=False,
    )
    roberta = FlaxRobertaModel(
        RobertaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
        ),
        _do_init=False,
    )
    gpt2 = FlaxGPT2Model(
        GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64), _do_init=False
    )
    shapes = {}
    for name, model in (("bert", bert), ("roberta", roberta), ("gpt2", gpt2)):
        shapes[name] = jax.eval_shape(
            lambda m=model: m.init_weights(jax.random.key(0), m.input_shape)
        )
    return shapes


def types_by_path(params):
    labels = mmojax.classify_parameters(params)
    return {
        f"{_tree.key_name(path[0])}/{_tree.path_string(path[1:])}": key
        for path, key in jax.tree_util.tree_flatten_with_path(labels)[0]
    }


EXPECTED = {
    "bert/encoder/layer/0/attention/self/query/kernel": ("attention", (32, 32)),
    "bert/encoder/layer/0/attention/self/key/bias": ("attention", (32,)),
    "bert/encoder/layer/1/attention/self/value/kernel": ("attention", (32, 32)),
    "bert/encoder/layer/0/attention/output/dense/kernel": ("attention", (32, 32)),
    "bert/encoder/layer/0/attention/output/LayerNorm/scale": ("norm", (32,)),
    "bert/encoder/layer/0/intermediate/dense/kernel": ("ffn", (32, 64)),
    "bert/encoder/layer/0/output/dense/kernel": ("ffn", (64, 32)),
    "bert/encoder/layer/0/output/dense/bias": ("ffn", (32,)),
    "bert/encoder/layer/0/output/LayerNorm/bias": ("norm", (32,)),
    "bert/embeddings/word_embeddings/embedding": ("embedding", (100, 32)),
    "bert/embeddings/position_embeddings/embedding": ("embedding", (512, 32)),
    "bert/embeddings/token_type_embeddings/embedding": ("embedding", (2, 32)),
    "bert/embeddings/LayerNorm/scale": ("norm", (32,)),
    "bert/pooler/dense/kernel": ("head", (32, 32)),
    "roberta/encoder/layer/1/attention/self/query/kernel": ("attention", (32, 32)),
    "roberta/encoder/layer/1/output/dense/kernel": ("ffn", (64, 32)),
    "roberta/embeddings/word_embeddings/embedding": ("embedding", (100, 32)),
    "gpt2/h/0/attn/c_attn/kernel": ("attention", (96, 32)),
    "gpt2/h/0/attn/c_attn/bias": ("attention", (96,)),
    "gpt2/h/1/attn/c_proj/kernel": ("attention", (32, 32)),
    "gpt2/h/0/mlp/c_fc/kernel": ("ffn", (128, 32)),
    "gpt2/h/0/mlp/c_proj/kernel": ("ffn", (32, 128)),
    "gpt2/h/0/ln_1/scale": ("norm", (32,)),
    "gpt2/h/0/ln_2/bias": ("norm", (32,)),
    "gpt2/ln_f/scale": ("norm", (32,)),
    "gpt2/wte/embedding": ("embedding", (100, 32)),
    "gpt2/wpe/embedding": ("embedding", (64, 32)),
}


def test_hf_layouts_classified(hf_params):
    got = types_by_path(hf_params)
    for path, (kind, shape) in EXPECTED.items():
        assert got[path] == mmojax.ParamKey(kind, shape), path
    # Nothing in these layouts falls through to "other".
    assert not [p for p, k in got.items() if k.type == "other"]


def test_generic_and_head_names():
    z = jnp.zeros((2, 2))
    params = {
        "m": {
            "layers_0": {
                "self_attn": {"q_proj": {"kernel": z}},
                "mlp": {"up_proj": {"kernel": z}},
                "input_layernorm": {"weight": jnp.zeros(2)},
            },
            "embed_tokens": {"embedding": z},
            "lm_head": {"kernel": z},
            "classifier": {"dense": {"kernel": z}},
            "score": {"kernel": z},
            "misc": z,
        }
    }
    got = {p.split("/", 1)[1]: k.type for p, k in types_by_path(params).items()}
    assert got == {
        "classifier/dense/kernel": "head",
        "embed_tokens/embedding": "embedding",
        "layers_0/input_layernorm/weight": "norm",
        "layers_0/mlp/up_proj/kernel": "ffn",
        "layers_0/self_attn/q_proj/kernel": "attention",
        "lm_head/kernel": "head",
        "misc": "other",
        "score/kernel": "head",
    }


def test_kernel_and_bias_get_different_keys(hf_params):
    got = types_by_path(hf_params)
    assert (
        got["bert/encoder/layer/0/attention/self/query/kernel"]
        != got["bert/encoder/layer/0/attention/self/query/bias"]
    )


def test_custom_rules_first_match_wins():
    params = {"m": {"block": {"proj": jnp.zeros(3)}, "other": jnp.zeros(3)}}
    labels = mmojax.classify_parameters(params, rules=[(r"proj", "ffn"), (r"block", "attention")])
    assert labels["m"]["block"]["proj"] == mmojax.ParamKey("ffn", (3,))
    assert labels["m"]["other"] == mmojax.ParamKey("other", (3,))


def test_bad_rules():
    params = {"m": {"w": jnp.zeros(1)}}
    with pytest.raises(ValueError, match="invalid regex"):
        mmojax.classify_parameters(params, rules=[("(", "ffn")])
    with pytest.raises(TypeError, match="rule 0"):
        mmojax.classify_parameters(params, rules=[("x",)])


def test_sharing_plan_on_hf_models(hf_params):
    plan = mmojax.sharing_plan(hf_params)
    keys = {str(g.key): g for g in plan.shared_groups}
    # BERT/RoBERTa Q, K, V, O kernels of both layers and GPT-2's c_proj pool together.
    attn = keys["attention(32, 32)"]
    assert len(attn.members) == 2 * 4 * 2 + 2
    assert set(attn.models) == {"bert", "roberta", "gpt2"}
    # GPT-2's fused c_attn (96, 32) meets nobody.
    assert "attention(96, 32)" not in keys
    coverage = plan.coverage()
    assert set(coverage) == {"bert", "gpt2", "roberta"}
    assert all(0 < c <= 1 for c in coverage.values())
    text = str(plan)
    assert "attention(32, 32)" in text and "gpt2" in text and "shared" in text
    assert "gpt2/h/0/attn/c_proj/kernel" in plan.describe()
