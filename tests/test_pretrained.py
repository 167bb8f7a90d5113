"""Tests for loading local Hugging Face checkpoints and exporting task models.

Every checkpoint is made here (``save_pretrained`` of tiny random configs, or a
safetensors file with PyTorch names written like a real ``model.safetensors``);
nothing reads ../shared or a hub.
"""

import doctest
import importlib
import json
import logging
import sys

import flax.serialization
import numpy as np
import pytest
import transformers
from flax.traverse_util import flatten_dict
from safetensors.numpy import load_file, save_file

import mmojax.models as mm

VOCAB = 100
LENGTH = 12
GPT2_HEAD = {"classification": "score", "token_classification": "classifier", "qa": "qa_outputs"}


def _hf_config(arch):
    """Tiny HF configs with non-default fields that the loaded model must keep."""
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=VOCAB,
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=32,
            bos_token_id=VOCAB - 1,
            eos_token_id=VOCAB - 1,
            layer_norm_epsilon=1e-6,
        )
    common = {
        "vocab_size": VOCAB,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "hidden_act": "gelu_new",
    }
    if arch == "bert":
        return transformers.BertConfig(
            max_position_embeddings=32, type_vocab_size=3, layer_norm_eps=1e-7, **common
        )
    return transformers.RobertaConfig(
        max_position_embeddings=34,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-6,
        **common,
    )


_BASE = {"bert": "FlaxBertModel", "gpt2": "FlaxGPT2Model", "roberta": "FlaxRobertaModel"}


def _base_checkpoint(arch, directory, seed=0, **save):
    """Saves a random base model (no head) and returns its Flax params (flat)."""
    model = getattr(transformers, _BASE[arch])(_hf_config(arch), seed=seed)
    model.save_pretrained(directory, **save)
    return flatten_dict(model.params)


def _pytorch_name(path):
    """The PyTorch state-dict name and transpose flag of a Flax parameter path."""
    *module, leaf = path
    if leaf == "kernel":
        return ".".join([*module, "weight"]), True
    if leaf in ("scale", "embedding"):
        return ".".join([*module, "weight"]), False
    return ".".join(path), False


