"""Tests for mmojax.data.load_splits: local directories, hub names and datasets objects."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from mmojax import data
from mmojax.data import _sources

FIXTURES = Path(__file__).parent / "fixtures" / "data"
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _dict(**splits) -> datasets.DatasetDict:
    return datasets.DatasetDict(splits)


def _sst2_dict() -> datasets.DatasetDict:
    features = datasets.Features(
        {
            "idx": datasets.Value("int32"),
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
        }
    )
    make = lambda texts, labels: datasets.Dataset.from_dict(
        {"idx": list(range(len(texts))), "sentence": texts, "label": labels}, features=features
    )
    return _dict(
        train=make(["a fine film", "dull and long", "warm , funny", "a mess"], [1, 0, 1, 0]),
        validation=make(["lovely", "awful", "great"], [1, 0, 1]),
        test=make(["unlabelled"], [-1]),
    )


def _conll_dict() -> datasets.DatasetDict:
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=CONLL_TAGS)),
        }
    )
    make = lambda sents, tags: datasets.Dataset.from_dict(
        {"id": [str(i) for i in range(len(sents))], "tokens": sents, "ner_tags": tags},
        features=features,
    )
    return _dict(
        train=make(
            [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]], [[3, 0, 7, 0], [1, 2]]
        ),
        validation=make([["Paris", "is", "nice"]], [[5, 0, 0]]),
    )


def _squad_dict() -> datasets.DatasetDict:
    make = lambda rows: datasets.Dataset.from_dict(
        {
            "id": [r[0] for r in rows],
            "title": ["t"] * len(rows),
            "context": [r[1] for r in rows],
            "question": [r[2] for r in rows],
            "answers": [{"text": r[3], "answer_start": r[4]} for r in rows],
        }
    )
    return _dict(
        train=make(
            [
                ("q1", "The Danube flows east.", "Where does it flow?", ["east"], [17]),
                ("q2", "Vienna lies on it.", "What lies on it?", ["Vienna"], [0]),
            ]
        ),
        validation=make(
            [("q3", "It has ten countries.", "How many?", ["ten", "ten countries"], [7, 7])]
        ),
    )


# --- datasets objects -----------------------------------------------------------------


def test_classification_from_datasetdict_uses_classlabel_names_and_validation():
    ds = data.load_splits("sst2", _sst2_dict())
    assert isinstance(ds.train, data.TextClassificationSplit)
    assert ds.train.texts == ["a fine film", "dull and long", "warm , funny", "a mess"]
    assert ds.train.labels.dtype == np.int32 and ds.train.labels.tolist() == [1, 0, 1, 0]
    assert ds.validation.texts == ["lovely", "awful", "great"]  # not the unlabelled test split
    assert ds.label_names == ("negative", "positive")
    small = data.load_splits("sst2", _sst2_dict(), max_train=2, max_val=1)
    assert small.train.texts == ["a fine film", "dull and long"]
    assert small.validation.labels.tolist() == [1]


def test_classification_plain_int_string_labels_and_text_column():
    ints = _dict(
        train=datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 2, 1]}),
        validation=datasets.Dataset.from_dict({"text": ["d"], "label": [2]}),
    )
    ds = data.load_splits("sst2", ints)
    assert ds.train.texts == ["a", "b", "c"] and ds.label_names == ("0", "1", "2")
    strings = _dict(
        train=datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": ["pos", "neg"]}),
        validation=datasets.Dataset.from_dict({"sentence": ["c"], "label": ["meh"]}),
    )
    ds = data.load_splits("sst2", strings)
    assert ds.label_names == ("meh", "neg", "pos")
    assert ds.train.labels.tolist() == [2, 1] and ds.validation.labels.tolist() == [0]


def test_classification_rejects_an_unlabelled_split():
    with pytest.raises(ValueError, match=r"label -1 outside 0\.\.1.*without labels"):
        data.load_splits("sst2", _sst2_dict(), validation="test")


def test_ner_from_datasetdict_maps_classlabel_ids_to_tags():
    ds = data.load_splits("ner", _conll_dict())
    assert isinstance(ds.train, data.TaggingSplit)
    assert ds.train.sentences[0] == ["EU", "rejects", "German", "call"]
    assert ds.train.tags == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert ds.validation.tags == [["B-LOC", "O", "O"]]
    assert ds.label_names == tuple(CONLL_TAGS)
    assert len(data.load_splits("ner", _conll_dict(), max_train=1).train) == 1


def test_ner_string_tags_and_unnamed_integer_tags():
    strings = _dict(
        train=datasets.Dataset.from_dict(
            {"tokens": [["Ann", "ran"]], "ner_tags": [["B-PER", "O"]]}
        ),
        validation=datasets.Dataset.from_dict({"tokens": [["Rome"]], "ner_tags": [["B-LOC"]]}),
    )
    ds = data.load_splits("ner", strings)
    assert ds.train.tags == [["B-PER", "O"]]
    assert ds.label_names == ("O", "B-LOC", "B-PER", "I-LOC", "I-PER")
    ints = _dict(
        train=datasets.Dataset.from_dict({"tokens": [["Ann"]], "ner_tags": [[1]]}),
        validation=datasets.Dataset.from_dict({"tokens": [["Rome"]], "ner_tags": [[0]]}),
    )
    with pytest.raises(ValueError, match="without tag names.*ClassLabel"):
        data.load_splits("ner", ints)
    bad = _dict(
        train=datasets.Dataset.from_dict({"tokens": [["Ann"]], "ner_tags": [["PER"]]}),
        validation=datasets.Dataset.from_dict({"tokens": [["Rome"]], "ner_tags": [["O"]]}),
    )
    with pytest.raises(ValueError, match=r"'B-'/'I-'.*'PER'"):
        data.load_splits("ner", bad)


def test_qa_from_datasetdict_builds_examples():
    ds = data.load_splits("qa", _squad_dict())
    assert ds.train[0] == data.QAExample(
        "q1", "The Danube flows east.", "Where does it flow?", ("east",), (17,)
    )
    assert [ex.id for ex in ds.train] == ["q1", "q2"]
    assert ds.validation[0].answers == ("ten", "ten countries")
    assert ds.validation[0].answer_starts == (7, 7) and ds.label_names == ()
    for ex in ds.train + ds.validation:
        for text, start in zip(ex.answers, ex.answer_starts, strict=True):
            assert ex.context[start : start + len(text)] == text


def test_qa_rejects_answer_outside_context():
    bad = _squad_dict()
    row = {"id": "x", "title": "t", "context": "abc", "question": "?"}
    bad["validation"] = datasets.Dataset.from_dict(
        {k: [v] for k, v in row.items()} | {"answers": [{"text": ["c"], "answer_start": [7]}]}
    )
    with pytest.raises(ValueError, match="'x'.*outside its context"):
        data.load_splits("qa", bad)


def test_bare_dataset_needs_an_explicit_validation_dataset():
    train = _sst2_dict()["train"]
    with pytest.raises(ValueError, match="bare datasets.Dataset.*validation="):
        data.load_splits("sst2", train)
    ds = data.load_splits("sst2", train, validation=_sst2_dict()["validation"])
    assert ds.train.texts[0] == "a fine film" and ds.validation.texts == [
        "lovely",
        "awful",
        "great",
    ]


def test_datasetdict_validation_split_rule():
    d = _sst2_dict()
    only_test = _dict(train=d["train"], test=d["validation"])
    assert data.load_splits("sst2", only_test).validation.texts == ["lovely", "awful", "great"]
    dev_and_test = _dict(train=d["train"], dev=d["validation"], test=d["test"])
    assert data.load_splits("sst2", dev_and_test).validation.texts == ["lovely", "awful", "great"]
    named = _dict(train=d["train"], validation=d["test"], heldout=d["validation"])
    assert len(data.load_splits("sst2", named, validation="heldout").validation) == 3
    with pytest.raises(ValueError, match=r"no validation split.*splits present: \['train', 'x'\]"):
        data.load_splits("sst2", _dict(train=d["train"], x=d["validation"]))
    with pytest.raises(ValueError, match="no 'train' split"):
        data.load_splits("sst2", _dict(validation=d["validation"]))


@pytest.mark.parametrize(
    ("task", "columns", "missing"),
    [
        ("sst2", {"sentence": ["a"], "labels": [0]}, "'label'"),
        ("sst2", {"review": ["a"], "label": [0]}, "'sentence' or 'text'"),
        ("ner", {"tokens": [["a"]], "tags": [["O"]]}, "'ner_tags'"),
        ("qa", {"id": ["1"], "question": ["?"], "context": ["c"]}, "'answers'"),
    ],
)
def test_missing_column_names_it_and_the_columns_present(task, columns, missing):
    ds = datasets.Dataset.from_dict(columns)
    with pytest.raises(ValueError, match="columns present") as info:
        data.load_splits(task, _dict(train=ds, validation=ds))
    message = str(info.value)
    assert f"no column {missing}" in message and str(list(columns)) in message


def test_bad_task_and_source_type():
    with pytest.raises(ValueError, match="task must be one of"):
        data.load_splits("translation", _sst2_dict())
    with pytest.raises(TypeError, match="got dict"):
        data.load_splits("sst2", {"train": [], "validation": []})


# --- paths -----------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Fails the test if anything tries the hub."""

    def load_dataset(*args, **kwargs):
        raise AssertionError(f"load_dataset{args} must not be called")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


