"""Tasks: data preparation, losses and host-side evaluation for each task."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmojax import data as mdata
from mmojax import models as mmodels

log = logging.getLogger(__name__)

TASKS = ("synthetic", "sst2", "ner", "qa")
MODEL_TASK = {
    "synthetic": "classification",
    "sst2": "classification",
    "ner": "token_classification",
    "qa": "qa",
}
MAIN_METRIC = {"synthetic": "accuracy", "sst2": "accuracy", "ner": "f1", "qa": "f1"}
_DISPLAY_NAME = {
    "synthetic": "the synthetic sentiment set",
    "sst2": "SST-2",
    "ner": "CoNLL-2003",
    "qa": "SQuAD",
}


@dataclasses.dataclass(frozen=True)
class TaskData:
    """Everything a run needs to know about its data.

    Attributes:
      name: the task (one of :data:`TASKS`).
      model_task: the head the models need.
      num_labels: classes (classification) or tags (NER); 2 for QA.
      train, validation: the encoded splits.
      validation_raw: the raw validation split (gold tags / answers).
      tokenizer: the locally trained tokenizer (``None`` when every model
        brings its own).
      main_metric: the metric that "accuracy" means for this task.
      label_names: the class (or tag) names, where the data has them.
      tokenizers: ``{model: tokenizer}`` of every model; when they differ,
        ``train`` and ``validation`` are paired splits (see
        :func:`mmojax.data.pair_splits`) holding each model's own tokens.
    """

    name: str
    model_task: str
    num_labels: int
    train: mdata.EncodedSplit
    validation: mdata.EncodedSplit
    validation_raw: Any
    tokenizer: Any
    main_metric: str
    label_names: tuple[str, ...] = ()
    tokenizers: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return self.train.buckets[-1]

    def vocab_size(self, model: str) -> int:
        """Vocabulary size of ``model``'s tokenizer."""
        return self.tokenizers.get(model, self.tokenizer).get_vocab_size()

    def pad_id(self, model: str) -> int:
        """Padding id of ``model``'s tokenizer."""
        return mdata.token_frame(self.tokenizers.get(model, self.tokenizer)).pad


def holdout_split(raw, fraction: float, seed: int):
    """Splits a seeded tail of the training split off as the validation split."""
    train = raw.train
    n = len(train)
    order = np.random.default_rng([seed, 7919]).permutation(n)
    cut = n - max(1, int(round(fraction * n)))
    keep, held = np.sort(order[:cut]), np.sort(order[cut:])
    if isinstance(train, list):
        return mdata.DatasetSplits(
            [train[i] for i in keep], [train[i] for i in held], raw.label_names
        )
    if hasattr(train, "texts"):
        pick = lambda idx: dataclasses.replace(  # noqa: E731
            train, texts=[train.texts[i] for i in idx], labels=[train.labels[i] for i in idx]
        )
    else:
        pick = lambda idx: dataclasses.replace(  # noqa: E731
            train, sentences=[train.sentences[i] for i in idx], tags=[train.tags[i] for i in idx]
        )
    return mdata.DatasetSplits(pick(keep), pick(held), raw.label_names)


def load_raw(task: str, data_path: Any, seed: int, max_train, max_val):
    """The raw splits of a task (synthetic: generated from ``seed``; else ``load_splits``)."""
    if task == "synthetic":
        n_train = 500 if max_train is None else max_train
        n_val = 100 if max_val is None else max_val
        return mdata.make_synthetic_sentiment(n_train, n_val, seed=seed)
    if data_path is None:
        raise ValueError(
            f"task {task!r} needs --data: a local data directory, a Hugging Face hub data set "
            "name (e.g. glue/sst2, conll2003, squad; needs the hub), or in Python a "
            "datasets.DatasetDict"
        )
    return mdata.load_splits(task, data_path, max_train=max_train, max_val=max_val)


def _tokenizer_texts(task: str, raw) -> list[str]:
    if task == "ner":
        return [" ".join(words) for words in raw.train.sentences]
    if task == "qa":
        return [t for ex in raw.train for t in (ex.question, ex.context)]
    return list(raw.train.texts)


