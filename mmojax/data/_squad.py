"""SQuAD v1.1 JSON loader."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ._errors import DataError
from ._io import read_text, require_file
from ._types import DatasetSplits, QAExample

logger = logging.getLogger(__name__)


def _get(path: Path, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Returns ``obj[key]``, checking that it exists and has the expected type."""
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(path, None, f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise DataError(path, None, f"{where}.{key}: expected {expected}, got {value!r:.60}")
    return value


def _parse_qa(path: Path, qa: Any, context: str, where: str) -> tuple[QAExample, int]:
    """Parses one question; also returns how many of its answers are misaligned."""
    answers: list[str] = []
    starts: list[int] = []
    misaligned = 0
    for k, ans in enumerate(_get(path, qa, "answers", list, where)):
        here = f"{where}.answers[{k}]"
        text = _get(path, ans, "text", str, here)
        start = _get(path, ans, "answer_start", int, here)
        if not 0 <= start <= len(context) - len(text):
            raise DataError(path, None, f"{here}: answer_start {start} is outside the context")
        misaligned += context[start : start + len(text)] != text
        answers.append(text)
        starts.append(start)
    example = QAExample(
        id=str(_get(path, qa, "id", (str, int), where)),
        context=context,
        question=_get(path, qa, "question", str, where),
        answers=tuple(answers),
        answer_starts=tuple(starts),
    )
    return example, misaligned


def read_squad_file(path: str | os.PathLike[str]) -> list[QAExample]:
    """Reads one SQuAD v1.1 JSON file (``{"data": [{"paragraphs": [...]}]}``).

    Args:
        path: The JSON file.

    Returns:
        One example per question, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: On invalid JSON (with its line number), a missing or
            mistyped field (with its JSON location, e.g.
            ``data[0].paragraphs[2].qas[1]``), an answer offset outside its
            context, or non-UTF-8 bytes.
    """
    p = require_file(path)
    try:
        doc = json.loads(read_text(p))
    except json.JSONDecodeError as err:
        raise DataError(p, err.lineno, f"malformed JSON: {err.msg} (column {err.colno})") from None
    examples: list[QAExample] = []
    misaligned = 0
    for i, article in enumerate(_get(p, doc, "data", list, "top level")):
        for j, para in enumerate(_get(p, article, "paragraphs", list, f"data[{i}]")):
            where = f"data[{i}].paragraphs[{j}]"
            context = _get(p, para, "context", str, where)
            for k, qa in enumerate(_get(p, para, "qas", list, where)):
                example, bad = _parse_qa(p, qa, context, f"{where}.qas[{k}]")
                examples.append(example)
                misaligned += bad
    if not examples:
        raise DataError(p, None, "no questions found")
    if misaligned:
        logger.warning("%s: %d answers do not match context[answer_start:]", p, misaligned)
    return examples


def load_squad(
    path: str | os.PathLike[str],
) -> list[QAExample] | DatasetSplits[list[QAExample]]:
    """Loads SQuAD v1.1 data from a JSON file or a directory.

    Args:
        path: Either one JSON file, or a directory containing ``train.json``
            and ``dev.json``.

    Returns:
        For a file, its examples. For a directory, train (``train.json``) and
        validation (``dev.json``) splits.

    Raises:
        FileNotFoundError: If the path, or a file in the directory, is missing.
        DataError: If a file is malformed (see :func:`read_squad_file`).
    """
    root = Path(path)
    if root.is_dir():
        train = read_squad_file(root / "train.json")
        val = read_squad_file(root / "dev.json")
        logger.info("loaded SQuAD from %s: %d train, %d dev questions", root, len(train), len(val))
        return DatasetSplits(train, val)
    return read_squad_file(root)