@pytest.mark.parametrize(
    "source",
    ["./no/such/dir", "../nowhere", "/no/such/sst2", "~/no-such-mmojax-dir", "data/train.tsv"],
)
def test_missing_path_like_source_is_no_such_directory(no_hub, source):
    with pytest.raises(FileNotFoundError, match=r"no such directory.*train\.tsv and dev\.tsv"):
        data.load_splits("sst2", source)


def test_missing_pathlike_object_is_no_such_directory(no_hub, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such directory.*train\.txt and valid\.txt"):
        data.load_splits("ner", tmp_path / "conll")


def test_existing_file_is_not_a_directory(no_hub):
    with pytest.raises(NotADirectoryError, match=r"dev\.json.*train\.json and dev\.json"):
        data.load_splits("qa", FIXTURES / "squad" / "dev.json")


def test_existing_directory_wins_over_a_hub_name(no_hub, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    ds = data.load_splits("qa", "squad")
    assert ds.train == data.load_squad(FIXTURES / "squad").train


def test_local_errors_are_the_directory_loaders(no_hub, tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(FileNotFoundError, match=r"dev\.tsv"):
        data.load_splits("sst2", tmp_path)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t2\n")
    with pytest.raises(data.DataError, match="label must be 0 or 1"):
        data.load_splits("sst2", str(tmp_path))
    with pytest.raises(ValueError, match="validation= applies"):
        data.load_splits("sst2", FIXTURES / "sst2", validation="test")


@pytest.mark.parametrize(("max_train", "max_val"), [(None, None), (2, 1)])
def test_local_directory_equals_the_directory_loaders(no_hub, max_train, max_val):
    limit = lambda xs, n: xs if n is None else xs[:n]
    sst2 = data.load_splits("sst2", str(FIXTURES / "sst2"), max_train=max_train, max_val=max_val)
    ref = data.load_sst2(FIXTURES / "sst2", max_train=max_train, max_val=max_val)
    assert sst2.train.texts == ref.train.texts and sst2.validation.texts == ref.validation.texts
    np.testing.assert_array_equal(sst2.train.labels, ref.train.labels)
    np.testing.assert_array_equal(sst2.validation.labels, ref.validation.labels)
    assert sst2.label_names == ref.label_names == ("negative", "positive")

    ner = data.load_splits("ner", FIXTURES / "conll", max_train=max_train, max_val=max_val)
    ref = data.load_conll(FIXTURES / "conll")
    assert ner.train.sentences == limit(ref.train.sentences, max_train)
    assert ner.train.tags == limit(ref.train.tags, max_train)
    assert ner.validation.tags == limit(ref.validation.tags, max_val)
    assert ner.label_names == ref.label_names  # from both full splits, as load_conll

    qa = data.load_splits("qa", FIXTURES / "squad", max_train=max_train, max_val=max_val)
    ref = data.load_squad(FIXTURES / "squad")
    assert qa.train == limit(ref.train, max_train) and qa.validation == limit(
        ref.validation, max_val
    )
    assert len(qa.train) == (5 if max_train is None else 2)


# --- hub names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "name", "args", "make"),
    [
        ("sst2", "glue/sst2", ("glue", "sst2"), _sst2_dict),
        ("ner", "conll2003", ("conll2003", None), _conll_dict),
        ("qa", "squad", ("squad", None), _squad_dict),
        ("qa", "rajpurkar/squad:", ("rajpurkar/squad", None), _squad_dict),
        ("sst2", "nyu-mll/glue/sst2", ("nyu-mll/glue", "sst2"), _sst2_dict),
        ("sst2", "nyu-mll/glue:sst2", ("nyu-mll/glue", "sst2"), _sst2_dict),
    ],
)
def test_hub_name_loads_through_load_dataset(monkeypatch, task, name, args, make):
    calls = []

    def load_dataset(*a, **kw):
        calls.append(a + tuple(kw.values()))
        return make()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    got = data.load_splits(task, name, max_train=1)
    assert calls == [args]
    want = data.load_splits(task, make(), max_train=1)
    assert len(got.train) == 1 and got.label_names == want.label_names
    if task == "sst2":
        assert got.train.texts == want.train.texts and got.validation.texts == want.validation.texts
    else:
        assert got == want


def test_hub_name_offline_says_so_and_points_to_a_directory(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="could not reach the Hugging Face hub") as info:
        data.load_splits("sst2", "glue/sst2")
    message = str(info.value)
    assert "'glue/sst2'" in message and "--data PATH" in message
    assert "train.tsv and dev.tsv" in message and "LocalEntryNotFoundError" in message
    assert isinstance(info.value.__cause__, ConnectionError)


def test_hub_name_not_found(monkeypatch):
    def missing(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'nope' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(FileNotFoundError, match=r"'nope' not found.*--data PATH.*train\.json"):
        data.load_splits("qa", "nope")


def test_hub_name_really_offline(monkeypatch):
    # datasets' own offline mode: the real load_dataset, the real error it raises offline.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"could not reach.*train\.txt and valid\.txt"):
        data.load_splits("ner", "mmojax-tests-no-such-dataset-7f3a")


# --- packaging ---------------------------------------------------------------------------


def test_import_mmojax_data_does_not_import_datasets():
    code = "import sys, mmojax.data; print('datasets' in sys.modules, 'pyarrow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.split() == ["False", "False"]


def test_docstring_example_runs():
    result = doctest.testmod(_sources, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0
