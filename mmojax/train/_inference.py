"""Using trained models: export a run, label new text, score a data split.

Everything here works on exported Hugging Face checkpoints (``save_pretrained``
directories with the task head and the tokenizer), so the same code serves a
run's ``export/`` folder and models exported elsewhere. A run that has no
export yet (stopped early, or trained with ``export=False``) is exported from
its latest checkpoint by :func:`export_workdir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mmojax import data as mdata
from mmojax import models as mmodels
from mmojax.optim._cohort import member_name
from mmojax.train import _checkpoint, _rundir, _step, _tasks
from mmojax.train._loop import TASK_FILE, export_run, own_tokenizer_path
from mmojax.train._models import build_run_models, run_params

log = logging.getLogger(__name__)

_DATA_TASK = {
    "classification": ("sst2", "synthetic"),
    "token_classification": ("ner",),
    "qa": ("qa",),
}


@dataclasses.dataclass(frozen=True)
class _RunTask:
    """The parts of :class:`~mmojax.train._tasks.TaskData` that building models needs."""

    name: str
    model_task: str
    num_labels: int
    max_length: int
    label_names: tuple[str, ...]
    tokenizer: Any
    tokenizers: Mapping[str, Any]

    def vocab_size(self, model: str) -> int:
        return self.tokenizers.get(model, self.tokenizer).get_vocab_size()

    def pad_id(self, model: str) -> int:
        return mdata.token_frame(self.tokenizers.get(model, self.tokenizer)).pad


def export_workdir(workdir: str, out: str | None = None) -> dict[str, str]:
    """Exports the models of the run in ``workdir`` from its latest checkpoint.

    Args:
      workdir: a run directory (``config.json``, ``task.json``, ``checkpoints/``).
      out: where the checkpoints go (default ``workdir/export``); one folder per
        model, ``out/<model>/<i>`` for member ``i`` of a cohort.

    Returns:
      ``{model: directory}``, a cohort's members as ``bert/0`` ...

    Raises:
      RunDirError / FileNotFoundError: ``workdir`` holds no run, or no ``task.json``
        (a run made before mmojax could export).
      CheckpointError: no checkpoint can be restored.
    """
    config = _rundir.read_config(workdir)
    info_path = os.path.join(workdir, TASK_FILE)
    if not os.path.exists(info_path):
        raise FileNotFoundError(
            f"{info_path} not found: the run in {workdir} predates exports; train it again"
        )
    with open(info_path) as f:
        info = json.load(f)
    shared = os.path.join(workdir, "tokenizer.json")
    tokenizer = mdata.load_tokenizer(shared) if os.path.exists(shared) else None
    own = {
        m: mdata.load_tokenizer(own_tokenizer_path(workdir, m)) for m in config.tokenizer_sources()
    }
    task = _RunTask(
        info["task"],
        info["model_task"],
        int(info["num_labels"]),
        int(info["max_length"]),
        tuple(info["label_names"]),
        tokenizer,
        {m: own.get(m, tokenizer) for m in config.models},
    )
    built = build_run_models(config, task)
    params = run_params(config, built)
    template = _step.init_train_state(params, config.optimizer(total_updates=1000), config.seed)
    ckpt = _checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        ckpt.check_layout(any(m.config.arch == "gpt2" for m in built.values()))
        state, _, step = ckpt.restore(template)
    finally:
        ckpt.close()
    log.info("restored update %d of %s", step // config.gradient_accumulation_steps, workdir)
    return export_run(workdir, built, state.params, task, out)


def model_directories(source: str) -> dict[str, str]:
    """``{model: exported checkpoint directory}`` found at ``source``.

    ``source`` is a run directory (its ``export/`` folder is used, exporting
    it first if the run has none), a folder of exported models, or one
    exported model (a folder with ``config.json``). In a folder of exported
    models, ``<model>/config.json`` is the model ``<model>`` and
    ``<model>/<i>/config.json`` member ``i`` of cohort ``<model>``, named
    ``<model>/<i>``; the members come in the order of ``i``.
    """
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source} is not a directory")
    is_run = os.path.isfile(os.path.join(source, TASK_FILE)) or os.path.isdir(
        os.path.join(source, "checkpoints")
    )
    if not is_run and os.path.isfile(os.path.join(source, "config.json")):
        return {os.path.basename(source): source}
    if is_run:
        export = os.path.join(source, "export")
        if not os.path.isdir(export):
            export_workdir(source)
        source = export
    dirs = _exported(source)
    if not dirs:
        raise FileNotFoundError(
            f"{source} holds no exported model (no <model>/config.json) and is not a run directory"
        )
    return dirs


def _exported(folder: str) -> dict[str, str]:
    """``{name: directory}`` of the exported models in ``folder``: ``<model>`` and,
    for a cohort, ``<model>/<i>`` (see :func:`model_directories`)."""
    dirs = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            dirs[name] = path
        elif os.path.isdir(path):
            slots = [e for e in os.listdir(path) if e.isdigit()]
            for slot in sorted(slots, key=int):
                if os.path.isfile(os.path.join(path, slot, "config.json")):
                    dirs[member_name(name, int(slot))] = os.path.join(path, slot)
    return dirs


@dataclasses.dataclass(frozen=True)
class Predictor:
    """One exported model, ready to run: its model, parameters, tokenizer and labels."""

    name: str
    model: mmodels.Model
    tokenizer: Any
    label_names: tuple[str, ...]

    @classmethod
    def load(cls, name: str, path: str) -> Predictor:
        model, report = mmodels.load_pretrained(path, name=name)
        if report.new:
            raise ValueError(
                f"{path} has no trained {model.task} head ({len(report.new)} parameters would be "
                "new); predict and evaluate need exported task models (mmojax export)"
            )
        names = report.label_names or tuple(str(i) for i in range(model.num_labels))
        return cls(name, model, mdata.load_checkpoint_tokenizer(path), tuple(names))

    def outputs(self, encoded: mdata.EncodedSplit, batch_size: int = 64):
        """``(batches, outputs)`` of the model in eval mode over ``encoded``."""
        apply = jax.jit(lambda p, b: self.model.apply_fn(p, b, train=False))
        batches, outs = [], []
        for batch in mdata.BatchIterator.for_eval(encoded, batch_size):
            batches.append(batch)
            outs.append(jax.device_get(apply(self.model.params, batch)))
        return batches, outs


def load_predictors(source: str) -> dict[str, Predictor]:
    """:class:`Predictor` s of every model at ``source`` (see :func:`model_directories`)."""
    out = {n: Predictor.load(n, d) for n, d in model_directories(source).items()}
    tasks = {p.model.task for p in out.values()}
    if len(tasks) > 1:
        raise ValueError(f"the models at {source} have different tasks: {sorted(tasks)}")
    labels = {p.label_names for p in out.values()}
    if len(labels) > 1 and tasks != {"qa"}:
        raise ValueError(f"the models at {source} have different label names: {sorted(labels)}")
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def classify(predictors: Mapping[str, Predictor], texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``{model: class probabilities [N, C]}`` plus ``"ensemble"`` (their mean)."""
    split = mdata.TextClassificationSplit(list(texts), [0] * len(texts))
    out = {}
    for name, p in predictors.items():
        encoded = mdata.encode_classification(p.tokenizer, split, buckets=_buckets(p))
        batches, outs = p.outputs(encoded)
        probs = np.zeros((len(texts), p.model.num_labels))
        for b, o in zip(batches, outs, strict=True):
            real = b["mask"] > 0
            probs[b["example_index"][real]] = _softmax(o)[real]
        out[name] = probs
    out["ensemble"] = np.mean([out[n] for n in predictors], axis=0)
    return out


