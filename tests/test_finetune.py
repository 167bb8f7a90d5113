"""Fine-tuning local checkpoints jointly, each with its own tokenizer; export, predict, evaluate.

The checkpoints are tiny random BERT, GPT-2 and RoBERTa models written with
``save_pretrained``, with real-format tokenizers trained in the test
(WordPiece; byte-level BPE with RoBERTa's and GPT-2's special tokens).
"""

import os

import jax
import numpy as np
import pytest
import tokenizer_fixtures as tf
import transformers

from mmojax import cli
from mmojax import data as mdata
from mmojax.train import TrainConfig, _inference, _tasks, train

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")


def _save_tokenizer(tokenizer, path, **specials):
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)
    fast.save_pretrained(path)


def _checkpoint(root, arch, tokenizer):
    path = str(root / arch)
    size = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    vocab = tokenizer.get_vocab_size()
    if arch == "bert":
        config = transformers.BertConfig(vocab_size=vocab, max_position_embeddings=64, **size)
        transformers.FlaxBertModel(config, seed=1).save_pretrained(path)
        _save_tokenizer(tokenizer, path, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]")
    elif arch == "roberta":
        config = transformers.RobertaConfig(
            vocab_size=vocab, max_position_embeddings=66, pad_token_id=1, **size
        )
        transformers.FlaxRobertaModel(config, seed=2).save_pretrained(path)
        _save_tokenizer(tokenizer, path, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    else:
        config = transformers.GPT2Config(
            vocab_size=vocab, n_positions=64, n_embd=16, n_layer=1, n_head=2, n_inner=32
        )
        transformers.FlaxGPT2Model(config, seed=3).save_pretrained(path)
        _save_tokenizer(tokenizer, path, eos_token="<|endoftext|>")
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "bert": _checkpoint(root, "bert", tf.wordpiece()),
        "gpt2": _checkpoint(root, "gpt2", tf.byte_level("gpt2")),
        "roberta": _checkpoint(root, "roberta", tf.byte_level("roberta")),
    }


def _config(workdir, checkpoints, **kw):
    values = dict(
        task="synthetic",
        models=("bert", "gpt2", "roberta"),
        checkpoints=checkpoints,
        epochs=1,
        max_train=48,
        max_val=24,
        batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        warmup_steps=0,
        sync_every=2,
        workdir=str(workdir),
        progress=False,
    )
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, checkpoints):
    workdir = tmp_path_factory.mktemp("run") / "joint"
    config = _config(workdir, checkpoints, mode="mmo-role-depth")
    return config, train(config)


@pytest.mark.slow
def test_joint_run_starts_from_the_checkpoints_with_their_tokenizers(finished, checkpoints):
    config, result = finished
    task = _tasks.prepare_task(
        "synthetic",
        max_train=48,
        max_val=24,
        models=config.models,
        model_tokenizers=checkpoints,
    )
    assert task.tokenizer is None  # every model brought its own tokenizer
    assert mdata.is_paired(task.train)
    for name, path in checkpoints.items():
        own = mdata.load_checkpoint_tokenizer(path)
        assert task.tokenizers[name].get_vocab() == own.get_vocab()
        assert os.path.exists(os.path.join(config.workdir, "tokenizers", f"{name}.json"))
    # The backbones started from the checkpoints and moved.
    start = transformers.FlaxBertModel.from_pretrained(checkpoints["bert"]).params
    trained = result.state.params["bert"]["bert"]
    w0 = start["embeddings"]["word_embeddings"]["embedding"]
    w1 = trained["embeddings"]["word_embeddings"]["embedding"]
    assert w0.shape == w1.shape and not np.allclose(w0, w1)
    assert result.updates == 6 and all(np.isfinite(result.final[m]["loss"]) for m in config.models)


