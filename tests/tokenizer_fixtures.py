"""Real-format tokenizers of the three families, trained in the tests on a few sentences.

The BERT one is a WordPiece with ``[CLS]``/``[SEP]``/``[PAD]``; the RoBERTa and
GPT-2 ones are byte-level BPE with their own special tokens and the settings
of the published ``tokenizer.json`` files (no prefix space, trimmed offsets).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mmojax import data

CORPUS = [
    "the film is a charming and often affecting journey",
    "it is a dull , pointless mess of a movie",
    "Alice Smith works for the United Nations in New York",
    "The Eiffel Tower is in Paris , which is in France",
    "What is the capital of France ? Paris is the capital of France .",
    "a gorgeous , witty , seductive movie",
] * 3


def wordpiece() -> Tokenizer:
    """A BERT-family tokenizer (the project's own WordPiece)."""
    return data.train_tokenizer(CORPUS, vocab_size=200)


def byte_level(family: str) -> Tokenizer:
    """A byte-level BPE tokenizer of the ``"roberta"`` or ``"gpt2"`` family."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"] if family == "roberta" else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok
