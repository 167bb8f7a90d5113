"""Exporting trained task models as Hugging Face checkpoints.

BERT and RoBERTa models are written by ``save_pretrained`` of the matching
``transformers`` Flax task class, so ``FlaxBertForSequenceClassification``
(and the others) load them back as they are. ``transformers`` has no Flax GPT-2
task classes: GPT-2 models are written by ``FlaxGPT2Model.save_pretrained`` with
the head next to the backbone under PyTorch's names (see :func:`export_model`).
:func:`load_pretrained` reads every export back, head included.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax.traverse_util import flatten_dict

from ._build import Model, swap_held_layout

logger = logging.getLogger(__name__)

_TASK_CLASS = {
    "classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
}
_ARCH_CLASS = {"bert": "Bert", "gpt2": "GPT2", "roberta": "Roberta"}


def architecture_name(arch: str, task: str) -> str:
    """The ``transformers`` class name of a task model, e.g. ``BertForQuestionAnswering``.

    Args:
        arch: One of ``ARCHS``.
        task: One of ``TASKS``.

    Returns:
        The PyTorch class name written to ``config.json`` ``architectures``
        (the Flax class adds a ``Flax`` prefix; GPT-2 has no Flax task classes).
    """
    return _ARCH_CLASS[arch] + _TASK_CLASS[task]


def _host_params(model: Model, params: Any) -> dict[str, Any]:
    """``params`` as float32 NumPy arrays, checked against the model's structure."""
    expected = {k: np.shape(v) for k, v in flatten_dict(model.params).items()}
    try:
        got = {k: np.shape(v) for k, v in flatten_dict(dict(params)).items()}
    except (TypeError, ValueError):
        raise TypeError(
            f"params must be a nested dict of arrays, got {type(params).__name__}"
        ) from None
    if got != expected:
        missing = sorted("/".join(k) for k in expected.keys() - got.keys())
        extra = sorted("/".join(k) for k in got.keys() - expected.keys())
        shapes = sorted(
            f"{'/'.join(k)} {got[k]} (model {expected[k]})"
            for k in expected.keys() & got.keys()
            if got[k] != expected[k]
        )
        raise ValueError(
            f"params do not fit model {model.name!r}: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, other shapes {shapes[:5]}"
        )
    return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x), np.float32), params)