@pytest.mark.slow
def test_exported_models_reload_in_transformers_with_identical_logits(finished):
    config, result = finished
    export = os.path.join(config.workdir, "export")
    predictors = _inference.load_predictors(config.workdir)
    assert set(predictors) == set(config.models)
    texts = ["a charming and often affecting journey", "a dull , pointless mess"]
    for name in ("bert", "roberta"):
        p = predictors[name]
        cls = {
            "bert": transformers.FlaxBertForSequenceClassification,
            "roberta": transformers.FlaxRobertaForSequenceClassification,
        }[name]
        hf = cls.from_pretrained(os.path.join(export, name))
        split = mdata.TextClassificationSplit(texts, [0, 1])
        batch = mdata.encode_classification(p.tokenizer, split, buckets=(16,)).gather(np.arange(2))
        ours = p.model.apply_fn(result.state.params[name], batch, train=False)
        kwargs = {"attention_mask": batch["attention_mask"]}
        if name == "roberta":
            kwargs["position_ids"] = (
                transformers.models.roberta.modeling_flax_roberta.create_position_ids_from_input_ids(
                    batch["input_ids"], 1
                )
            )
        theirs = hf(batch["input_ids"], **kwargs).logits
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5)
        assert hf.config.id2label == {0: "negative", 1: "positive"}
    # Every exported model (GPT-2 too) reproduces the trained parameters' logits.
    for name, p in predictors.items():
        for a, b in zip(
            jax.tree.leaves(p.model.params), jax.tree.leaves(result.state.params[name]), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_export_predict_and_evaluate_commands(finished, tmp_path, capsys):
    config, result = finished
    out = tmp_path / "again"
    assert cli.main(["export", "--workdir", config.workdir, "--out", str(out)]) == 0
    for name in config.models:  # from the checkpoint: the same weights as the end-of-run export
        a = _inference.Predictor.load(name, str(out / name)).model.params
        b = result.state.params[name]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    sentences = tmp_path / "in.txt"
    sentences.write_text("a charming , witty movie\na dull mess\n")
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", config.workdir, "--input", str(sentences)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["input", "bert", "gpt2", "roberta", "ensemble"]
    assert len(lines) == 3
    assert all(cell.split(" ")[0] in ("negative", "positive") for cell in lines[1].split("\t")[1:])
    assert cli.main(["evaluate", "--models", str(out), "--task", "synthetic"]) == 0
    table = capsys.readouterr().out
    scores = _inference.evaluate(_inference.load_predictors(str(out)), "synthetic", None)
    assert f"{scores['ensemble']['accuracy']:.4f}" in table
    assert set(scores) == {*config.models, "ensemble"}
    # The exported models give the probabilities the run computed on its validation split.
    raw = _tasks.load_raw("synthetic", None, config.seed, config.max_train, config.max_val)
    probs = _inference.classify(_inference.load_predictors(str(out)), raw.validation.texts)
    for m in config.models:
        np.testing.assert_allclose(probs[m], result.probabilities[m], atol=1e-5)
    np.testing.assert_allclose(probs["ensemble"], np.mean([probs[m] for m in config.models], 0))


def test_ner_with_own_tokenizers_labels_each_models_first_sub_tokens():
    tokenizers = {"gpt2": tf.byte_level("gpt2"), "roberta": tf.byte_level("roberta")}
    task = _tasks.prepare_task(
        "ner",
        os.path.join(FIXTURES, "conll"),
        models=("bert", "gpt2", "roberta"),
        model_tokenizers=tokenizers,
        vocab_size=300,
    )
    assert mdata.is_paired(task.train) and task.tokenizer is not None  # bert: the run's own
    for name in ("bert", "gpt2", "roberta"):
        own = mdata.model_split(task.validation, name)
        assert own.alignment is not None
        labels = own.arrays["labels"]
        for i, starts in enumerate(own.alignment.word_starts):
            kept = starts[starts >= 0]
            assert (labels[i][kept] >= 0).all() and (labels[i] >= 0).sum() == len(kept)
    # Each model's evaluator decodes through its own alignment: gold labels score f1 = 1.
    for name in ("bert", "gpt2"):
        ev = _tasks.Evaluator(task, name)
        for batch in mdata.BatchIterator.for_eval(task.validation, 8):
            view = mdata.model_batch(batch, name)
            pred = np.where(view["labels"] >= 0, view["labels"], 0)
            ev.add(batch, {"pred": pred, "loss_sum": np.zeros(8), "tokens": np.ones(8)})
        assert ev.result()["f1"] == pytest.approx(1.0)


def test_a_checkpoint_of_another_architecture_is_refused(checkpoints, tmp_path):
    config = _config(
        tmp_path / "w", {"gpt2": checkpoints["bert"]}, models=("bert", "gpt2"), max_train=16
    )
    with pytest.raises(ValueError, match="config.json"):
        train(config)
    assert not os.path.exists(tmp_path / "w" / "config.json")  # nothing written


def test_cli_parses_checkpoints_tokenizers_sizes_and_grouped_modes(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "train",
            "--models",
            "bert=/ckpt/minilm,gpt2,roberta",
            "--tokenizers",
            "gpt2=/tok/gpt2",
            "--model-size",
            "hidden=32,layers=1,heads=2,intermediate=64",
            "--mode",
            "mmo-type-shape",
        ]
    )
    config = cli.config_from_args(args)
    assert config.models == ("bert", "gpt2", "roberta")
    assert config.checkpoints == {"bert": "/ckpt/minilm"}
    assert config.tokenizer_sources() == {"bert": "/ckpt/minilm", "gpt2": "/tok/gpt2"}
    assert config.model_size == {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}
    assert config.grouping == "type_shape"
    assert TrainConfig(mode="mmo").grouping == "role_depth"
    with pytest.raises(ValueError, match="contradicts mode"):
        TrainConfig(mode="mmo-type-shape", grouping="role")
    with pytest.raises(ValueError, match="not among the models"):
        TrainConfig(models=("bert",), checkpoints={"gpt2": "/x"})
    with pytest.raises(ValueError, match="unknown size"):
        TrainConfig(model_size={"width": 3})
    assert cli.main(["predict", "--models", "/no/such/dir", "--input", "-"]) == 2
    assert "/no/such/dir" in capsys.readouterr().err