def _pytorch_safetensors(arch, directory, seed=0):
    """A ``model.safetensors`` as a PyTorch LM checkpoint writes it (MiniLM-like).

    Prefixed names (``bert.``/``transformer.``/``roberta.``), an LM head entry that
    the task model does not use, and the buffers transformers ignores.
    """
    params = _base_checkpoint(arch, directory, seed)
    (directory / "flax_model.msgpack").unlink()
    prefix = mm.BACKBONE_PREFIX[arch]
    tensors = {}
    for path, value in params.items():
        name, transpose = _pytorch_name(path)
        tensors[f"{prefix}.{name}"] = np.ascontiguousarray(
            np.asarray(value).T if transpose else value
        )
    if arch == "gpt2":
        tensors["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
        tensors["lm_head.weight"] = np.zeros((VOCAB, 16), np.float32)
    else:
        tensors[f"{prefix}.embeddings.position_ids"] = np.arange(32)[None].astype(np.int64)
        tensors["lm_head.bias" if arch == "roberta" else "cls.predictions.bias"] = np.zeros(
            VOCAB, np.float32
        )
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    return params


def _batch(arch, pad_id, lengths=(LENGTH, 7, 3), seed=0):
    """Right-padded batch; real tokens avoid the special ids 0-2 and the pad id."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB - 1, size=(len(lengths), LENGTH)).astype(np.int32)
    mask = (np.arange(LENGTH)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    return {"input_ids": np.where(mask > 0, ids, pad_id).astype(np.int32), "attention_mask": mask}


def _assert_backbone_equal(model, params, prefix):
    # ``params``: Hugging Face's layout; mmojax holds GPT-2's Conv1D kernels (in, out).
    loaded = flatten_dict(mm.swap_conv1d_layout(model.params)[prefix])
    for path, value in params.items():
        if path in loaded:
            assert loaded[path].dtype == np.float32
            np.testing.assert_array_equal(np.asarray(loaded[path]), np.asarray(value))


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("arch", mm.ARCHS)
def test_load_flax_checkpoint_backbone_exact_head_new(tmp_path, arch, caplog):
    params = _base_checkpoint(arch, tmp_path)
    with caplog.at_level(logging.INFO, logger="mmojax"):
        model, report = mm.load_pretrained(
            tmp_path, arch=arch, task="classification", num_labels=3, seed=4
        )
    prefix = mm.BACKBONE_PREFIX[arch]
    _assert_backbone_equal(model, params, prefix)
    head = "score" if arch == "gpt2" else "classifier"
    assert report.new and all(p.split("/")[0] == head for p in report.new)
    assert report.weights_file.endswith("flax_model.msgpack")
    assert len(report.loaded) + len(report.new) == len(flatten_dict(model.params))
    # RoBERTa's classification head does not use the pooler of the base checkpoint.
    assert report.unused == (
        ("pooler/dense/bias", "pooler/dense/kernel") if arch == "roberta" else ()
    )
    assert "new classification head" in caplog.text and head in caplog.text
    # The head is the one build_model would make for the same config and seed (up to
    # float32 rounding: the head is initialised under jit, build_model runs eagerly).
    fresh = mm.build_model(model.config, "classification", 3, seed=4)
    for path, value in flatten_dict(fresh.params[head]).items():
        got = np.asarray(flatten_dict(model.params[head])[path])
        np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-9)
    logits = model.apply_fn(model.params, _batch(arch, model.config.pad_token_id), train=False)
    assert logits.shape == (3, 3) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("arch", mm.ARCHS)
def test_load_pytorch_safetensors(tmp_path, arch):
    params = _pytorch_safetensors(arch, tmp_path)
    # The test's PyTorch naming is the one transformers reads: same params back.
    reference = getattr(transformers, _BASE[arch]).from_pretrained(tmp_path).params
    for path, value in flatten_dict(reference).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(params[path]))
    model, report = mm.load_pretrained(
        tmp_path, arch=arch, task="token_classification", num_labels=5
    )
    _assert_backbone_equal(model, params, mm.BACKBONE_PREFIX[arch])
    assert report.weights_file.endswith("model.safetensors")
    assert report.new == ("classifier/bias", "classifier/kernel")
    expected = {
        "gpt2": ["lm_head.weight"],
        "bert": ["cls.predictions.bias"],
        "roberta": ["lm_head.bias"],
    }[arch]
    if arch != "gpt2":  # token classification has no pooler
        expected += [f"{arch}.pooler.dense.bias", f"{arch}.pooler.dense.weight"]
    assert report.unused == tuple(sorted(expected))  # buffers are not parameters: not listed


def test_minilm_style_base_safetensors_without_prefix(tmp_path):
    """A base ``BertModel`` file (MiniLM's layout: no ``bert.`` prefix) loads whole."""
    params = _pytorch_safetensors("bert", tmp_path)
    tensors = {
        k.removeprefix("bert."): v for k, v in load_file(tmp_path / "model.safetensors").items()
    }
    del tensors["cls.predictions.bias"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model, report = mm.load_pretrained(tmp_path, arch="bert", task="classification", num_labels=2)
    _assert_backbone_equal(model, params, "bert")
    assert report.unused == () and report.new == ("classifier/bias", "classifier/kernel")


def test_sharded_safetensors(tmp_path):
    params = _pytorch_safetensors("gpt2", tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, tmp_path / file, metadata={"format": "pt"})
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model, report = mm.load_pretrained(tmp_path, arch="gpt2", task="qa")
    _assert_backbone_equal(model, params, "transformer")
    assert report.weights_file.endswith("model.safetensors.index.json")
    assert report.new == ("qa_outputs/bias", "qa_outputs/kernel")


def test_flax_safetensors_and_precedence(tmp_path):
    params = _base_checkpoint("bert", tmp_path / "a", safe_serialization=True)
    assert not (tmp_path / "a" / "flax_model.msgpack").exists()
    model, report = mm.load_pretrained(tmp_path / "a", arch="bert", task="qa")
    _assert_backbone_equal(model, params, "bert")
    assert report.num_labels == 2 and report.weights_file.endswith("model.safetensors")
    # flax_model.msgpack (other weights) wins over model.safetensors.
    other = _base_checkpoint("bert", tmp_path / "a", seed=1)
    model, report = mm.load_pretrained(tmp_path / "a", arch="bert", task="qa")
    assert report.weights_file.endswith("flax_model.msgpack")
    _assert_backbone_equal(model, other, "bert")


def test_checkpoint_config_fields_are_kept(tmp_path):
    _base_checkpoint("bert", tmp_path)
    model, _ = mm.load_pretrained(tmp_path, arch="bert", task="classification", num_labels=2)
    hf = model.module.config
    assert (hf.layer_norm_eps, hf.hidden_act, hf.type_vocab_size) == (1e-7, "gelu_new", 3)
    assert model.config.hf_config["layer_norm_eps"] == 1e-7
    assert (model.config.hidden, model.config.layers, model.config.max_length) == (16, 1, 32)
    assert model.config.dropout == 0.1 and hf.attention_probs_dropout_prob == 0.1
    model, _ = mm.load_pretrained(
        tmp_path, arch="bert", task="classification", num_labels=2, dropout=0.0
    )
    assert model.config.dropout == 0.0 and model.module.config.hidden_dropout_prob == 0.0
    batch = {**_batch("bert", 0), "token_type_ids": np.full((3, LENGTH), 2, np.int32)}
    assert np.all(np.isfinite(model.apply_fn(model.params, batch, train=False)))
    # Hashable and comparable like any ModelConfig; a field that contradicts hf_config fails.
    assert hash(model.config) == hash(model.config.replace())
    assert model.config == model.config.replace() != model.config.replace(hf_config=None)
    with pytest.raises(ValueError, match="hidden"):
        mm.build_model(model.config.replace(hidden=32, heads=2), "classification")


def test_special_pad_ids(tmp_path):
    """RoBERTa positions start after pad id 1; GPT-2 (no pad token) pads with eos."""
    _base_checkpoint("roberta", tmp_path / "r")
    model, _ = mm.load_pretrained(
        tmp_path / "r", arch="roberta", task="classification", num_labels=2
    )
    assert model.config.pad_token_id == 1 and model.config.max_length == 32
    _base_checkpoint("gpt2", tmp_path / "g")
    assert json.loads((tmp_path / "g" / "config.json").read_text()).get("pad_token_id") is None
    model, _ = mm.load_pretrained(tmp_path / "g", arch="gpt2", task="classification", num_labels=2)
    assert model.config.pad_token_id == VOCAB - 1  # eos


# --------------------------------------------------------------------------- errors


def test_wrong_model_type(tmp_path):
    _base_checkpoint("bert", tmp_path)
    with pytest.raises(ValueError, match="config.json is a 'bert' checkpoint.*not 'gpt2'"):
        mm.load_pretrained(tmp_path, arch="gpt2", task="classification", num_labels=2)


def test_settings_the_flax_models_lack_are_refused(tmp_path):
    config = _hf_config("bert")
    config.position_embedding_type = "relative_key"
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="config.json sets position_embedding_type='relative_key'"):
        mm.load_pretrained(tmp_path, arch="bert", task="qa")


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*local checkpoint directories"):
        mm.load_pretrained(tmp_path / "bert-base-uncased", arch="bert", task="qa")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file, not a directory"):
        mm.load_pretrained(tmp_path / "file", arch="bert", task="qa")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        mm.load_pretrained(tmp_path, arch="bert", task="qa")


def test_missing_weights(tmp_path):
    _hf_config("bert").save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no weights in {tmp_path}: looked for flax_model"):
        mm.load_pretrained(tmp_path, arch="bert", task="qa")


def test_pytorch_bin_without_torch(tmp_path, monkeypatch):
    _hf_config("bert").save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(ImportError, match="pytorch_model.bin .*needs the package `torch`"):
        mm.load_pretrained(tmp_path, arch="bert", task="qa")


def test_shape_mismatch_names_file_entry_and_shapes(tmp_path):
    _pytorch_safetensors("bert", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vocab_size"] = 120
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        mm.load_pretrained(tmp_path, arch="bert", task="qa")
    message = str(error.value)
    assert "model.safetensors" in message
    assert "bert.embeddings.word_embeddings.weight (100, 16)" in message
    assert "bert/embeddings/word_embeddings/embedding (120, 16)" in message


def test_task_and_labels_needed_for_a_base_checkpoint(tmp_path):
    _base_checkpoint("bert", tmp_path)
    with pytest.raises(ValueError, match="task is required"):
        mm.load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels is required"):
        mm.load_pretrained(tmp_path, task="classification")


# --------------------------------------------------------------------------- export


def _from_scratch(arch, task, seed=0):
    config = mm.ModelConfig(
        arch=arch,
        hidden=16,
        layers=1,
        heads=2,
        intermediate=32,
        vocab_size=VOCAB,
        max_length=LENGTH,
    )
    return mm.build_model(config, task, num_labels=3, seed=seed)


def _perturbed(model, seed=1):
    """Parameters that differ from the initial ones (as after training)."""
    rng = np.random.default_rng(seed)
    flat = flatten_dict(model.params)
    return flax.traverse_util.unflatten_dict(
        {
            k: np.asarray(v) + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
            for k, v in flat.items()
        }
    )


def _labels(model):
    return None if model.task == "qa" else ["neg", "mid", "pos"]


def _check_roundtrip(model, params, directory):
    """load_pretrained(export) restores every parameter, the head included."""
    loaded, report = mm.load_pretrained(directory, name="again")
    assert report.new == () and report.unused == ()
    assert (report.arch, report.task, report.num_labels) == (
        model.config.arch,
        model.task,
        model.num_labels,
    )
    assert report.label_names == (None if model.task == "qa" else ("neg", "mid", "pos"))
    expected, got = flatten_dict(params), flatten_dict(loaded.params)
    assert expected.keys() == got.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(np.asarray(got[path]), value)


@pytest.mark.parametrize("task", mm.TASKS)
@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_export_transformers_loads_identical_logits(tmp_path, arch, task):
    model = _from_scratch(arch, task)
    params = _perturbed(model)
    mm.export_model(model, params, tmp_path, label_names=_labels(model))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [mm.architecture_name(arch, task)]
    if task != "qa":
        assert config["id2label"] == {"0": "neg", "1": "mid", "2": "pos"}
    hf_class = getattr(transformers, "Flax" + mm.architecture_name(arch, task))
    hf_model, hf_params = hf_class.from_pretrained(tmp_path, _do_init=False)
    batch = _batch(arch, model.config.pad_token_id)
    theirs = hf_model(**batch, params=hf_params, return_dict=False)
    ours = model.apply_fn(params, batch, train=False)
    ours = ours if task == "qa" else (ours,)
    for a, b in zip(ours, theirs[: len(ours)], strict=True):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-5
    _check_roundtrip(model, params, tmp_path)


def _gpt2_logits(directory, batch, task):
    """Logits from FlaxGPT2Model and the exported head, as export_model documents."""
    backbone, backbone_params = transformers.FlaxGPT2Model.from_pretrained(
        directory, _do_init=False
    )
    mask = batch["attention_mask"]
    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    hidden = np.asarray(
        backbone(batch["input_ids"], mask, positions, params=backbone_params).last_hidden_state
    )
    head = flax.serialization.msgpack_restore((directory / "flax_model.msgpack").read_bytes())
    if task == "classification":
        last = np.max(np.where(mask > 0, np.arange(mask.shape[1]), 0), -1)
        return (hidden[np.arange(len(mask)), last] @ head["score"]["kernel"],)
    name = GPT2_HEAD[task]
    out = hidden @ head[name]["kernel"] + head[name]["bias"]
    return (out,) if task == "token_classification" else (out[..., 0], out[..., 1])


@pytest.mark.parametrize("task", mm.TASKS)
def test_export_gpt2_backbone_and_pytorch_named_head(tmp_path, task):
    model = _from_scratch("gpt2", task)
    params = _perturbed(model)
    mm.export_model(model, params, tmp_path, label_names=_labels(model))
    config = json.loads((tmp_path / "config.json").read_text())
    pytorch_class = {
        "classification": "GPT2ForSequenceClassification",
        "token_classification": "GPT2ForTokenClassification",
        "qa": "GPT2ForQuestionAnswering",
    }[task]
    assert config["architectures"] == [pytorch_class] == [mm.architecture_name("gpt2", task)]
    backbone = transformers.FlaxGPT2Model.from_pretrained(tmp_path, _do_init=False)[1]
    hf_layout = flatten_dict(mm.swap_conv1d_layout(params)["transformer"])  # (out, in) kernels
    for path, value in flatten_dict(backbone).items():
        np.testing.assert_array_equal(np.asarray(value), hf_layout[path])
    batch = _batch("gpt2", model.config.pad_token_id)
    ours = model.apply_fn(params, batch, train=False)
    ours = ours if task == "qa" else (ours,)
    for a, b in zip(ours, _gpt2_logits(tmp_path, batch, task), strict=True):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-5
    _check_roundtrip(model, params, tmp_path)


@pytest.mark.parametrize("arch", mm.ARCHS)
def test_export_a_loaded_checkpoint(tmp_path, arch):
    """Checkpoint -> load -> export -> transformers: pad ids (RoBERTa 1, GPT-2 eos) kept."""
    _base_checkpoint(arch, tmp_path / "in")
    model, _ = mm.load_pretrained(tmp_path / "in", arch=arch, task="classification", num_labels=3)
    params = _perturbed(model)
    mm.export_model(model, params, tmp_path / "out", label_names=["neg", "mid", "pos"])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["pad_token_id"] == {"bert": 0, "roberta": 1, "gpt2": VOCAB - 1}[arch]
    assert config["layer_norm_eps" if arch != "gpt2" else "layer_norm_epsilon"] != 1e-12
    batch = _batch(arch, model.config.pad_token_id)
    ours = np.asarray(model.apply_fn(params, batch, train=False))
    if arch == "gpt2":
        theirs = _gpt2_logits(tmp_path / "out", batch, "classification")[0]
    else:
        hf_class = getattr(transformers, "Flax" + mm.architecture_name(arch, "classification"))
        hf_model, hf_params = hf_class.from_pretrained(tmp_path / "out", _do_init=False)
        theirs = hf_model(**batch, params=hf_params).logits
    assert np.max(np.abs(ours - np.asarray(theirs))) <= 1e-5
    _check_roundtrip(model, params, tmp_path / "out")


def test_export_with_project_wordpiece_tokenizer(tmp_path):
    from mmojax.data import token_frame, train_tokenizer

    tokenizer = train_tokenizer(["a good film", "a bad film", "good and bad"] * 5, vocab_size=60)
    model = _from_scratch("bert", "classification")
    mm.export_model(model, model.params, tmp_path, tokenizer=tokenizer)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    frame = token_frame(tokenizer)
    plain = tokenizer.encode("a good film", add_special_tokens=False).ids
    assert hf_tokenizer("a good film")["input_ids"] == [*frame.begin, *plain, *frame.end]
    assert hf_tokenizer.pad_token_id == frame.pad == model.config.pad_token_id
    assert hf_tokenizer.model_max_length == LENGTH
    pair = hf_tokenizer("a film", "good", return_token_type_ids=True)
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1]


def test_export_transformers_tokenizer_gets_a_pad_token(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate("abcdefgh")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>"
    )
    assert hf_tokenizer.pad_token is None
    model = _from_scratch("gpt2", "classification")
    mm.export_model(model, model.params, tmp_path, tokenizer=hf_tokenizer)
    assert hf_tokenizer.pad_token is None  # the caller's tokenizer is not changed
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.pad_token_id == model.config.pad_token_id == 0


def test_export_errors(tmp_path):
    model = _from_scratch("bert", "classification")
    with pytest.raises(ValueError, match="3 distinct names"):
        mm.export_model(model, model.params, tmp_path, label_names=["a", "b"])
    other = _from_scratch("bert", "token_classification").params
    with pytest.raises(ValueError, match="params do not fit model 'bert'"):
        mm.export_model(model, other, tmp_path)
    with pytest.raises(ValueError, match="not used for qa"):
        mm.export_model(
            _from_scratch("bert", "qa"),
            _from_scratch("bert", "qa").params,
            tmp_path,
            label_names=["a", "b"],
        )


@pytest.mark.parametrize("name", ["mmojax.models._pretrained", "mmojax.models._export"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
