"""Tests for the mmojax.data loaders and their error reporting."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mmojax import data
from mmojax.data import _sst2

FIXTURES = Path(__file__).parent / "fixtures" / "data"


# --- synthetic sentiment -------------------------------------------------------------


def test_synthetic_is_reproducible_per_seed():
    a = data.make_synthetic_sentiment(60, 20, seed=3)
    b = data.make_synthetic_sentiment(60, 20, seed=3)
    c = data.make_synthetic_sentiment(60, 20, seed=4)
    assert a.train.texts == b.train.texts and a.validation.texts == b.validation.texts
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert a.train.texts != c.train.texts


def test_synthetic_sizes_balance_and_disjointness():
    ds = data.make_synthetic_sentiment()
    assert (len(ds.train), len(ds.validation)) == (500, 100)
    assert ds.label_names == ("negative", "positive")
    assert ds.train.labels.dtype == np.int32
    assert np.bincount(ds.train.labels).tolist() == [250, 250]
    assert np.bincount(ds.validation.labels).tolist() == [50, 50]
    assert len(set(ds.train.texts)) == 500
    assert not set(ds.train.texts) & set(ds.validation.texts)
    odd = data.make_synthetic_sentiment(7, 3, seed=1)
    assert np.bincount(odd.train.labels).tolist() == [3, 4]
    assert np.bincount(odd.validation.labels).tolist() == [1, 2]


def test_synthetic_is_learnable_by_bag_of_words():
    ds = data.make_synthetic_sentiment(400, 200, seed=0)
    counts: dict[str, np.ndarray] = {}
    for text, label in zip(ds.train.texts, ds.train.labels, strict=True):
        for word in set(text.lower().split()):
            counts.setdefault(word, np.ones(2))[label] += 1
    correct = 0
    for text, label in zip(ds.validation.texts, ds.validation.labels, strict=True):
        score = sum(
            np.log(counts[w] / counts[w].sum()) for w in text.lower().split() if w in counts
        )
        correct += int(np.argmax(score)) == label
    assert correct / len(ds.validation) > 0.95


def test_synthetic_rejects_negative_sizes():
    with pytest.raises(ValueError):
        data.make_synthetic_sentiment(-1, 10)


# --- SST-2 ---------------------------------------------------------------------------


def test_load_sst2_fixture_round_trip():
    ds = data.load_sst2(FIXTURES / "sst2")
    assert len(ds.train) == 12 and len(ds.validation) == 5
    assert ds.train.texts[0] == "a warm , funny and thoroughly charming little film ."
    assert ds.train.texts[10].startswith("café owners")
    assert ds.train.labels.tolist() == [1, 0] * 6
    assert ds.validation.labels.tolist() == [1, 0, 1, 0, 1]
    assert ds.label_names == ("negative", "positive")


def test_load_sst2_limits():
    ds = data.load_sst2(str(FIXTURES / "sst2"), max_train=4, max_val=2)
    assert len(ds.train) == 4 and len(ds.validation) == 2
    assert ds.train.labels.tolist() == [1, 0, 1, 0]


def test_load_sst2_missing_directory_without_hub(monkeypatch):
    monkeypatch.setattr(_sst2, "_hub_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="no/such/sst2"):
        data.load_sst2("no/such/sst2")


def test_load_sst2_falls_back_to_hub(monkeypatch):
    calls = []

    def load_dataset(*args):
        calls.append(args)
        split = {"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}
        return {"train": split, "validation": split}

    monkeypatch.setattr(_sst2, "_hub_available", lambda: True)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ds = data.load_sst2("glue/sst2", max_val=2)
    assert calls == [("glue", "sst2")]
    assert ds.train.texts == ["good", "bad", "fine"] and len(ds.validation) == 2


def test_load_sst2_missing_file_names_it(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(FileNotFoundError, match=r"dev\.tsv"):
        data.load_sst2(tmp_path)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"sentence\tlabel\nfine\t1\nodd\t2\n", 3, "label must be 0 or 1"),
        (b"sentence\tlabel\nfine\t1\nno label column\n", 3, "columns"),
        (b"text\tscore\nfine\t1\n", 1, "header"),
        (b"sentence\tlabel\nfine\t1\ncaf\xe9 au lait\t0\n", 3, "UTF-8"),
        (b"", 1, "empty"),
        (b" \n\n", 1, "empty"),
        (b"sentence\tlabel\n", 2, "no data rows"),
    ],
)
def test_sst2_malformed_file_errors(tmp_path, content, line, reason):
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=reason) as info:
        data.read_glue_tsv(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert "train.tsv" in str(err) and f"line {line}" in str(err)
    assert err.line == line


def test_read_glue_tsv_crlf_and_bom(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes("\ufeffsentence\tlabel\r\nnice\t1\r\n".encode())
    split = data.read_glue_tsv(path)
    assert split.texts == ["nice"] and split.labels.tolist() == [1]


# --- CoNLL ---------------------------------------------------------------------------


def test_load_conll_fixture_two_and_four_columns():
    ds = data.load_conll(FIXTURES / "conll")
    assert len(ds.train) == 3 and len(ds.validation) == 2
    assert ds.train.sentences[0] == [
        "Maria",
        "Lindqvist",
        "joined",
        "Nordbank",
        "Holdings",
        "in",
        "Stockholm",
        ".",
    ]
    assert ds.train.tags[0] == ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]
    assert ds.validation.sentences[1] == ["Anna", "Kowalska", "spoke", "."]
    assert ds.validation.tags[0] == ["B-ORG", "O", "B-ORG", "O", "O", "B-LOC", "O"]
    # I-LOC never occurs but is added so that every type has both tags.
    assert ds.label_names == (
        "O",
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
    )


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"EU B-ORG\nrejects\n", 2, "expected 'token TAG'"),
        (b"EU B-ORG\n\nrejects X-ORG\n", 3, "tag must be"),
        (b"EU B-ORG\ncaf\xe9 O\n", 2, "UTF-8"),
        (b"", 1, "empty"),
        (b"-DOCSTART- O\n\n", 1, "no sentences"),
    ],
)
def test_conll_malformed_file_errors(tmp_path, content, line, reason):
    path = tmp_path / "valid.txt"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=reason) as info:
        data.read_conll_file(path)
    assert "valid.txt" in str(info.value) and f"line {line}" in str(info.value)


def test_load_conll_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_conll(tmp_path / "nowhere")
    (tmp_path / "train.txt").write_text("A O\n")
    with pytest.raises(FileNotFoundError, match=r"valid\.txt"):
        data.load_conll(tmp_path)


# --- SQuAD ---------------------------------------------------------------------------


def test_load_squad_directory_and_file():
    ds = data.load_squad(FIXTURES / "squad")
    assert isinstance(ds, data.DatasetSplits)
    assert [ex.id for ex in ds.train] == ["t1", "t2", "t3", "t4", "t5"]
    d1 = ds.validation[0]
    assert d1.question == "How many countries does the Danube flow through?"
    assert d1.answers == ("ten", "ten countries") and d1.answer_starts == (25, 25)
    for ex in ds.train + ds.validation:
        for text, start in zip(ex.answers, ex.answer_starts, strict=True):
            assert ex.context[start : start + len(text)] == text
    single = data.load_squad(FIXTURES / "squad" / "dev.json")
    assert single == ds.validation


def test_squad_malformed_json_reports_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}\n')
    with pytest.raises(data.DataError, match="malformed JSON") as info:
        data.load_squad(path)
    assert "dev.json" in str(info.value) and "line 3" in str(info.value)


def test_squad_structural_errors_name_file_and_location(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q"}]}]}]}')
    with pytest.raises(data.DataError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]") as info:
        data.read_squad_file(path)
    assert "train.json" in str(info.value)
    path.write_text(
        '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q", "question": "?",'
        ' "answers": [{"text": "c", "answer_start": 7}]}]}]}]}'
    )
    with pytest.raises(data.DataError, match="outside the context"):
        data.read_squad_file(path)
    path.write_bytes(b'{"data": [\n"\xff"]}')
    with pytest.raises(data.DataError, match="line 2"):
        data.read_squad_file(path)


def test_squad_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        data.load_squad(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match=r"train\.json"):
        data.load_squad(tmp_path)