def _hf_tokenizer(tokenizer: Any, model: Model) -> Any:
    """A ``transformers`` fast tokenizer for ``tokenizer`` that encodes as mmojax does."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        if tokenizer.pad_token is None:  # GPT-2: pad with the model's pad id
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.pad_token_id)
        return tokenizer
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(
            "tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    from tokenizers import processors

    from mmojax.data import token_frame

    backend = Tokenizer.from_str(tokenizer.to_str())  # a copy: settings change below
    backend.no_truncation()
    backend.no_padding()
    frame = token_frame(backend)
    # mmojax's encoders add the family's frame themselves; a transformers user
    # calls tokenizer(text), so the post-processor must add the same tokens.
    plain = backend.encode("a b", add_special_tokens=False).ids
    if backend.encode("a b").ids != [*frame.begin, *plain, *frame.end]:
        names = {i: backend.id_to_token(i) for i in (*frame.begin, *frame.middle, *frame.end)}
        begin = [names[i] for i in frame.begin]
        middle = [names[i] for i in frame.middle]
        end = [names[i] for i in frame.end]
        # Token types as mmojax's QA encoder: 0 up to the middle, 1 for the second text.
        template = processors.TemplateProcessing(
            single=[*begin, "$A:0", *end],
            pair=[*begin, "$A:0", *middle, "$B:1", *(f"{t}:1" for t in end)],
            special_tokens=sorted((token, i) for i, token in names.items()),
        )
        existing = backend.post_processor
        backend.post_processor = (
            template if existing is None else processors.Sequence([existing, template])
        )
    pad = backend.id_to_token(frame.pad)
    specials = {
        "wordpiece": {
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "unk_token": "[UNK]",
            "mask_token": "[MASK]",
        },
        "roberta": {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
        },
        "gpt2": {
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
        },
    }[frame.family]
    present = {k: v for k, v in specials.items() if backend.token_to_id(v) is not None}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=pad,
        model_max_length=model.config.max_length,
        padding_side="right",
        **present,
    )


def export_model(
    model: Model,
    params: Any,
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    label_names: Sequence[str] | None = None,
) -> str:
    """Writes a task model as a Hugging Face checkpoint directory.

    ``out_dir`` gets ``config.json`` (the model's HF config with ``architectures``,
    ``id2label``/``label2id`` and ``pad_token_id``), ``flax_model.msgpack`` (the
    parameters, HF Flax names) and, with ``tokenizer``, the tokenizer files.

    BERT and RoBERTa: ``transformers.Flax{Bert,Roberta}For{SequenceClassification,
    TokenClassification,QuestionAnswering}.from_pretrained(out_dir)`` loads the model;
    its logits equal ``model.apply_fn(params, batch, train=False)`` (RoBERTa with the
    position ids HF derives from the pad id, as mmojax does).

    GPT-2 (no Flax task class in ``transformers``): ``flax_model.msgpack`` holds
    ``{"transformer": backbone, head}`` with the head named as in PyTorch's
    ``GPT2ForSequenceClassification`` (``score``, a kernel without bias),
    ``GPT2ForTokenClassification`` (``classifier``) or ``GPT2ForQuestionAnswering``
    (``qa_outputs``), and ``architectures`` names that class. ``FlaxGPT2Model
    .from_pretrained(out_dir)`` loads the backbone exactly (it drops the head), and
    the logits are reproduced by::

        mask = attention_mask                                  # [B, L], 1 = real token
        positions = np.maximum(np.cumsum(mask, -1) - 1, 0)     # = arange(L) on right padding
        h = FlaxGPT2Model.from_pretrained(out_dir)(
            input_ids, mask, positions).last_hidden_state      # [B, L, H]
        head = flax.serialization.msgpack_restore(
            open(f"{out_dir}/flax_model.msgpack", "rb").read())
        # classification: the hidden state of the last real token (mask, not pad id)
        last = np.max(np.where(mask > 0, np.arange(L), 0), -1)
        logits = h[np.arange(B), last] @ head["score"]["kernel"]
        # token classification
        logits = h @ head["classifier"]["kernel"] + head["classifier"]["bias"]
        # qa
        out = h @ head["qa_outputs"]["kernel"] + head["qa_outputs"]["bias"]
        start_logits, end_logits = out[..., 0], out[..., 1]

    PyTorch's ``GPT2ForSequenceClassification.from_pretrained(out_dir,
    from_flax=True)`` reads the same names, but finds the last token as the last
    one that is not ``pad_token_id``: it agrees with mmojax unless a text ends with
    the pad token (a GPT-2 checkpoint padding with ``<|endoftext|>`` and mmojax's
    GPT-2 frame ending every text with it: PyTorch then pools the token before).

    Args:
        model: The model (its config, task and structure).
        params: Its parameters (e.g. trained ones), the structure of ``model.params``.
        out_dir: Destination directory, created if missing; weight files of an
            earlier export there are replaced.
        tokenizer: Optional ``transformers`` tokenizer, saved as it is (given a pad
            token, the model's, if it has none), or ``tokenizers.Tokenizer``,
            wrapped as a ``PreTrainedTokenizerFast`` with the special tokens of its
            family set (see ``mmojax.data.token_frame``) and a post-processor that
            adds them the way mmojax's encoders do.
        label_names: Names of the classes in id order (``id2label``); ``None``
            keeps HF's ``LABEL_0``, ... Not for ``"qa"``.

    Returns:
        ``out_dir`` as a string.

    Raises:
        ValueError: If ``params`` do not have the model's structure and shapes,
            or ``label_names`` has the wrong length or is given for ``"qa"``.
    Examples:
        >>> import tempfile
        >>> from mmojax.models import ModelConfig, build_model, load_pretrained
        >>> config = ModelConfig(arch="bert", hidden=16, layers=1, heads=2, intermediate=32,
        ...                      vocab_size=50, max_length=16)
        >>> model = build_model(config, "classification", num_labels=2)
        >>> out = export_model(model, model.params, tempfile.mkdtemp(), label_names=["neg", "pos"])
        >>> sorted(os.listdir(out))
        ['config.json', 'flax_model.msgpack']
        >>> again, report = load_pretrained(out)
        >>> report.task, report.label_names, report.new
        ('classification', ('neg', 'pos'), ())
    """
    import transformers

    out_dir = os.fspath(out_dir)
    host = swap_held_layout(model.config, _host_params(model, params))  # HF's layout
    config = copy.deepcopy(model.module.config)  # save_pretrained writes to its config
    if label_names is not None:
        names = [str(n) for n in label_names]
        if model.task == "qa":
            raise ValueError("label_names is not used for qa (start and end logits)")
        if len(names) != model.num_labels or len(set(names)) != len(names):
            raise ValueError(
                f"label_names must be {model.num_labels} distinct names, got {list(label_names)}"
            )
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
    architecture = architecture_name(model.config.arch, model.task)
    if model.config.arch == "gpt2":
        flax_class = transformers.FlaxGPT2Model
    else:
        flax_class = getattr(transformers, "Flax" + architecture)
    flax_class(config, _do_init=False).save_pretrained(out_dir, params=host)
    if flax_class.__name__[4:] != architecture:  # GPT-2: name the PyTorch task class
        config.architectures = [architecture]
        config.save_pretrained(out_dir)
    if tokenizer is not None:
        _hf_tokenizer(tokenizer, model).save_pretrained(out_dir)
    logger.info("exported %s (%s) to %s", model.name, architecture, out_dir)
    return out_dir
