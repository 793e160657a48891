"""Prompt rendering: one sentence per field ("gender is female."), with each value's char span.

Raw lake values become readable text first (gender M -> male, age 25 -> 25-34, occupation 20 ->
writer, genres "A|B" -> "A, B"). A template holds `{value}` once and `{field}` at most once; the
row text is the field sentences in the fixed field order, joined by a separator. Nothing but
the template's own text is added: no marker tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flip_core.data.protocols import FIELDS

FIELD_LABELS: dict[str, str] = {
    "user_id": "user id",
    "gender": "gender",
    "age": "age",
    "occupation": "occupation",
    "zip": "zip code",
    "movie_id": "movie id",
    "title": "title",
    "genres": "genres",
}
GENDER_NAMES = {"M": "male", "F": "female"}
AGE_NAMES = {
    1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+",
}  # fmt: skip
OCCUPATION_NAMES = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
UNKNOWN = "unknown"


def readable_value(field_name: str, raw: Any) -> str:
    """The text shown for a raw lake value of `field_name`."""
    if raw is None:
        return UNKNOWN
    if field_name == "gender":
        return GENDER_NAMES.get(str(raw), str(raw))
    if field_name == "age":
        return AGE_NAMES.get(_as_int(raw), str(raw).strip())
    if field_name == "occupation":
        code = _as_int(raw)
        return OCCUPATION_NAMES[code] if 0 <= code < len(OCCUPATION_NAMES) else str(raw).strip()
    if field_name == "genres":
        return ", ".join(str(raw).split("|"))
    return str(raw).strip()


def _as_int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return -1


@dataclass(frozen=True)
class Chunk:
    """One field's sentence and where its value sits in it (characters, `[start, end)`)."""

    text: str
    value_start: int
    value_end: int


@dataclass(frozen=True)
class PromptTemplate:
    """A per-field sentence template, e.g. `"{field} is {value}."`, and the joining separator."""

    template: str = "{field} is {value}."
    separator: str = " "
    field_labels: Mapping[str, str] = field(default_factory=lambda: dict(FIELD_LABELS))

    def __post_init__(self) -> None:
        if self.template.count("{value}") != 1:
            raise ValueError(f"template {self.template!r} must contain '{{value}}' exactly once")
        if self.template.count("{field}") > 1:
            raise ValueError(f"template {self.template!r} may contain '{{field}}' at most once")

    def label(self, field_name: str) -> str:
        """Readable name of a field."""
        return self.field_labels.get(field_name, field_name.replace("_", " "))

    def chunk(self, field_name: str, value: str, first: bool) -> Chunk:
        """The sentence of one field; all but the first field start with the separator."""
        before, after = self.template.split("{value}")
        label = self.label(field_name)
        head = ("" if first else self.separator) + before.replace("{field}", label)
        tail = after.replace("{field}", label)
        return Chunk(head + value + tail, len(head), len(head) + len(value))

    def render(
        self, values: Mapping[str, str], fields: Sequence[str] = FIELDS
    ) -> tuple[str, list[tuple[int, int]]]:
        """Row text from readable values, and each value's char span in it."""
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        offset = 0
        for i, name in enumerate(fields):
            c = self.chunk(name, values[name], first=i == 0)
            parts.append(c.text)
            spans.append((offset + c.value_start, offset + c.value_end))
            offset += len(c.text)
        return "".join(parts), spans

    def spec(self) -> dict[str, Any]:
        """JSON-ready description (part of the prompt cache key)."""
        return {
            "template": self.template,
            "separator": self.separator,
            "field_labels": dict(self.field_labels),
        }