def prepare_task(
    task: str,
    data_path: Any = None,
    *,
    seed: int = 0,
    vocab_size: int = 8000,
    max_train: int | None = None,
    max_val: int | None = None,
    tokenizer_path: str | os.PathLike[str] | None = None,
    buckets: Sequence[int] | None = None,
    holdout: float = 0.0,
    models: Sequence[str] = (),
    model_tokenizers: Mapping[str, Any] | None = None,
    max_length: int | None = None,
) -> TaskData:
    """Loads, tokenises and encodes a task's data.

    ``data_path`` is a local data directory, a Hugging Face hub name (loaded
    with ``datasets.load_dataset`` where a hub is reachable) or a
    ``datasets.DatasetDict``; see :func:`mmojax.data.load_splits`. The shared
    tokenizer is trained on the training split (nothing is downloaded), or
    loaded from ``tokenizer_path`` when that file exists (a resumed run reuses
    the tokenizer it saved). Models named in
    ``model_tokenizers`` (a ``tokenizers.Tokenizer`` or a checkpoint path)
    tokenize the same examples with their own tokenizer instead; the splits are
    then paired (one row per example, each model's tokens under its name).
    ``max_length`` caps the length buckets (inputs are truncated to it), e.g.
    at the fewest positions a checkpoint among the models has.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if max_length is not None:
        buckets = _capped(buckets or _DEFAULT_BUCKETS[MODEL_TASK[task]], max_length)
    if isinstance(data_path, os.PathLike):
        data_path = os.fspath(data_path)
    raw = load_raw(task, data_path, seed, max_train, max_val)
    if holdout:
        raw = holdout_split(raw, holdout, seed)
    log.info(
        "loaded %s: %d train / %d %s examples",
        _DISPLAY_NAME[task],
        len(raw.train),
        len(raw.validation),
        "held-out" if holdout else "validation",
    )
    own = {
        m: (t if not isinstance(t, (str, os.PathLike)) else mdata.load_checkpoint_tokenizer(t))
        for m, t in (model_tokenizers or {}).items()
    }
    tokenizer = None
    if not models or any(m not in own for m in models):
        if tokenizer_path is not None and os.path.exists(tokenizer_path):
            tokenizer = mdata.load_tokenizer(tokenizer_path)
        else:
            tokenizer = mdata.train_tokenizer(
                _tokenizer_texts(task, raw), vocab_size=vocab_size, lowercase=task != "ner"
            )
    tokenizers = {m: own.get(m, tokenizer) for m in models}
    # Encode once per distinct tokenizer; pair only when the models' tokens differ.
    distinct = {id(t): t for t in tokenizers.values()} or {id(tokenizer): tokenizer}
    encoded = {key: _encode(task, tok, raw, buckets) for key, tok in distinct.items()}
    if len(encoded) == 1:
        train, val = next(iter(encoded.values()))
    else:
        train = mdata.pair_splits({m: encoded[id(t)][0] for m, t in tokenizers.items()})
        val = mdata.pair_splits({m: encoded[id(t)][1] for m, t in tokenizers.items()})
    num_labels = len(raw.label_names) if task != "qa" and raw.label_names else 2
    val_raw = raw.validation
    return TaskData(
        task,
        MODEL_TASK[task],
        num_labels,
        train,
        val,
        val_raw,
        tokenizer,
        MAIN_METRIC[task],
        tuple(getattr(raw, "label_names", ()) or ()),
        tokenizers,
    )


_DEFAULT_BUCKETS = {
    "classification": mdata.DEFAULT_BUCKETS,
    "token_classification": (16, 32, 64, 128, 256),
    "qa": mdata.DEFAULT_QA_BUCKETS,
}


def _capped(buckets: Sequence[int], limit: int) -> tuple[int, ...]:
    """``buckets`` up to ``limit``, with ``limit`` itself when a bucket was longer."""
    kept = tuple(b for b in buckets if b <= limit)
    return kept if len(kept) == len(tuple(buckets)) else (*kept, limit)


def _encode(task: str, tokenizer, raw, buckets: Sequence[int] | None):
    """``(train, validation)`` encoded splits of ``raw`` with ``tokenizer``."""
    if task == "ner":
        kw = {"buckets": tuple(buckets) if buckets else _DEFAULT_BUCKETS["token_classification"]}
        return tuple(
            mdata.encode_ner(tokenizer, split, raw.label_names, **kw)
            for split in (raw.train, raw.validation)
        )
    kw = {} if buckets is None else {"buckets": tuple(buckets)}
    encode = mdata.encode_classification if task in ("synthetic", "sst2") else mdata.encode_qa
    return tuple(encode(tokenizer, split, **kw) for split in (raw.train, raw.validation))


def majority_baseline(task: TaskData) -> tuple[float, str] | None:
    """``(accuracy, label)`` of always predicting the validation split's most frequent class.

    ``None`` for tasks without a single class per example (NER, QA).
    """
    if task.model_task != "classification":
        return None
    labels = np.asarray(task.validation_raw.labels)
    if labels.size == 0:
        return None
    values, counts = np.unique(labels, return_counts=True)
    best = int(np.argmax(counts))
    label = str(values[best])
    if 0 <= int(values[best]) < len(task.label_names):
        label = str(task.label_names[int(values[best])])
    return float(counts[best] / labels.size), label


def loss_fn(model_task: str) -> Callable:
    """``(outputs, batch) -> (loss, metrics)`` for a model task (training)."""
    if model_task == "classification":
        return lambda logits, b: mmodels.classification_loss(logits, b["labels"], b.get("mask"))
    if model_task == "token_classification":
        return lambda logits, b: mmodels.token_classification_loss(logits, b["labels"])
    if model_task == "qa":
        return lambda out, b: mmodels.qa_loss(
            out[0], out[1], b["start_positions"], b["end_positions"]
        )
    raise ValueError(f"unknown model task {model_task!r}")


def _ce(logits, labels):
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    safe = jnp.clip(labels, 0, logits.shape[-1] - 1)
    return -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]


def eval_outputs_fn(model_task: str) -> Callable:
    """``(outputs, batch) -> {name: array}``: what the host evaluator needs."""
    if model_task == "classification":
        return lambda logits, b: {
            "pred": jnp.argmax(logits, -1),
            "probs": jax.nn.softmax(logits.astype(jnp.float32), -1),
            "loss": _ce(logits, b["labels"]),
        }
    if model_task == "token_classification":

        def ner(logits, b):
            valid = b["labels"] != mmodels.IGNORE_INDEX
            return {
                "pred": jnp.argmax(logits, -1),
                "loss_sum": jnp.sum(jnp.where(valid, _ce(logits, b["labels"]), 0.0), -1),
                "tokens": jnp.sum(valid, -1),
            }

        return ner
    if model_task == "qa":
        return lambda out, b: {
            "start_logits": out[0],
            "end_logits": out[1],
            "loss": 0.5 * (_ce(out[0], b["start_positions"]) + _ce(out[1], b["end_positions"])),
        }
    raise ValueError(f"unknown model task {model_task!r}")


class Evaluator:
    """Accumulates one model's eval outputs over a split and scores them exactly."""

    def __init__(self, task: TaskData, model: str | None = None):
        self.task = task
        # The model's own encoding of the validation split (its tokens' alignment).
        self.split = task.validation if model is None else mdata.model_split(task.validation, model)
        self.parts: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def add(self, batch: Mapping[str, np.ndarray], outputs: Mapping[str, Any]) -> None:
        self.parts.append((dict(batch), {k: np.asarray(v) for k, v in outputs.items()}))

    def probabilities(self) -> np.ndarray | None:
        """Class probabilities of the real rows, in split order (classification only)."""
        if self.task.model_task != "classification":
            return None
        parts = [o["probs"][b["mask"] > 0] for b, o in self.parts]
        return np.concatenate(parts) if parts else None

    def result(self) -> dict[str, float]:
        kind = self.task.model_task
        if kind == "classification":
            correct = total = loss = 0.0
            for b, o in self.parts:
                m = b["mask"]
                correct += float(np.sum((o["pred"] == b["labels"]) * m))
                loss += float(np.sum(o["loss"] * m))
                total += float(np.sum(m))
            return {"accuracy": correct / total, "loss": loss / total}
        if kind == "token_classification":
            true, pred, loss, tokens = [], [], 0.0, 0.0
            gold = self.task.validation_raw.tags
            for b, o in self.parts:
                real = b["mask"] > 0
                pred.extend(
                    mdata.ner_predictions_to_tags(self.split, b["example_index"], o["pred"])
                )
                true.extend(list(gold[i]) for i in b["example_index"][real])
                loss += float(np.sum(o["loss_sum"][real]))
                tokens += float(np.sum(o["tokens"][real]))
            scores = mdata.entity_f1(true, pred)
            return {
                "f1": scores.f1,
                "precision": scores.precision,
                "recall": scores.recall,
                "loss": loss / max(tokens, 1.0),
            }
        preds, refs, loss, total = [], [], 0.0, 0.0
        examples = self.task.validation_raw
        for b, o in self.parts:
            real = b["mask"] > 0
            preds.extend(
                mdata.qa_predictions_from_logits(
                    self.split, b["example_index"], o["start_logits"], o["end_logits"]
                )
            )
            refs.extend(list(examples[i].answers) for i in b["example_index"][real])
            loss += float(np.sum(o["loss"][real]))
            total += float(np.sum(real))
        scores = mdata.squad_exact_match_and_f1(preds, refs)
        return {**scores, "loss": loss / total}