def tag(
    predictors: Mapping[str, Predictor], sentences: Sequence[Sequence[str]]
) -> dict[str, list[np.ndarray]]:
    """``{model: per sentence [words, C] tag probabilities}`` plus ``"ensemble"``.

    Each word's probabilities are the model's at the word's first sub-token
    (words cut off by truncation get a uniform distribution).
    """
    out = {}
    for name, p in predictors.items():
        placeholder = p.label_names[0]
        split = mdata.TaggingSplit(
            [list(s) for s in sentences], [[placeholder] * len(s) for s in sentences]
        )
        encoded = mdata.encode_ner(p.tokenizer, split, p.label_names, buckets=_buckets(p))
        batches, outs = p.outputs(encoded)
        c = len(p.label_names)
        words = [np.full((len(s), c), 1.0 / c) for s in sentences]
        for b, o in zip(batches, outs, strict=True):
            probs = _softmax(o)
            for row, idx in enumerate(b["example_index"]):
                if idx < 0:
                    continue
                starts = encoded.alignment.word_starts[idx]
                kept = starts >= 0
                words[idx][kept] = probs[row, starts[kept]]
        out[name] = words
    out["ensemble"] = [
        np.mean([out[n][i] for n in predictors], axis=0) for i in range(len(sentences))
    ]
    return out


