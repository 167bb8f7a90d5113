"""Tests for tokenizer training, encoding, length bucketing and span alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from mmojax import data

FIXTURES = Path(__file__).parent / "fixtures" / "data"
BUCKETS = (8, 16, 32)


@pytest.fixture(scope="module")
def sentiment():
    return data.make_synthetic_sentiment(200, 40, seed=0)


@pytest.fixture(scope="module")
def tokenizer(sentiment):
    sst2 = data.load_sst2(FIXTURES / "sst2")
    return data.train_tokenizer(list(sentiment.train.texts) + sst2.train.texts, vocab_size=300)


def test_train_tokenizer_special_ids(tokenizer):
    ids = data.special_token_ids(tokenizer)
    assert ids == data.SpecialTokenIds(pad=0, unk=1, cls=2, sep=3, mask=4)
    assert tokenizer.get_vocab_size() <= 300
    assert tokenizer.encode("zzqx@", add_special_tokens=False).ids  # unknown chars -> [UNK]


def test_tokenizer_save_load_round_trip(tokenizer, tmp_path):
    texts = ["The movie was really wonderful .", "café owners , naïve romance", "xyz 123 !!"]
    path = tmp_path / "sub" / "tok.json"
    data.save_tokenizer(tokenizer, path)
    loaded = data.load_tokenizer(path)
    for text in texts:
        assert loaded.encode(text).ids == tokenizer.encode(text).ids
    assert data.special_token_ids(loaded) == data.special_token_ids(tokenizer)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        data.load_tokenizer(tmp_path / "missing.json")


def test_lowercase_option():
    cased = data.train_tokenizer(["Paris Paris paris"], vocab_size=50, lowercase=False)
    uncased = data.train_tokenizer(["Paris Paris paris"], vocab_size=50)
    assert cased.encode("Paris").ids != cased.encode("paris").ids
    assert uncased.encode("Paris").ids == uncased.encode("paris").ids


def test_encoders_reject_self_padding_tokenizer(tokenizer, sentiment, tmp_path):
    data.save_tokenizer(tokenizer, tmp_path / "tok.json")
    padding = data.load_tokenizer(tmp_path / "tok.json")
    padding.enable_padding(length=40)
    with pytest.raises(ValueError, match="must not truncate or pad"):
        data.encode_classification(padding, sentiment.validation)


def test_special_token_ids_reports_missing_token():
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "word": 4}
    no_mask = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        data.special_token_ids(no_mask)


def test_bucket_for_length():
    lengths = (1, 8, 9, 16, 17, 32, 99)
    expected = [8, 8, 16, 16, 32, 32, 32]
    assert [data.bucket_for_length(n, BUCKETS) for n in lengths] == expected


def test_encode_classification_layout(tokenizer, sentiment):
    split = data.TextClassificationSplit(
        [*sentiment.train.texts[:20], " ".join(["wonderful"] * 100)],
        np.r_[sentiment.train.labels[:20], 1],
    )
    enc = data.encode_classification(tokenizer, split, buckets=BUCKETS)
    ids, attn = enc.arrays["input_ids"], enc.arrays["attention_mask"]
    assert ids.shape == attn.shape == (21, 32)
    assert ids.dtype == attn.dtype == enc.arrays["labels"].dtype == np.int32
    np.testing.assert_array_equal(enc.arrays["labels"], split.labels)
    np.testing.assert_array_equal(attn.sum(1), enc.lengths)
    assert (ids[:, 0] == 2).all()
    assert (ids[np.arange(21), enc.lengths - 1] == 3).all()
    assert (ids[attn == 0] == 0).all()
    assert enc.lengths[-1] == 32  # truncated at the largest bucket, [SEP] kept
    expected = tokenizer.encode(split.texts[0], add_special_tokens=False).ids
    assert ids[0, 1 : enc.lengths[0] - 1].tolist() == expected


def test_batches_only_use_bucket_lengths(tokenizer, sentiment):
    texts = list(sentiment.train.texts)
    rng = np.random.default_rng(0)
    texts = [t if i % 3 else " ".join([t] * int(rng.integers(1, 5))) for i, t in enumerate(texts)]
    split = data.TextClassificationSplit(texts, sentiment.train.labels)
    enc = data.encode_classification(tokenizer, split, buckets=BUCKETS)
    assert set(enc.bucket_counts()) == set(BUCKETS)
    assert sum(enc.bucket_counts().values()) == len(split)
    shapes = set()
    for batch in data.BatchIterator(enc, 8, seed=1, num_epochs=2):
        width = batch["input_ids"].shape[1]
        assert width in BUCKETS
        rows = batch["example_index"]
        assert width == data.bucket_for_length(int(enc.lengths[rows].max()), BUCKETS)
        assert batch["attention_mask"].shape == (8, width)
        shapes.add(tuple(v.shape for v in batch.values()))
    assert 1 < len(shapes) <= len(BUCKETS)


# --- NER -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conll():
    return data.load_conll(FIXTURES / "conll")


@pytest.fixture(scope="module")
def small_tokenizer(conll):
    # A tiny vocabulary so that most words split into several sub-tokens.
    texts = [" ".join(s) for s in conll.train.sentences + conll.validation.sentences]
    return data.train_tokenizer(texts, vocab_size=60, lowercase=False)


def test_ner_labels_on_first_subtoken_only(conll, small_tokenizer):
    enc = data.encode_ner(small_tokenizer, conll.train, conll.label_names, buckets=(16, 64))
    labels, ids = enc.arrays["labels"], enc.arrays["input_ids"]
    assert labels.dtype == np.int32 and labels.shape == ids.shape
    split_words = 0
    for i, (words, tags) in enumerate(zip(conll.train.sentences, conll.train.tags, strict=True)):
        starts = enc.alignment.word_starts[i]
        assert (starts > 0).all()
        assert labels[i, starts].tolist() == [conll.label_names.index(t) for t in tags]
        ignored = np.ones(ids.shape[1], bool)
        ignored[starts] = False
        assert (labels[i, ignored] == data.IGNORE_INDEX).all()
        for pos in range(1, enc.lengths[i] - 1):  # continuation pieces are never labelled
            if small_tokenizer.id_to_token(int(ids[i, pos])).startswith("##"):
                assert labels[i, pos] == data.IGNORE_INDEX
                split_words += 1
        assert enc.lengths[i] - 2 >= len(words)
    assert split_words > 0


def test_ner_predictions_map_back_to_word_tags(conll, small_tokenizer):
    enc = data.encode_ner(small_tokenizer, conll.validation, conll.label_names, buckets=(16, 64))
    it = data.BatchIterator.for_eval(enc, batch_size=3)
    predicted = []
    for batch in it:
        perfect = np.where(batch["labels"] >= 0, batch["labels"], 0)
        predicted += data.ner_predictions_to_tags(enc, batch["example_index"], perfect)
    assert predicted == conll.validation.tags
    assert data.entity_f1(conll.validation.tags, predicted).f1 == 1.0


def test_ner_truncation_marks_dropped_words(conll, small_tokenizer):
    enc = data.encode_ner(small_tokenizer, conll.train, conll.label_names, buckets=(6,))
    starts = enc.alignment.word_starts[0]
    assert (starts == -1).any() and starts[0] == 1
    preds = np.ones((1, 6), np.int32)  # predict label 1 ("B-LOC") everywhere
    tags = data.ner_predictions_to_tags(enc, np.array([0]), preds)[0]
    assert tags == ["B-LOC" if s >= 0 else "O" for s in starts]
    with pytest.raises(ValueError, match="not in label_names"):
        data.encode_ner(small_tokenizer, conll.train, ("O",))


# --- QA ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def squad():
    return data.load_squad(FIXTURES / "squad")


@pytest.fixture(scope="module")
def qa_tokenizer(squad):
    examples = squad.train + squad.validation
    return data.train_tokenizer(
        [e.context for e in examples] + [e.question for e in examples], vocab_size=400
    )


def test_qa_positions_decode_to_answer(squad, qa_tokenizer):
    examples = squad.train + squad.validation
    enc = data.encode_qa(qa_tokenizer, examples, buckets=(64, 128))
    starts, ends = enc.arrays["start_positions"], enc.arrays["end_positions"]
    for i, ex in enumerate(examples):
        assert 0 < starts[i] <= ends[i] < enc.lengths[i] - 1
        assert data.decode_qa_span(enc, i, starts[i], ends[i]) == ex.answers[0]
        cs = enc.alignment.context_starts[i]
        types = enc.arrays["token_type_ids"][i]
        assert types[:cs].sum() == 0 and (types[cs : enc.lengths[i]] == 1).all()
        assert enc.arrays["input_ids"][i, cs - 1] == 3  # [SEP] after the question
    assert data.decode_qa_span(enc, 0, 0, 0) == ""  # [CLS] decodes to no answer


def test_qa_truncated_answer_points_at_cls(squad, qa_tokenizer):
    enc = data.encode_qa(qa_tokenizer, squad.train, buckets=(24,), max_question_tokens=12)
    assert (enc.lengths <= 24).all()
    truncated = enc.arrays["start_positions"] == 0
    assert truncated.any() and not truncated.all()
    np.testing.assert_array_equal(enc.arrays["end_positions"][truncated], 0)
    for i in np.flatnonzero(~truncated):
        s, e = enc.arrays["start_positions"][i], enc.arrays["end_positions"][i]
        assert data.decode_qa_span(enc, int(i), s, e) == squad.train[i].answers[0]


def test_qa_logits_to_predictions_and_scores(squad, qa_tokenizer):
    enc = data.encode_qa(qa_tokenizer, squad.validation, buckets=(64,))
    predictions = []
    for batch in data.BatchIterator.for_eval(enc, batch_size=4):
        width = batch["input_ids"].shape[1]
        start_logits = np.eye(width)[batch["start_positions"]]
        end_logits = np.eye(width)[batch["end_positions"]]
        assert batch["mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
        predictions += data.qa_predictions_from_logits(
            enc, batch["example_index"], start_logits, end_logits
        )
    assert predictions == ["ten", "the Black Sea"]
    refs = [ex.answers for ex in squad.validation]
    assert data.squad_exact_match_and_f1(predictions, refs) == {"exact_match": 1.0, "f1": 1.0}
