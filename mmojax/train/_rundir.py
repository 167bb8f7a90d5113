"""A run's directory: what may be written where, and the config a resumed run keeps.

A new run refuses a directory that is not empty (it may hold another run, whose
checkpoints would be mixed with the new one) unless asked to overwrite it, and
nothing is written before the configuration and the data have been validated:
:func:`check` only looks, :func:`create` writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

from mmojax.train._config import RESUMABLE_FIELDS, TrainConfig

# What a run writes into its directory (removed by ``overwrite``).
RUN_FILES = (
    "config.json",
    "task.json",
    "tokenizer.json",
    "tokenizers",
    "export",
    "metrics.jsonl",
    "checkpoints",
    "checkpoints-unusable",
    "loss.png",
    "accuracy.png",
    "learning_rate.png",
)
CONFIG_FILE = "config.json"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (the message names it and says why)."""


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check(workdir: str, *, resume: bool, overwrite: bool = False) -> None:
    """Checks, without writing anything, that a run may use ``workdir``.

    Args:
      workdir: the run directory.
      resume: the run continues the one in ``workdir`` (which must hold one).
      overwrite: a new run may replace what ``workdir`` holds.

    Raises:
      RunDirError: ``workdir`` is a file or cannot be created or written; a
        new run would mix with what it holds; or there is nothing to resume.
    """
    if resume and overwrite:
        raise RunDirError(
            "resume and overwrite exclude each other: resume continues the run "
            f"in {workdir}, overwrite deletes it"
        )
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise RunDirError(f"workdir {workdir} is a file, not a directory")
    existing = _nearest_existing(workdir)
    if not os.path.isdir(existing):
        raise RunDirError(f"cannot create workdir {workdir}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write to workdir {workdir}: {existing} is not writable")
    if resume:
        missing = [
            f for f in (CONFIG_FILE, "checkpoints") if not os.path.exists(os.path.join(workdir, f))
        ]
        if not missing:  # and the tokenizers the run saved, which it must use again
            config = read_config(workdir)
            own = config.tokenizer_sources()
            needed = [os.path.join("tokenizers", f"{m}.json") for m in own]
            if any(m not in own for m in config.models):
                needed.append("tokenizer.json")
            missing = [f for f in needed if not os.path.exists(os.path.join(workdir, f))]
        if missing:
            raise RunDirError(
                f"cannot resume: {workdir} holds no run to resume (no {', '.join(missing)})"
            )
        return
    entries = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
    if entries and not overwrite:
        run = [e for e in entries if e in RUN_FILES]
        what = "a run" if run else "other files"
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirError(
            f"workdir {workdir} is not empty: it holds {what} ({shown}). Continue that run "
            "with --resume, delete it with --overwrite, or choose another --workdir"
        )


def create(workdir: str, *, overwrite: bool = False) -> None:
    """Creates ``workdir``; with ``overwrite``, first removes a previous run's files.

    Files that a run does not write are left alone.
    """
    try:
        if overwrite:
            for name in RUN_FILES:
                path = os.path.join(workdir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.remove(path)
        os.makedirs(workdir, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot prepare workdir {workdir}: {err.strerror or err}") from None


def write_config(workdir: str, config: TrainConfig) -> None:
    """Writes ``config.json`` (atomically: a half-written file never replaces a good one)."""
    path = os.path.join(workdir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    os.replace(tmp, path)


def read_config(workdir: str) -> TrainConfig:
    """The configuration saved in ``workdir`` by the run that lives there."""
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            values = json.load(f)
    except FileNotFoundError:
        raise RunDirError(f"cannot resume: {path} does not exist (no run to resume)") from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"cannot resume: {path} is not valid JSON ({err.msg})") from None
    return TrainConfig.from_dict(values)


def resumed_config(
    saved: TrainConfig | Mapping[str, Any], given: TrainConfig, *, source: str
) -> TrainConfig:
    """Checks that ``given`` continues the run configured as ``saved``.

    Args:
      saved: the configuration the run (or its checkpoint) was made with.
      given: the configuration of the resumed run.
      source: where ``saved`` comes from, for the message.

    Returns:
      ``given``.

    Raises:
      ValueError: naming every field outside :data:`RESUMABLE_FIELDS` that
        differs, or a smaller ``epochs``.
    """
    if not isinstance(saved, TrainConfig):
        saved = TrainConfig.from_dict(saved)
    changed = [f for f in saved.changed_fields(given) if f not in RESUMABLE_FIELDS]
    if changed:
        detail = ", ".join(
            f"{f} (run: {getattr(saved, f)!r}, now: {getattr(given, f)!r})" for f in changed
        )
        raise ValueError(
            f"cannot resume with different settings: {detail}. A resumed run keeps the "
            f"settings in {source}; it may change only {', '.join(RESUMABLE_FIELDS)}. To "
            "change the others start a new run (another workdir, or overwrite this one)"
        )
    if given.epochs < saved.epochs:
        raise ValueError(
            f"epochs can only grow on resume (run: {saved.epochs}, now: "
            f"{given.epochs}); use max_steps to stop earlier"
        )
    return given


def with_changes(saved: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    """``saved`` with ``changes`` applied (a new, validated config)."""
    return dataclasses.replace(saved, **dict(changes))
