"""Raw files read and parsed ahead, in order, by one background thread."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from flip_core.lake.lines import LineBatch, LineStats, TypedBatch

Batches = Callable[[str, Path, LineStats], Iterator[LineBatch | TypedBatch]]
_DONE = object()


class Prefetch:
    """Batches of some files, produced in order by one background thread, a few at a time.

    The consumer must ask for the files in the same order (`batches`); the thread's exceptions
    are raised in the consumer; `close` stops the thread (it may be blocked on a full queue).
    """

    def __init__(self, files: list[tuple[str, Path]], batches: Batches) -> None:
        self.files = list(files)
        self.queue: queue.Queue[tuple[object, object]] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._produce, args=(batches,), name="ingest-prefetch", daemon=True
        )
        self.thread.start()

    def has(self, table: str, path: Path) -> bool:
        """Whether `path` is the next file of the thread (else read it directly)."""
        return bool(self.files) and self.files[0] == (table, path)

    def batches(self, table: str, path: Path, stats: LineStats) -> Iterator[LineBatch | TypedBatch]:
        """The batches of `path` (the next file in order); `stats` filled in at the end."""
        assert self.files and self.files[0] == (table, path), "files must be read in order"
        self.files.pop(0)
        while True:
            item, extra = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                assert isinstance(extra, LineStats)
                vars(stats).update(vars(extra))
                return
            assert isinstance(item, LineBatch | TypedBatch)
            yield item

    def _produce(self, batches: Batches) -> None:
        try:
            for table, path in list(self.files):
                stats = LineStats()
                for batch in batches(table, path, stats):
                    if not self._put(batch, None):
                        return
                if not self._put(_DONE, stats):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc, None)

    def _put(self, item: object, extra: object) -> bool:
        """Queue `item`; False when the consumer closed (then stop producing)."""
        while not self.stop.is_set():
            try:
                self.queue.put((item, extra), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()  # unblocks a thread waiting on a full queue
            self.thread.join(timeout=0.01)
