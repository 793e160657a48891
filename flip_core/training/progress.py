"""A tqdm progress bar showing loss and samples/s, silent off the main process and when stderr
is not a terminal (a worker's log, a redirected file)."""

from __future__ import annotations

from types import TracebackType

from tqdm.auto import tqdm  # type: ignore[import-untyped]


class ProgressBar:
    """Optimizer-step progress; `update(steps, loss, samples_per_s)`."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "train") -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            disable=None if enabled else True,  # None: tqdm's own check, off without a TTY
            desc=desc,
            dynamic_ncols=True,
        )

    def update(
        self, steps: int, loss: float | None = None, samples_per_s: float | None = None
    ) -> None:
        """Advance and refresh the postfix."""
        postfix = {}
        if loss is not None:
            postfix["loss"] = f"{loss:.4f}"
        if samples_per_s is not None:
            postfix["samples/s"] = f"{samples_per_s:,.0f}"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(steps)

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if not self._bar.disable:
            self._bar.write(text)

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
