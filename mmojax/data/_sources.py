"""One entry point for task data: a local directory, a hub name, or a ``datasets`` object.

:func:`load_splits` decides what ``source`` is, in this order:

1. a ``datasets.Dataset`` / ``datasets.DatasetDict``: converted column by column;
2. an existing path: the directory loaders (:func:`load_sst2`, :func:`load_conll`,
   :func:`load_squad`), with their behaviour and errors;
3. a string that looks like a path (starts with ``./``, ``../``, ``/`` or ``~``, is
   absolute, or has a separator and a file-like suffix such as ``data/train.tsv``)
   but does not exist: ``FileNotFoundError``;
4. anything else: a Hugging Face hub name loaded with ``datasets.load_dataset``.

``datasets`` takes seconds to import, so it is imported only for cases 1 and 4,
never by ``import mmojax.data`` nor for a local directory.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._conll import _TAG_RE, load_conll, ner_label_names
from ._squad import load_squad
from ._sst2 import load_sst2
from ._types import DatasetSplits, QAExample, TaggingSplit, TextClassificationSplit

logger = logging.getLogger(__name__)

TASKS = ("sst2", "ner", "qa")

# What a local directory must hold, per task (named in every "use a directory" hint).
_LOCAL_FORM = {
    "sst2": "train.tsv and dev.tsv (GLUE format: a 'sentence' and a 'label' column)",
    "ner": "train.txt and valid.txt (CoNLL format: one 'token ... TAG' line per word)",
    "qa": "train.json and dev.json (SQuAD v1.1 JSON)",
}
# Validation split names tried, in order, when none is given.
_VALIDATION_SPLITS = ("validation", "dev", "test")
_TEXT_COLUMNS = ("sentence", "text")
# Columns each task needs: one of each tuple's names.
_COLUMNS = {
    "sst2": (_TEXT_COLUMNS, ("label",)),
    "ner": (("tokens",), ("ner_tags",)),
    "qa": (("id",), ("question",), ("context",), ("answers",)),
}
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def load_splits(
    task: str,
    source: Any,
    *,
    validation: Any = None,
    max_train: int | None = None,
    max_val: int | None = None,
) -> DatasetSplits:
    """Loads a task's train and validation splits from a directory, the hub or ``datasets``.

    Column mapping for hub names and ``datasets`` objects:

    - ``"sst2"`` (any sentence classification): text in ``sentence`` (or ``text``),
      integer or string labels in ``label``. ``label_names`` are the ``ClassLabel``
      names when the column has them, the sorted distinct strings for string
      labels, else ``"0"``, ``"1"``, ...
    - ``"ner"``: words in ``tokens``, tags in ``ner_tags``: integers of a
      ``Sequence(ClassLabel)`` feature (``label_names`` are its names, as in
      ``conll2003``) or IOB strings (``label_names`` from :func:`ner_label_names`).
    - ``"qa"``: ``id``, ``question``, ``context`` and ``answers`` =
      ``{"text": [...], "answer_start": [...]}`` (the ``squad`` layout).

    A hub name is ``name`` (``"squad"``, ``"conll2003"``), ``name/config``
    (``"glue/sst2"`` loads ``load_dataset("glue", "sst2")``), ``owner/name/config``,
    or ``repo:config`` with an explicit config (``"stanfordnlp/imdb:"`` for none).
    The training split is ``train``; the validation split is ``validation``, else
    ``dev``, else ``test`` (the first one present), unless ``validation`` says.

    Args:
        task: ``"sst2"``, ``"ner"`` or ``"qa"``.
        source: A directory (``str`` or ``os.PathLike``), a hub name, a
            ``datasets.DatasetDict`` or a ``datasets.Dataset`` (the training split).
        validation: For a hub name or a ``DatasetDict``: the name of its validation
            split. For a ``Dataset``: required, the validation ``Dataset``. Not
            allowed with a directory.
        max_train: Keep at most this many training examples (the first ones).
        max_val: Keep at most this many validation examples (the first ones).

    Returns:
        :class:`DatasetSplits` of :class:`TextClassificationSplit` (``"sst2"``),
        :class:`TaggingSplit` (``"ner"``) or lists of :class:`QAExample` (``"qa"``).

    Raises:
        ValueError: On an unknown task, a missing column (the message names it and the
            columns present), a missing split, or labels outside their names.
        FileNotFoundError: If a path-like ``source`` does not exist, a directory lacks
            a file, or the hub has no such data set.
        ConnectionError: If the hub cannot be reached (the message points to the
            local-directory form).
        TypeError: If ``source`` is none of the accepted types.

    Examples:
        >>> import datasets
        >>> from mmojax.data import load_splits
        >>> ds = datasets.DatasetDict({
        ...     "train": datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}),
        ...     "validation": datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}),
        ... })
        >>> splits = load_splits("sst2", ds)
        >>> splits.train.texts, splits.validation.labels.tolist(), splits.label_names
        (['good', 'bad'], [1], ('0', '1'))
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(source)))
        if path.exists():
            if validation is not None:
                raise ValueError("validation= applies to hub names and datasets objects only")
            return _load_local(task, path, max_train, max_val)
        if _looks_like_path(os.fspath(source)) or not isinstance(source, str):
            raise FileNotFoundError(
                f"no such directory: {os.fspath(source)!r} (a {task} data directory holds "
                f"{_LOCAL_FORM[task]})"
            )
        return _load_hub(task, source, validation, max_train, max_val)
    train, val = _dataset_pair(source, validation)
    return _convert(task, train, val, max_train, max_val)


