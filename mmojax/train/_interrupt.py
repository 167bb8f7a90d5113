"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

A signal only sets a flag; the training loop checks it between steps, so the
run stops with the state of the last completed step (never one whose buffers
were donated to a step in flight) and saves it. Raising ``KeyboardInterrupt``
from the handler instead could land anywhere, e.g. inside a JAX callback that
swallows it. A second signal stops at once, without saving.

In a run of several processes (``--num-processes``) a signal may reach one
process only, or each at a different step; the checkpoint save is collective,
so the processes agree after every step (:func:`agreed_stop`, a gather of one
integer per process) and all stop at the same step with the same state.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import numpy as np

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


def agreed_stop(stop: StopRequest, gather=None) -> str | None:
    """The signal every process stops on after this step, or ``None`` to go on.

    One process alone: its own request. Several processes: every process
    calls this after every step; if any of them received a signal, all of them
    stop, naming the first signal of the lowest-numbered process that has one.

    Args:
      stop: this process's request.
      gather: ``np.ndarray -> np.ndarray`` stacking one value per process
        (default: ``jax.experimental.multihost_utils.process_allgather`` when
        there are several processes).
    """
    if gather is None:
        import jax

        if jax.process_count() == 1:
            return stop.signal_name
        from jax.experimental import multihost_utils

        gather = multihost_utils.process_allgather
    code = int(getattr(signal, stop.signal_name)) if stop.requested else 0
    codes = [int(c) for c in np.ravel(gather(np.int32(code))) if c]
    return signal.Signals(codes[0]).name if codes else None