def answer(
    predictors: Mapping[str, Predictor], examples: Sequence[mdata.QAExample]
) -> dict[str, list[str]]:
    """``{model: answer text per example}`` plus ``"ensemble"`` (the most frequent answer).

    Ties in the ensemble go to the answer of the first model (in name order).
    """
    out = {}
    for name, p in predictors.items():
        encoded = mdata.encode_qa(p.tokenizer, list(examples), buckets=_buckets(p, qa=True))
        batches, outs = p.outputs(encoded)
        texts = [""] * len(examples)
        for b, (start, end) in zip(batches, outs, strict=True):
            real = b["example_index"][b["example_index"] >= 0]
            preds = mdata.qa_predictions_from_logits(encoded, b["example_index"], start, end)
            for idx, text in zip(real, preds, strict=True):
                texts[idx] = text
        out[name] = texts
    names = list(predictors)
    out["ensemble"] = [
        Counter(out[n][i] for n in names).most_common(1)[0][0]
        if len({out[n][i] for n in names}) < len(names)
        else out[names[0]][i]
        for i in range(len(examples))
    ]
    return out


def _buckets(p: Predictor, qa: bool = False) -> tuple[int, ...]:
    """Length buckets that fit the model's position table."""
    default = mdata.DEFAULT_QA_BUCKETS if qa else mdata.DEFAULT_BUCKETS
    return tuple(b for b in default if b <= p.model.config.max_length) or (
        p.model.config.max_length,
    )


def evaluate(
    predictors: Mapping[str, Predictor],
    task: str,
    data: str,
    *,
    max_examples: int | None = None,
    split: str = "validation",
) -> dict[str, dict[str, float]]:
    """Scores every model and their ensemble on a data split.

    Args:
      predictors: the models (see :func:`load_predictors`).
      task: ``"sst2"``, ``"ner"`` or ``"qa"`` (``"synthetic"`` needs no ``data``).
      data: the data directory (as ``mmojax train --data``).
      max_examples: score only the first N examples.
      split: ``"validation"`` or ``"train"``.

    Returns:
      ``{model or "ensemble": {metric: value}}``: accuracy (classification),
      entity f1/precision/recall (NER), exact_match and f1 (QA).
    """
    if split not in ("validation", "train"):
        raise ValueError(f"split must be 'validation' or 'train', got {split!r}")
    model_task = next(iter(predictors.values())).model.task
    if task not in _DATA_TASK[model_task]:
        raise ValueError(
            f"the models are {model_task} models; they cannot be scored on task {task!r} "
            f"(use {' or '.join(_DATA_TASK[model_task])})"
        )
    limits = (max_examples, None) if split == "train" else (None, max_examples)
    raw = _tasks.load_raw(task, data, 0, *limits)
    part = raw.validation if split == "validation" else raw.train
    if model_task == "classification":
        probs = classify(predictors, part.texts)
        gold = np.asarray(part.labels)
        return {n: {"accuracy": float(np.mean(p.argmax(-1) == gold))} for n, p in probs.items()}
    if model_task == "token_classification":
        probs = tag(predictors, part.sentences)
        out = {}
        names = next(iter(predictors.values())).label_names
        for n, sentences in probs.items():
            pred = [[names[i] for i in s.argmax(-1)] for s in sentences]
            scores = mdata.entity_f1([list(t) for t in part.tags], pred)
            out[n] = {"f1": scores.f1, "precision": scores.precision, "recall": scores.recall}
        return out
    answers = answer(predictors, part)
    refs = [list(ex.answers) for ex in part]
    return {n: mdata.squad_exact_match_and_f1(a, refs) for n, a in answers.items()}
