"""GLUE SST-2 loader (local TSV directory, or the Hugging Face hub if available)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from ._errors import DataError
from ._io import read_lines, require_file
from ._types import DatasetSplits, TextClassificationSplit

logger = logging.getLogger(__name__)

LABEL_NAMES = ("negative", "positive")
_LABELS = {"0": 0, "1": 1}


def read_glue_tsv(
    path: str | os.PathLike[str], max_rows: int | None = None
) -> TextClassificationSplit:
    """Reads one GLUE-style ``sentence<TAB>label`` file with binary labels.

    The header must contain the columns ``sentence`` and ``label`` (other
    columns are allowed and ignored); every row must have as many
    tab-separated fields as the header.

    Args:
        path: The ``.tsv`` file.
        max_rows: Keep only the first ``max_rows`` rows (all if ``None``).
            The whole file is still validated.

    Returns:
        The sentences and labels.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: On a wrong header, a row with the wrong number of columns,
            a label other than 0/1, a file with no rows, or non-UTF-8 bytes.
    """
    p = require_file(path)
    lines = read_lines(p)
    header = lines[0].split("\t")
    if "sentence" not in header or "label" not in header:
        raise DataError(
            p, 1, f"header must contain columns 'sentence' and 'label', got {lines[0]!r}"
        )
    n_cols, text_col, label_col = len(header), header.index("sentence"), header.index("label")
    texts: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_cols:
            raise DataError(
                p, lineno, f"expected {n_cols} tab-separated columns, got {len(fields)}"
            )
        label = _LABELS.get(fields[label_col].strip())
        if label is None:
            raise DataError(p, lineno, f"label must be 0 or 1, got {fields[label_col]!r}")
        texts.append(fields[text_col])
        labels.append(label)
    if not texts:
        raise DataError(p, 2, "no data rows after the header")
    split = TextClassificationSplit(texts, np.asarray(labels, dtype=np.int32))
    return split.take(max_rows)


def _hub_available() -> bool:
    """Whether the optional Hugging Face ``datasets`` package is importable."""
    return importlib.util.find_spec("datasets") is not None


def _load_from_hub(name: str) -> DatasetSplits[TextClassificationSplit]:
    """Loads SST-2 with the optional ``datasets`` package."""
    import datasets  # optional dependency, imported only when needed

    parts = name.split("/")
    if name in ("sst2", "glue/sst2"):
        ds = datasets.load_dataset("glue", "sst2")
    elif len(parts) == 2 and parts[0] == "glue":
        ds = datasets.load_dataset(parts[0], parts[1])
    else:
        ds = datasets.load_dataset(name)

    def convert(split) -> TextClassificationSplit:
        """Converts one hub split."""
        return TextClassificationSplit(
            list(split["sentence"]), np.asarray(split["label"], dtype=np.int32)
        )

    return DatasetSplits(convert(ds["train"]), convert(ds["validation"]), LABEL_NAMES)


def load_sst2(
    path_or_name: str | os.PathLike[str],
    max_train: int | None = None,
    max_val: int | None = None,
) -> DatasetSplits[TextClassificationSplit]:
    """Loads SST-2 from a GLUE-style directory or, failing that, the hub.

    A local directory must contain ``train.tsv`` and ``dev.tsv``. If
    ``path_or_name`` is not an existing directory and the optional ``datasets``
    package is importable, it is treated as a hub name (``"glue/sst2"`` or
    ``"sst2"`` load GLUE's SST-2).

    Args:
        path_or_name: Directory path, or hub name.
        max_train: Keep at most this many training examples (first rows).
        max_val: Keep at most this many validation examples (first rows).

    Returns:
        Train and validation (GLUE dev) splits; labels 0 = negative, 1 = positive.

    Raises:
        FileNotFoundError: If the directory or one of its files is missing and
            the hub cannot be used.
        DataError: If a file is malformed.
    """
    path = Path(path_or_name)
    if not path.is_dir():
        if not _hub_available():
            raise FileNotFoundError(
                f"SST-2 directory not found: {os.fspath(path_or_name)!r} (expected a folder "
                "with train.tsv and dev.tsv; install 'datasets' to load a hub name instead)"
            )
        logger.info("%s is not a directory; loading it from the Hugging Face hub", path_or_name)
        splits = _load_from_hub(os.fspath(path_or_name))
        return DatasetSplits(
            splits.train.take(max_train), splits.validation.take(max_val), LABEL_NAMES
        )
    train = read_glue_tsv(path / "train.tsv", max_train)
    val = read_glue_tsv(path / "dev.tsv", max_val)
    logger.info("loaded SST-2 from %s: %d train, %d validation", path, len(train), len(val))
    return DatasetSplits(train, val, LABEL_NAMES)
