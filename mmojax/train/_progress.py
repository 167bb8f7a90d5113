"""The training progress bar: optimizer updates, labelled metrics, no ETA while compiling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from tqdm.auto import tqdm


def metrics_text(
    train_loss: Mapping[str, float] | None, validation: Mapping[str, float] | None, metric: str
) -> str:
    """``"train loss bert 0.512 gpt2 0.601 | val accuracy bert 0.800 ..."``."""
    parts = []
    if train_loss:
        parts.append("train loss " + " ".join(f"{m} {v:.3f}" for m, v in train_loss.items()))
    if validation:
        parts.append(f"val {metric} " + " ".join(f"{m} {v:.3f}" for m, v in validation.items()))
    return " | ".join(parts)


class Progress:
    """A progress bar over optimizer updates.

    Until the first step has run it shows only "compiling": the first step's
    time is mostly XLA compilation, and a rate measured over it would give an
    ETA that is off by hours. The bar proper (and its clock) starts after it.

    Args:
      total: optimizer updates of the whole run.
      initial: updates already done (a resumed run).
      metric: the name of the validation metric shown.
      enabled: ``False`` shows nothing.
      file: where to draw (default: stderr).
    """

    def __init__(
        self,
        total: int,
        initial: int,
        metric: str,
        *,
        enabled: bool = True,
        file: IO[str] | None = None,
    ):
        self.total, self.metric, self.enabled, self.file = total, metric, enabled, file
        self.bar: tqdm | None = None
        self._train: Mapping[str, float] | None = None
        self._val: Mapping[str, float] | None = None
        self._initial = initial
        self._status = tqdm(
            total=0,
            bar_format="{desc}",
            file=file,
            leave=False,
            desc=f"train: update {initial}/{total}, compiling the train step",
            disable=not enabled,
        )

    def update(self, updates: int) -> None:
        """Moves the bar to ``updates`` (call after every step)."""
        if self.bar is None:
            self._status.close()
            self.bar = tqdm(
                total=self.total,
                initial=self._initial,
                unit="update",
                desc="train",
                dynamic_ncols=True,
                file=self.file,
                disable=not self.enabled,
            )
        if updates > self.bar.n:
            self.bar.update(updates - self.bar.n)

    def show(
        self,
        *,
        train_loss: Mapping[str, float] | None = None,
        validation: Mapping[str, float] | None = None,
    ) -> None:
        """Shows the latest training losses and/or validation metrics, labelled."""
        self._train = train_loss or self._train
        self._val = validation or self._val
        if self.bar is not None:
            self.bar.set_postfix_str(metrics_text(self._train, self._val, self.metric))

    def close(self) -> None:
        self._status.close()
        if self.bar is not None:
            self.bar.close()