def test_the_sharing_plan_says_which_tables_of_other_vocabularies_do_not_pool():
    import jax.numpy as jnp

    import mmojax

    params = {
        "bert": {"embeddings": {"word_embeddings": {"embedding": jnp.zeros((30, 8))}}},
        "gpt2": {"wte": {"embedding": jnp.zeros((50, 8))}, "w": {"kernel": jnp.zeros((8, 8))}},
        "roberta": {"embeddings": {"word_embeddings": {"embedding": jnp.zeros((30, 8))}}},
    }
    plan = mmojax.sharing_plan(params)
    text = str(plan)
    assert "not shared" in text and "gpt2/wte/embedding (50, 8)" in text
    assert [g.models for g in plan.shared_groups] == [("bert", "roberta")]


def test_prepare_task_takes_a_datasets_dict():
    import datasets

    texts = ["a charming movie", "a dull mess", "witty and gorgeous", "pointless"] * 4
    labels = [1, 0, 1, 0] * 4
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": texts, "label": labels}),
            "validation": datasets.Dataset.from_dict({"sentence": texts[:4], "label": labels[:4]}),
        }
    )
    task = _tasks.prepare_task("sst2", dd, vocab_size=100)
    assert len(task.train) == 16 and len(task.validation) == 4 and task.num_labels == 2
    np.testing.assert_array_equal(task.train.arrays["labels"], labels)


def test_a_hub_name_is_fetched_where_a_hub_answers_and_refused_clearly_otherwise(
    monkeypatch, tmp_path
):
    import huggingface_hub

    from mmojax.train import _models

    def offline(repo_id, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="not a local directory.*huggingface-cli download"):
        _models.resolve_checkpoint("someone/some-model")
    calls = []

    def online(repo_id, **kw):
        calls.append(repo_id)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", online)
    assert _models.resolve_checkpoint("someone/some-model") == str(tmp_path)
    assert _models.resolve_checkpoint(str(tmp_path)) == str(tmp_path)  # a path stays a path
    assert _models.resolve_checkpoint("./no/such/dir") == "./no/such/dir"  # loading reports it
    assert calls == ["someone/some-model"]


def test_resume_needs_the_tokenizers_the_run_saved(tmp_path):
    import json

    from mmojax.train import _rundir

    config = TrainConfig(
        models=("bert", "gpt2"), checkpoints={"bert": "/c/bert"}, tokenizers={"gpt2": "/t/gpt2"}
    )
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    (tmp_path / "tokenizers").mkdir()
    (tmp_path / "tokenizers" / "bert.json").write_text("{}")
    with pytest.raises(_rundir.RunDirError, match="gpt2.json"):
        _rundir.check(str(tmp_path), resume=True)
    (tmp_path / "tokenizers" / "gpt2.json").write_text("{}")
    _rundir.check(str(tmp_path), resume=True)  # no tokenizer.json needed: no model uses it
