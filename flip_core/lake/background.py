"""One call run in a thread, its result or error collected later."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Background:
    """One call run in a thread; `result` waits for it and raises what it raised."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self._call = call
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # raised in the caller's thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
