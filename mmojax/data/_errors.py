"""Error type raised for malformed data files."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A data file exists but its contents are malformed.

    The message always names the file and, where the problem can be pinned to
    one, the 1-based line number, e.g.
    ``"data/train.tsv, line 12: label must be 0 or 1, got '2'"``.

    Attributes:
        path: The offending file.
        line: 1-based line number, or ``None`` if not tied to one line.
        reason: The problem, without the location prefix.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, reason: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # keeps the error picklable (e.g. across worker processes)
        return (type(self), (self.path, self.line, self.reason))