def _looks_like_path(text: str) -> bool:
    """Whether a non-existing ``text`` was meant as a path rather than a hub name."""
    seps = tuple({"/", os.sep})
    if text.startswith(("~", "./", "../", *seps)) or text in (".", "..") or os.path.isabs(text):
        return True
    return any(s in text for s in seps) and bool(_FILE_SUFFIX.search(text))


def _load_local(task: str, path: Path, max_train: int | None, max_val: int | None) -> DatasetSplits:
    """The directory loaders, with the limits applied to every task."""
    if not path.is_dir():
        raise NotADirectoryError(
            f"{os.fspath(path)!r} is a file; a {task} data directory holds {_LOCAL_FORM[task]}"
        )
    if task == "sst2":
        return load_sst2(path, max_train=max_train, max_val=max_val)
    splits = load_conll(path) if task == "ner" else load_squad(path)
    return DatasetSplits(
        _take(splits.train, max_train), _take(splits.validation, max_val), splits.label_names
    )


def _take(split: Any, n: int | None) -> Any:
    """The first ``n`` examples of a loaded split (all of them if ``n`` is ``None``)."""
    if n is None:
        return split
    if isinstance(split, TaggingSplit):
        return TaggingSplit(split.sentences[:n], split.tags[:n])
    if isinstance(split, TextClassificationSplit):
        return split.take(n)
    return split[:n]


def _hub_args(name: str) -> tuple[str, str | None]:
    """``(path, config)`` for ``datasets.load_dataset`` from a hub name."""
    if ":" in name:
        repo, config = name.split(":", 1)
        return repo, config or None
    parts = name.split("/")
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return name, None


