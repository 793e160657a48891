"""Per-field vocabularies (`FeatureMap`): raw value -> integer id, fitted on train rows only.

Ids `PAD = 0`, `MASK = 1` and `OOV = 2` are reserved in every field; real values start at 3,
most frequent first. Values are keyed by their string form, so `encode("age", 25)` and
`encode("age", "25")` agree. Each field also carries its dataset-spec entry (source columns,
kind, role, text map) and, for numeric fields, its train-fitted bin edges; the map carries the
dataset name and prompt template, so a model directory is enough to encode and render raw rows.
Saved as `feature_map.json` next to the features and models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flip_core.spec import FieldSpec, PromptSpec

PAD_ID = 0
MASK_ID = 1
OOV_ID = 2
NUM_RESERVED = 3
FORMAT = "flip-feature-map/1"
FEATURE_MAP_FILE = "feature_map.json"


@dataclass
class FieldVocab:
    """One field's vocabulary: `values[i]` has id `i + 3` and `counts[i]` train occurrences."""

    name: str
    values: list[str]
    counts: list[int]
    oov_count: int = 0
    spec: FieldSpec | None = None
    bins: list[float] | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.values) != len(self.counts):
            raise ValueError(
                f"field {self.name!r}: {len(self.values)} values, {len(self.counts)} counts"
            )
        self.index = {v: i + NUM_RESERVED for i, v in enumerate(self.values)}
        if len(self.index) != len(self.values):
            raise ValueError(f"field {self.name!r}: duplicate values in vocabulary")


class FeatureMap:
    """Vocabularies of every field, in field order; `columns` are the raw input columns (name ->
    spec type) the fields read, i.e. the scoring input schema."""

    def __init__(
        self,
        fields: Sequence[FieldVocab],
        min_count: int = 1,
        dataset: str | None = None,
        prompt: PromptSpec | None = None,
        columns: Mapping[str, str] | None = None,
    ) -> None:
        self.fields = list(fields)
        self.min_count = min_count
        self.dataset = dataset
        self.prompt = prompt or PromptSpec()
        self.columns = dict(columns) if columns is not None else {f.name: "string" for f in fields}
        self._by_name = {f.name: f for f in self.fields}

    @property
    def field_names(self) -> list[str]:
        """Field names in order."""
        return [f.name for f in self.fields]

    @property
    def vocab_sizes(self) -> list[int]:
        """Embedding table size per field, including the three reserved ids."""
        return [len(f.values) + NUM_RESERVED for f in self.fields]

    def field_spec(self, name: str) -> FieldSpec:
        """The dataset-spec entry of a field (a plain categorical field when none was saved)."""
        vocab = self._field(name)
        return vocab.spec if vocab.spec is not None else FieldSpec(name=name)

    def role_field(self, role: str) -> str | None:
        """The field that holds `role` (`user` or `item`), if any."""
        return next((f.name for f in self.fields if f.spec and f.spec.role == role), None)

    def bins(self, name: str) -> list[float] | None:
        """Bin edges of a numeric field (None for other kinds)."""
        return self._field(name).bins

    def _field(self, name: str) -> FieldVocab:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown field {name!r}; fields: {', '.join(self.field_names)}"
            ) from None

    def counts(self, field_name: str) -> list[int]:
        """Train count per id of `field_name` (PAD and MASK 0; OOV: train rows below min-count)."""
        f = self._field(field_name)
        return [0, 0, f.oov_count, *f.counts]

    def encode(self, field_name: str, raw_value: Any) -> int:
        """The id of `raw_value` in `field_name`; unseen (or None) -> OOV."""
        if raw_value is None:
            return OOV_ID
        return self._field(field_name).index.get(str(raw_value), OOV_ID)

    def decode(self, field_name: str, value_id: int) -> str | None:
        """The raw value (string form) of an id; None for the reserved ids."""
        f = self._field(field_name)
        if value_id < NUM_RESERVED:
            return None
        return f.values[value_id - NUM_RESERVED]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": FORMAT,
            "reserved": {"PAD": PAD_ID, "MASK": MASK_ID, "OOV": OOV_ID},
            "min_count": self.min_count,
            "dataset": self.dataset,
            "prompt": self.prompt.model_dump(mode="json"),
            "columns": self.columns,
            "fields": [
                {
                    "name": f.name,
                    "values": f.values,
                    "counts": f.counts,
                    "oov_count": f.oov_count,
                    "spec": None if f.spec is None else f.spec.model_dump(mode="json"),
                    "bins": f.bins,
                }
                for f in self.fields
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureMap:
        """Inverse of `to_dict`."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a feature map (format {data.get('format')!r}, want {FORMAT!r})")
        fields = [
            FieldVocab(
                f["name"],
                list(f["values"]),
                list(f["counts"]),
                int(f["oov_count"]),
                None if f.get("spec") is None else FieldSpec.model_validate(f["spec"]),
                f.get("bins"),
            )
            for f in data["fields"]
        ]
        prompt = data.get("prompt")
        return cls(
            fields,
            min_count=int(data["min_count"]),
            dataset=data.get("dataset"),
            prompt=None if prompt is None else PromptSpec.model_validate(prompt),
            columns=data.get("columns"),
        )

    def save(self, path: Path | str) -> Path:
        """Write `feature_map.json` (into `path` if it is a folder); returns the file."""
        target = Path(path)
        if target.is_dir():
            target = target / FEATURE_MAP_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: Path | str) -> FeatureMap:
        """Read a `feature_map.json` (or the one inside folder `path`)."""
        source = Path(path)
        if source.is_dir():
            source = source / FEATURE_MAP_FILE
        return cls.from_dict(json.loads(source.read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureMap) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{n}={s}" for n, s in zip(self.field_names, self.vocab_sizes, strict=True)
        )
        return f"FeatureMap({sizes})"
