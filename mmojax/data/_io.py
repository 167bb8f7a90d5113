"""Low-level file reading shared by the loaders."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import DataError


def require_file(path: str | os.PathLike[str]) -> Path:
    """Returns ``path`` as a :class:`Path`, checking that it is an existing file.

    Args:
        path: The file that must exist.

    Returns:
        The path as a :class:`pathlib.Path`.

    Raises:
        FileNotFoundError: If ``path`` does not exist or is not a regular file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {os.fspath(p)!r}")
    return p


def read_text(path: str | os.PathLike[str]) -> str:
    r"""Reads a whole UTF-8 file, reporting decoding errors with a line number.

    A leading byte-order mark is dropped and Windows line endings are
    normalised to ``"\\n"``.

    Args:
        path: The file to read.

    Returns:
        The decoded text.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: If the file is empty (only whitespace) or is not valid UTF-8.
    """
    p = require_file(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            p, line, f"not valid UTF-8 (byte 0x{raw[err.start]:02x}); is the encoding wrong?"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(p, 1, "file is empty")
    return text.replace("\r\n", "\n")


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    r"""Reads a UTF-8 text file as a list of lines without line terminators.

    Only ``"\\n"`` separates lines (unlike :meth:`str.splitlines`, which also
    splits on rarer Unicode separators that may occur inside sentences). A
    trailing newline does not produce an extra empty line. Line ``i`` of the
    file is element ``i - 1`` of the result.

    Args:
        path: The file to read.

    Returns:
        The lines of the file.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: If the file is empty or is not valid UTF-8.
    """
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
