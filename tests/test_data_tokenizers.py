"""Each model's own tokenizer: frames, pre-split words, answer offsets, paired splits."""

import numpy as np
import pytest
import tokenizer_fixtures as tf

from mmojax import data


@pytest.fixture(scope="module")
def tokenizers():
    return {
        "bert": tf.wordpiece(),
        "roberta": tf.byte_level("roberta"),
        "gpt2": tf.byte_level("gpt2"),
    }


def test_frames_follow_each_family(tokenizers):
    bert = data.token_frame(tokenizers["bert"])
    assert bert.family == "wordpiece"
    assert bert.begin == (tokenizers["bert"].token_to_id("[CLS]"),)
    assert bert.pad == tokenizers["bert"].token_to_id("[PAD]")
    rob = tokenizers["roberta"]
    frame = data.token_frame(rob)
    s, e = rob.token_to_id("<s>"), rob.token_to_id("</s>")
    assert frame == data.TokenFrame("roberta", (s,), (e, e), (e,), rob.token_to_id("<pad>"))
    eos = tokenizers["gpt2"].token_to_id("<|endoftext|>")
    assert data.token_frame(tokenizers["gpt2"]) == data.TokenFrame("gpt2", (), (eos,), (eos,), eos)


def test_frame_of_an_unknown_tokenizer_names_the_tokens():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match=r"<\|endoftext\|>"):
        data.token_frame(Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")))


def test_classification_rows_are_framed_and_padded_per_family(tokenizers):
    split = data.TextClassificationSplit(["a dull mess", "a charming movie indeed"], [0, 1])
    for name, tok in tokenizers.items():
        frame = data.token_frame(tok)
        enc = data.encode_classification(tok, split, buckets=(16,))
        ids = tok.encode("a dull mess", add_special_tokens=False).ids
        n = len(ids) + frame.single_overhead
        row = enc.arrays["input_ids"][0]
        assert list(row[:n]) == [*frame.begin, *ids, *frame.end], name
        assert (row[n:] == frame.pad).all() and enc.lengths[0] == n
        assert list(enc.arrays["attention_mask"][0]) == [1] * n + [0] * (16 - n)


def test_ner_words_get_a_prefix_space_and_labels_on_first_sub_tokens(tokenizers):
    words = ["Alice", "Smith", "works", "in", "Paris"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC"]
    names = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    for name, tok in tokenizers.items():
        enc = data.encode_ner(tok, data.TaggingSplit([words], [tags]), names, buckets=(32,))
        starts = enc.alignment.word_starts[0]
        labels, ids = enc.arrays["labels"][0], enc.arrays["input_ids"][0]
        assert [names[labels[p]] for p in starts] == tags, name
        assert (labels >= 0).sum() == len(words)
        if name != "bert":  # inside a sentence a word is encoded with its leading space
            text_ids = tok.encode("x Paris", add_special_tokens=False).ids
            assert ids[starts[-1]] == text_ids[1], name
            first_ids = tok.encode(" Alice", add_special_tokens=False).ids
            assert ids[starts[0]] == first_ids[0], name


def test_qa_answers_map_through_each_tokenizers_offsets(tokenizers):
    context = "The Eiffel Tower is in Paris, which is in France."
    ex = data.QAExample("q0", context, "Where is the Eiffel Tower?", ("Paris",), (23,))
    for name, tok in tokenizers.items():
        enc = data.encode_qa(tok, [ex], buckets=(64,))
        s, e = enc.arrays["start_positions"][0], enc.arrays["end_positions"][0]
        assert data.decode_qa_span(enc, 0, s, e).strip().lower() == "paris", name
        frame = data.token_frame(tok)
        start = enc.alignment.context_starts[0]
        assert list(enc.arrays["input_ids"][0][start - len(frame.middle) : start]) == list(
            frame.middle
        )


def test_paired_split_gives_each_model_its_own_tokens_for_the_same_examples(tokenizers):
    texts = [" ".join(tf.CORPUS[i % 6].split()[: 3 + i]) for i in range(10)]
    split = data.TextClassificationSplit(texts, [i % 2 for i in range(10)])
    own = {
        n: data.encode_classification(t, split, buckets=(8, 16, 32)) for n, t in tokenizers.items()
    }
    paired = data.pair_splits(own)
    assert data.is_paired(paired) and "labels" in paired.arrays  # shared, stored once
    assert not any(k.endswith("/labels") for k in paired.arrays)
    batch = next(data.BatchIterator(paired, 4, seed=3))
    width = batch["bert/input_ids"].shape[1]
    assert all(batch[f"{n}/input_ids"].shape[1] == width for n in own)
    for name, split_n in own.items():
        view = data.model_batch(batch, name)
        assert set(view) == {"input_ids", "attention_mask", "labels", "mask", "example_index"}
        ref = split_n.gather(batch["example_index"])
        w = ref["input_ids"].shape[1]
        np.testing.assert_array_equal(view["input_ids"][:, :w], ref["input_ids"])
        assert (view["input_ids"][:, w:] == data.token_frame(tokenizers[name]).pad).all()
        np.testing.assert_array_equal(view["labels"], ref["labels"])
        assert data.model_split(paired, name).alignment is split_n.alignment
        np.testing.assert_array_equal(data.model_split(paired, name).lengths, split_n.lengths)


def test_unpaired_batches_are_every_models_view():
    batch = {"input_ids": np.zeros((2, 4)), "mask": np.ones(2)}
    assert data.model_batch(batch, "bert") is batch


def test_pairing_refuses_different_examples(tokenizers):
    a = data.encode_classification(
        tokenizers["bert"], data.TextClassificationSplit(["a b", "c"], [0, 1])
    )
    b = data.encode_classification(tokenizers["gpt2"], data.TextClassificationSplit(["a b"], [0]))
    with pytest.raises(ValueError, match="same examples"):
        data.pair_splits({"bert": a, "gpt2": b})


def test_checkpoint_tokenizer_loads_from_a_directory_without_padding(tmp_path, tokenizers):
    tok = tokenizers["roberta"]
    tok.enable_padding(pad_id=1, pad_token="<pad>")
    tok.save(str(tmp_path / "tokenizer.json"))
    tok.no_padding()
    loaded = data.load_checkpoint_tokenizer(tmp_path)
    assert loaded.padding is None and loaded.truncation is None
    assert loaded.get_vocab() == tok.get_vocab()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        data.load_checkpoint_tokenizer(tmp_path / "..")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_checkpoint_tokenizer(tmp_path / "missing")
