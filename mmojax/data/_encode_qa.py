"""Encoding of extractive QA examples and decoding of predicted spans."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from ._encoded import DEFAULT_QA_BUCKETS, EncodedSplit, pad_rows, validate_buckets
from ._frame import token_frame
from ._types import QAExample


@dataclasses.dataclass(frozen=True)
class QASpans:
    """What is needed to map token positions back to context text.

    Attributes:
        contexts: The context of each example.
        context_starts: int32 ``[N]`` token position of the first context token.
        context_offsets: Per example, int32 ``[n_kept_context_tokens, 2]``
            character ``(start, end)`` of each kept context token.
    """

    contexts: list[str]
    context_starts: np.ndarray
    context_offsets: list[np.ndarray]


def _answer_tokens(
    example: QAExample, offsets: list[tuple[int, int]], n_kept: int
) -> tuple[int, int]:
    """Returns the (first, last) context tokens of the first answer, or (-1, -1) if cut off."""
    if not example.answers:
        return -1, -1
    char_start = example.answer_starts[0]
    char_end = char_start + len(example.answers[0])
    first = next((t for t, (_, e) in enumerate(offsets) if e > char_start), None)
    last = next((t for t in range(len(offsets) - 1, -1, -1) if offsets[t][0] < char_end), None)
    if first is None or last is None or first > last or last >= n_kept:
        return -1, -1
    return first, last


def encode_qa(
    tokenizer: Tokenizer,
    examples: Sequence[QAExample],
    buckets: Sequence[int] = DEFAULT_QA_BUCKETS,
    max_question_tokens: int = 64,
) -> EncodedSplit:
    """Tokenises QA examples as ``[CLS] question [SEP] context [SEP]``.

    The special tokens are the tokenizer family's (see
    :func:`~mmojax.data.token_frame`): ``<s> question </s></s> context </s>``
    for RoBERTa's, ``question <|endoftext|> context <|endoftext|>`` for
    GPT-2's. Answer spans map to tokens through the tokenizer's character
    offsets, whatever the tokenizer.

    The question keeps at most ``max_question_tokens`` tokens (always leaving
    room for one context token) and the context is truncated to fill the
    largest bucket. The first gold answer gives the
    token targets ``start_positions``/``end_positions`` (inclusive); when it
    was truncated away (or there is none), both point at position 0
    (``[CLS]``).

    Args:
        tokenizer: The project's WordPiece tokenizer or a checkpoint's.
        examples: The examples.
        buckets: Allowed padded lengths.
        max_question_tokens: Question truncation length.

    Returns:
        An :class:`EncodedSplit` with int32 ``[N, max(buckets)]`` arrays
        ``input_ids``, ``attention_mask``, ``token_type_ids`` (0 for
        ``[CLS]`` question ``[SEP]``, 1 for context ``[SEP]``) and int32
        ``[N]`` arrays ``start_positions``, ``end_positions``; its
        ``alignment`` is a :class:`QASpans`.

    Raises:
        ValueError: If the largest bucket is shorter than 4 tokens.
    """
    buckets = validate_buckets(buckets)
    frame = token_frame(tokenizer)
    max_len = buckets[-1]
    if max_len < frame.pair_overhead + 2:
        raise ValueError(f"largest bucket {max_len} leaves no room for the context")
    max_question_tokens = min(max_question_tokens, max_len - frame.pair_overhead - 2)
    questions = tokenizer.encode_batch([ex.question for ex in examples], add_special_tokens=False)
    contexts = tokenizer.encode_batch([ex.context for ex in examples], add_special_tokens=False)
    rows, type_rows, starts, ends, ctx_starts, ctx_offsets = [], [], [], [], [], []
    for ex, q, c in zip(examples, questions, contexts, strict=True):
        q_ids = q.ids[:max_question_tokens]
        n_kept = max_len - len(q_ids) - frame.pair_overhead
        c_ids = c.ids[:n_kept]
        ctx_start = len(frame.begin) + len(q_ids) + len(frame.middle)
        first, last = _answer_tokens(ex, c.offsets, len(c_ids))
        rows.append([*frame.begin, *q_ids, *frame.middle, *c_ids, *frame.end])
        type_rows.append([0] * ctx_start + [1] * (len(c_ids) + len(frame.end)))
        starts.append(ctx_start + first if first >= 0 else 0)
        ends.append(ctx_start + last if last >= 0 else 0)
        ctx_starts.append(ctx_start)
        ctx_offsets.append(np.asarray(c.offsets[: len(c_ids)], dtype=np.int32).reshape(-1, 2))
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    return EncodedSplit(
        arrays={
            "input_ids": pad_rows(rows, max_len, frame.pad),
            "attention_mask": (np.arange(max_len)[None, :] < lengths[:, None]).astype(np.int32),
            "token_type_ids": pad_rows(type_rows, max_len, 0),
            "start_positions": np.asarray(starts, dtype=np.int32),
            "end_positions": np.asarray(ends, dtype=np.int32),
        },
        lengths=lengths,
        seq_keys=("input_ids", "attention_mask", "token_type_ids"),
        pad_values={
            "input_ids": frame.pad,
            "attention_mask": 0,
            "token_type_ids": 0,
            "start_positions": 0,
            "end_positions": 0,
        },
        buckets=buckets,
        alignment=QASpans(
            [ex.context for ex in examples], np.asarray(ctx_starts, np.int32), ctx_offsets
        ),
    )


def _spans(encoded: EncodedSplit) -> QASpans:
    """Returns the QA metadata of ``encoded`` or raises TypeError."""
    if not isinstance(encoded.alignment, QASpans):
        raise TypeError("encoded split has no QA spans; use encode_qa")
    return encoded.alignment


def decode_qa_span(encoded: EncodedSplit, example_index: int, start: int, end: int) -> str:
    """Returns the context text covered by token positions ``start..end`` (inclusive).

    Args:
        encoded: The split returned by :func:`encode_qa`.
        example_index: Index of the example in the split.
        start: First token position of the span.
        end: Last token position of the span.

    Returns:
        The answer text, or ``""`` if the span is empty or not inside the context
        (e.g. the ``[CLS]`` "no answer" position).
    """
    spans = _spans(encoded)
    offsets = spans.context_offsets[example_index]
    first = int(start) - int(spans.context_starts[example_index])
    last = int(end) - int(spans.context_starts[example_index])
    if first < 0 or last < first or last >= len(offsets):
        return ""
    return spans.contexts[example_index][offsets[first, 0] : offsets[last, 1]]


def qa_predictions_from_logits(
    encoded: EncodedSplit,
    example_index: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    max_answer_tokens: int = 30,
) -> list[str]:
    """Picks the best context span per row and decodes it to text.

    The span maximises ``start_logits[s] + end_logits[e]`` over context tokens
    with ``s <= e < s + max_answer_tokens``.

    Args:
        encoded: The split returned by :func:`encode_qa`.
        example_index: int ``[B]`` from the batch; rows with -1 are skipped.
        start_logits: float ``[B, L]``.
        end_logits: float ``[B, L]``.
        max_answer_tokens: Longest answer considered, in tokens.

    Returns:
        Predicted answer text for each real row, in row order.
    """
    spans = _spans(encoded)
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    out: list[str] = []
    for row, idx in enumerate(np.asarray(example_index)):
        if idx < 0:
            continue
        lo = int(spans.context_starts[idx])
        hi = min(lo + len(spans.context_offsets[idx]), start_logits.shape[1])
        if hi <= lo:
            out.append("")
            continue
        scores = start_logits[row, lo:hi, None] + end_logits[row, None, lo:hi]
        n = hi - lo
        offset = np.arange(n)[None, :] - np.arange(n)[:, None]
        scores = np.where((offset >= 0) & (offset < max_answer_tokens), scores, -np.inf)
        s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
        out.append(decode_qa_span(encoded, int(idx), lo + int(s), lo + int(e)))
    return out
