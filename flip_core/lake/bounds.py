"""Event-time bounds: the events' time column must lie between a floor
(`ingest.min_event_time`) and now plus a tolerance (`ingest.future_tolerance_s`).

Integer event times are Unix seconds; `timestamp` columns are compared as UTC datetimes. A row
outside the bounds is quarantined with the bound it broke and the value it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flip_core.config import IngestConfig


@dataclass(frozen=True)
class TimeBounds:
    """The event-time bounds of one run (Unix seconds)."""

    column: str
    low: int | None  # the floor, or None
    high: int  # now + tolerance
    tolerance_s: int

    @classmethod
    def of(cls, column: str, config: IngestConfig, now: datetime) -> TimeBounds:
        low = None
        if config.min_event_time is not None:
            floor = datetime.fromisoformat(config.min_event_time.replace(" ", "T"))
            low = int(floor.replace(tzinfo=UTC).timestamp())
        high = int((now + timedelta(seconds=config.future_tolerance_s)).timestamp())
        return cls(column, low, high, config.future_tolerance_s)

    def seconds(self, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Integer seconds of an event-time column (integers as they are)."""
        if pa.types.is_timestamp(values.type):
            return pc.cast(pc.cast(values, pa.timestamp("s")), pa.int64())
        return values

    def all_within(self, values: pa.Array | pa.ChunkedArray) -> bool:
        """Whether every (non-null) value lies within the bounds."""
        seconds = self.seconds(values)
        if seconds.null_count == len(seconds):
            return True
        found = pc.min_max(seconds)
        low, high = found["min"].as_py(), found["max"].as_py()
        if low is None:
            return True
        return high <= self.high and (self.low is None or low >= self.low)

    def reasons(self, lines: np.ndarray, values: pd.Series) -> dict[int, str]:
        """line number -> reason, for the rows of `values` (the column, in line order) that lie
        outside the bounds."""
        if pd.api.types.is_datetime64_any_dtype(values):
            stamps = values.dt.tz_localize(None) if values.dt.tz is not None else values
            seconds = (stamps.astype("datetime64[s]").astype("int64")).to_numpy()
            valid = values.notna().to_numpy()
        else:
            valid = values.notna().to_numpy()
            seconds = values.fillna(0).astype("int64").to_numpy()
        late = valid & (seconds > self.high)
        early = valid & (seconds < self.low) if self.low is not None else np.zeros_like(valid)
        out: dict[int, str] = {}
        for i in np.flatnonzero(late | early).tolist():
            value = int(seconds[i])
            got = f"{value}, {_utc(value)}" if values.dtype.kind in "iu" else _utc(value)
            if late[i]:
                bound = (
                    f"after now + {self.tolerance_s:,} s ({_utc(self.high)}; "
                    "ingest.future_tolerance_s)"
                )
            else:
                bound = f"before the floor {_utc(self.low or 0)} (ingest.min_event_time)"
            out[int(lines[i])] = f"{self.column}: {bound} (got {got})"
        return out


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "beyond any date"
