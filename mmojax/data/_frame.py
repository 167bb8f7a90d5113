"""The special tokens each tokenizer family puts around text, and checkpoint tokenizers.

The encoders (``encode_classification``, ``encode_ner``, ``encode_qa``) add
special tokens, truncate and pad themselves, so that every tokenizer goes
through the same code. What differs between tokenizer families is only the
*frame*: the tokens before a text, between a question and its context, after
the text, and the padding token.

============  =============  ==================  ============  =====================
family        begin          middle (pairs)      end           pad
============  =============  ==================  ============  =====================
``wordpiece`` ``[CLS]``      ``[SEP]``           ``[SEP]``     ``[PAD]``
``roberta``   ``<s>``        ``</s></s>``        ``</s>``      ``<pad>``
``gpt2``      (none)         ``<|endoftext|>``   ``<|endoftext|>``  the pad token, else
                                                                ``<|endoftext|>``
============  =============  ==================  ============  =====================

The first two are what BERT's and RoBERTa's own tokenizers add. GPT-2 has no
special tokens of its own; ending every text with ``<|endoftext|>`` gives its
last-token classification head a token that has seen the whole text, and the
attention mask (not the pad id) tells GPT-2 which tokens are real.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from tokenizers import Tokenizer


class TokenFrame(NamedTuple):
    """Special token ids around encoded text (see the module docstring).

    Attributes:
        family: ``"wordpiece"``, ``"roberta"`` or ``"gpt2"``.
        begin: Ids before the (first) text.
        middle: Ids between the two texts of a pair (question, context).
        end: Ids after the (last) text.
        pad: Id of padding positions.
    """

    family: str
    begin: tuple[int, ...]
    middle: tuple[int, ...]
    end: tuple[int, ...]
    pad: int

    @property
    def single_overhead(self) -> int:
        """Special tokens around one text."""
        return len(self.begin) + len(self.end)

    @property
    def pair_overhead(self) -> int:
        """Special tokens around a pair of texts."""
        return len(self.begin) + len(self.middle) + len(self.end)


def token_frame(tokenizer: Tokenizer) -> TokenFrame:
    """Recognises a tokenizer's family from its vocabulary and returns its frame.

    Args:
        tokenizer: A ``tokenizers.Tokenizer``: the project's own WordPiece
            tokenizer, or one of a BERT, RoBERTa or GPT-2 checkpoint.

    Returns:
        The :class:`TokenFrame`.

    Raises:
        ValueError: If the vocabulary has none of the three families' special
            tokens, or the tokenizer truncates or pads by itself.
    """
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        raise ValueError(
            "tokenizer must not truncate or pad by itself; call tokenizer.no_truncation() "
            "and tokenizer.no_padding() first"
        )
    ids = {tok: tokenizer.token_to_id(tok) for tok in _KNOWN_TOKENS}
    if None not in (ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]):
        cls, sep = ids["[CLS]"], ids["[SEP]"]
        return TokenFrame("wordpiece", (cls,), (sep,), (sep,), ids["[PAD]"])
    if None not in (ids["<s>"], ids["</s>"], ids["<pad>"]):
        bos, eos = ids["<s>"], ids["</s>"]
        return TokenFrame("roberta", (bos,), (eos, eos), (eos,), ids["<pad>"])
    eos = ids["<|endoftext|>"]
    if eos is not None:
        return TokenFrame("gpt2", (), (eos,), (eos,), eos)
    raise ValueError(
        "the tokenizer has none of the special tokens mmojax knows: [CLS]/[SEP]/[PAD] "
        "(BERT WordPiece), <s>/</s>/<pad> (RoBERTa) or <|endoftext|> (GPT-2)"
    )


_KNOWN_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<|endoftext|>")


def for_pretokenized(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer to use on words that are already split (NER sentences).

    Byte-level BPE (GPT-2, RoBERTa) marks a word that follows a space with a
    leading ``Ġ``; given words one by one it would see no spaces, so words
    are encoded as at the start of a text. As ``transformers`` does with
    ``add_prefix_space=True``, the returned copy adds that space to every
    word. Other tokenizers are returned unchanged.
    """
    spec = json.loads(tokenizer.to_str())
    if not _set_prefix_space(spec.get("pre_tokenizer")):
        return tokenizer
    return Tokenizer.from_str(json.dumps(spec))


def _set_prefix_space(node) -> bool:
    """Turns on ``add_prefix_space`` of every ByteLevel pre-tokenizer in ``node``."""
    if not isinstance(node, dict):
        return False
    changed = False
    if node.get("type") == "ByteLevel" and not node.get("add_prefix_space"):
        node["add_prefix_space"] = True
        changed = True
    for child in node.get("pretokenizers") or ():
        changed |= _set_prefix_space(child)
    return changed


def load_checkpoint_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Loads the tokenizer of a Hugging Face checkpoint directory (no hub access).

    ``tokenizer.json`` (a fast tokenizer) is read directly; without it,
    ``transformers.AutoTokenizer`` builds the fast tokenizer from the slow
    files (``vocab.txt``; ``vocab.json`` + ``merges.txt``). Truncation and
    padding settings of the file are switched off: the encoders frame,
    truncate and pad themselves.

    Args:
        path: The checkpoint directory, or a ``tokenizer.json`` file.

    Returns:
        The ``tokenizers.Tokenizer``.

    Raises:
        FileNotFoundError: If ``path`` does not exist or holds no tokenizer files.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        tokenizer = Tokenizer.from_file(path)
    elif not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer path {path!r} does not exist")
    elif os.path.isfile(os.path.join(path, "tokenizer.json")):
        tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    elif any(
        os.path.isfile(os.path.join(path, f)) for f in ("vocab.txt", "vocab.json", "merges.txt")
    ):
        from transformers import AutoTokenizer  # heavy: only for checkpoints without tokenizer.json

        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True).backend_tokenizer
    else:
        raise FileNotFoundError(
            f"{path} holds no tokenizer: expected tokenizer.json, or vocab.txt (WordPiece), "
            "or vocab.json and merges.txt (byte-level BPE)"
        )
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
