"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

A signal only sets a flag; the training loop checks it between steps, so the
run stops with the state of the last completed step (never one whose buffers
were donated to a step in flight) and saves it. Raising ``KeyboardInterrupt``
from the handler instead could land anywhere, e.g. inside a JAX callback that
swallows it. A second signal stops at once, without saving.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving its state.

    Attributes:
      signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
      update: the optimizer update the run stopped at.
      saved: whether a checkpoint of the state at the stop was saved.
      workdir: the run directory.
    """

    def __init__(self, signal_name: str, update: int, saved: bool, workdir: str):
        super().__init__(f"{signal_name} at update {update}")
        self.signal_name = signal_name
        self.update = update
        self.saved = saved
        self.workdir = workdir

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signal_name`.

    Outside the main thread (where Python cannot install handlers) it does
    nothing and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # the second signal: stop now, without saving
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "%s received: stopping after the current step and saving a checkpoint "
            "(send it again to stop at once without saving)",
            self.signal_name,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