def _load_hub(
    task: str, name: str, validation: Any, max_train: int | None, max_val: int | None
) -> DatasetSplits:
    """Loads a hub name with ``datasets.load_dataset``, turning failures into clear errors."""
    import datasets  # heavy: imported only when a hub name is used

    repo, config = _hub_args(name)
    local = f"pass a local directory instead (--data PATH) that holds {_LOCAL_FORM[task]}"
    logger.info("%r is not a local path; loading it from the Hugging Face hub", name)
    try:
        loaded = datasets.load_dataset(repo, config)
    except (ConnectionError, TimeoutError) as err:
        raise ConnectionError(
            f"could not reach the Hugging Face hub to load {name!r} (offline? "
            f"{type(err).__name__}: {err}); {local}"
        ) from err
    except FileNotFoundError as err:  # datasets' DatasetNotFoundError / DataFilesNotFoundError
        raise FileNotFoundError(
            f"data set {name!r} not found on the Hugging Face hub "
            f"(load_dataset({repo!r}, {config!r}): {err}); {local}"
        ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        raise TypeError(f"load_dataset({repo!r}, {config!r}) returned {type(loaded).__name__}")
    train, val = _dataset_pair(loaded, validation)
    return _convert(task, train, val, max_train, max_val)


def _dataset_pair(source: Any, validation: Any) -> tuple[Any, Any]:
    """The train and validation ``datasets.Dataset`` of a ``DatasetDict`` or ``Dataset``."""
    import datasets  # the caller already has it imported: it passed a datasets object

    if isinstance(source, datasets.DatasetDict):
        splits = list(source)
        if "train" not in source:
            raise ValueError(f"the DatasetDict has no 'train' split; splits present: {splits}")
        if isinstance(validation, datasets.Dataset):
            return source["train"], validation
        if validation is not None and not isinstance(validation, str):
            raise TypeError(f"validation must be a split name, got {type(validation).__name__}")
        names = (validation,) if validation is not None else _VALIDATION_SPLITS
        for split in names:
            if split in source:
                return source["train"], source[split]
        raise ValueError(
            f"the DatasetDict has no validation split (looked for {list(names)}); "
            f"splits present: {splits}; pass validation=NAME"
        )
    if isinstance(source, datasets.Dataset):
        if not isinstance(validation, datasets.Dataset):
            raise ValueError(
                "a bare datasets.Dataset is only the training split: pass validation=<the "
                "validation Dataset>, or a DatasetDict with 'train' and 'validation' splits"
            )
        return source, validation
    raise TypeError(
        "source must be a directory, a hub name, a datasets.Dataset or a datasets.DatasetDict, "
        f"got {type(source).__name__}"
    )


def _convert(
    task: str, train: Any, val: Any, max_train: int | None, max_val: int | None
) -> DatasetSplits:
    """Converts two ``datasets.Dataset`` splits to mmojax's containers."""
    train = train if max_train is None else train.select(range(min(max_train, len(train))))
    val = val if max_val is None else val.select(range(min(max_val, len(val))))
    for split, ds in (("train", train), ("validation", val)):
        _require_columns(task, split, ds)
    if task == "sst2":
        return _classification(train, val)
    if task == "ner":
        return _tagging(train, val)
    return DatasetSplits(_qa_examples(train, "train"), _qa_examples(val, "validation"))


def _require_columns(task: str, split: str, ds: Any) -> None:
    """Raises a ``ValueError`` naming the first missing column and the columns present."""
    for options in _COLUMNS[task]:
        if not any(c in ds.column_names for c in options):
            wanted = " or ".join(repr(c) for c in options)
            raise ValueError(
                f"{task} data: the {split} split has no column {wanted}; "
                f"columns present: {ds.column_names}"
            )


def _class_label_names(feature: Any) -> tuple[str, ...] | None:
    """The names of a ``ClassLabel`` feature (``None`` for any other feature)."""
    names = getattr(feature, "names", None)
    return tuple(str(n) for n in names) if names is not None else None


def _classification(train: Any, val: Any) -> DatasetSplits[TextClassificationSplit]:
    """Sentence-classification splits from ``sentence``/``text`` and ``label`` columns."""
    text_col = next(c for c in _TEXT_COLUMNS if c in train.column_names)
    val_text_col = next(c for c in _TEXT_COLUMNS if c in val.column_names)
    raw = {"train": list(train["label"]), "validation": list(val["label"])}
    names = _class_label_names(train.features["label"])
    if names is None and any(isinstance(v, str) for vs in raw.values() for v in vs):
        names = tuple(sorted({str(v) for vs in raw.values() for v in vs}))
        index = {n: i for i, n in enumerate(names)}
        ids = {s: [index[str(v)] for v in vs] for s, vs in raw.items()}
    else:
        ids = {s: [int(v) for v in vs] for s, vs in raw.items()}
        if names is None:
            top = max((max(v, default=0) for v in ids.values()), default=0)
            names = tuple(str(i) for i in range(top + 1))
    for split, values in ids.items():
        bad = [v for v in values if not 0 <= v < len(names)]
        if bad:
            raise ValueError(
                f"sst2 data: the {split} split has label {bad[0]} outside 0..{len(names) - 1} "
                f"(names {names}); a split without labels (GLUE's test has -1) cannot be used"
            )
    return DatasetSplits(
        TextClassificationSplit(list(train[text_col]), np.asarray(ids["train"], np.int32)),
        TextClassificationSplit(list(val[val_text_col]), np.asarray(ids["validation"], np.int32)),
        names,
    )


def _tagging(train: Any, val: Any) -> DatasetSplits[TaggingSplit]:
    """NER splits from ``tokens`` and ``ner_tags`` columns (ClassLabel ids or IOB strings)."""
    names = _class_label_names(getattr(train.features["ner_tags"], "feature", None))
    splits = []
    for split, ds in (("train", train), ("validation", val)):
        tags: list[list[str]] = []
        for row, seq in enumerate(ds["ner_tags"]):
            if names is not None:
                tags.append([names[int(t)] for t in seq])
            elif all(isinstance(t, str) for t in seq):
                tags.append(list(seq))
            else:
                raise ValueError(
                    f"ner data: the {split} split's ner_tags are integers without tag names "
                    f"(row {row}); cast the column to a Sequence of datasets.ClassLabel(names=...)"
                )
        splits.append(TaggingSplit([list(words) for words in ds["tokens"]], tags))
    bad = sorted({t for s in splits for seq in s.tags for t in seq if not _TAG_RE.match(t)})
    if bad:
        raise ValueError(f"ner data: tags must be 'O' or start with 'B-'/'I-', got {bad[:5]}")
    if names is None:
        names = ner_label_names(splits[0].tags + splits[1].tags)
    return DatasetSplits(splits[0], splits[1], names)


def _qa_examples(ds: Any, split: str) -> list[QAExample]:
    """SQuAD-layout rows as :class:`QAExample`, with answer offsets checked."""
    examples: list[QAExample] = []
    for row, (qid, question, context, answers) in enumerate(
        zip(ds["id"], ds["question"], ds["context"], ds["answers"])
    ):
        if not isinstance(answers, dict) or not {"text", "answer_start"} <= set(answers):
            raise ValueError(
                f"qa data: the {split} split's answers (row {row}) must be "
                f"{{'text': [...], 'answer_start': [...]}}, got {answers!r:.80}"
            )
        texts: Sequence[str] = answers["text"]
        starts = tuple(int(s) for s in answers["answer_start"])
        if len(texts) != len(starts) or not all(
            0 <= s <= len(context) - len(t) for t, s in zip(texts, starts)
        ):
            raise ValueError(
                f"qa data: the {split} split's row {row} (id {qid!r}) has answer offsets "
                f"outside its context or a text/answer_start count mismatch"
            )
        examples.append(QAExample(str(qid), context, question, tuple(texts), starts))
    return examples
