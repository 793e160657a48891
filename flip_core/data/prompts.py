"""Prompt rendering: one sentence per field ("plan is pro plan."), with each value's char span.

Raw values become readable text first (`flip_core.data.fields.readable_value`: the dataset spec's
value -> text maps, multi-values listed). A template holds `{value}` once and `{field}` at most
once; the row text is the field sentences in the spec's field order, joined by a separator.
Nothing but the template's own text is added: no marker tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flip_core.spec import FieldSpec, PromptSpec


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
    field_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        PromptSpec(template=self.template, separator=self.separator)  # checks the placeholders

    @classmethod
    def for_fields(cls, prompt: PromptSpec, fields: Sequence[FieldSpec]) -> PromptTemplate:
        """The template of a dataset spec's prompt, with its fields' text labels."""
        labels = {f.name: f.text_label for f in fields}
        return cls(template=prompt.template, separator=prompt.separator, field_labels=labels)

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
        self, values: Mapping[str, str], fields: Sequence[str]
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
