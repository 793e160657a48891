"""Evaluation protocols: how the lake's ratings become labelled train/valid/test rows.

Protocols are defined here, in code, and selected by name (`features.protocol`). Every protocol
uses the same label (rating >= 4 is a click) and the same eight fields in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FIELDS: tuple[str, ...] = (
    "user_id", "gender", "age", "occupation", "zip", "movie_id", "title", "genres",
)  # fmt: skip
"""The tabular fields, in the fixed order used by ids, prompts and spans."""

SPLITS: tuple[str, ...] = ("train", "valid", "test")

SplitOrder = Literal["time", "random", "file"]


@dataclass(frozen=True)
class Protocol:
    """A named split protocol.

    `order` sorts the rows before cutting: `time` by (timestamp, user_id, movie_id), `random` by a
    seeded hash of the row, `file` by (source_file, line_number). The first `train_fraction` of the
    sorted rows is train, the next `valid_fraction` valid, the rest test.
    """

    name: str
    order: SplitOrder
    train_fraction: float
    valid_fraction: float
    seed: int = 0
    click_threshold: int = 4
    leaky: bool = False
    description: str = ""

    @property
    def test_fraction(self) -> float:
        """Share of rows in the test split."""
        return 1.0 - self.train_fraction - self.valid_fraction

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this protocol produces (no `valid` when its fraction is zero)."""
        return tuple(s for s in SPLITS if s != "valid" or self.valid_fraction > 0)


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="ml1m-time-811",
            order="time",
            train_fraction=0.8,
            valid_fraction=0.1,
            description="Benchmark protocol: sort by (timestamp, user, movie); 80/10/10.",
        ),
        Protocol(
            name="ml1m-random-811",
            order="random",
            train_fraction=0.8,
            valid_fraction=0.1,
            seed=2024,
            description="Seeded random 80/10/10 split (rows shuffled by a hash of row and seed).",
        ),
        Protocol(
            name="ml1m-ref-9010",
            order="file",
            train_fraction=0.9,
            valid_fraction=0.0,
            leaky=True,
            description=(
                "LEAKY, for comparison with the reference code only: file order, first 90% train, "
                "last 10% test, no validation split (model selection would have to use test)."
            ),
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; an unknown name is an error listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise ValueError(f"unknown protocol {name!r}; known protocols: {known}") from None
