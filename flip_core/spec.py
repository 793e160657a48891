"""Dataset specs: the one place that knows a click log.

A spec (`configs/datasets/<name>.yaml`, documented key by key in docs/datasets.md) names the source
tables (files, format, delimiter, encoding, header, typed columns with value rules, key), how they
join (events ⋈ users on the user key ⋈ items on the item key), the label rule, the event-time
column, the model's fields in order (source column, kind, text label, value -> text map, role),
the prompt template and the split protocols. Ingest, features, prompts, models, evaluation,
scoring and the champion gate all read it; nothing below `configs/` names a dataset's columns.

Nothing in a spec is pasted into SQL: column names must be plain identifiers and reach DuckDB
only as bound parameters, types map onto a fixed set of statements, values are bound parameters.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ColumnType = Literal["int32", "int64", "float64", "bool", "string", "timestamp"]
Scalar = int | float | str | bool
LabelOp = Literal[">=", ">", "<=", "<", "==", "!=", "in"]

NUMERIC_TYPES = ("int32", "int64", "float64")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
LABEL = "label"
# Columns every spec lake table carries besides the spec's own, and names the ingest uses itself.
RESERVED = frozenset(
    {
        LABEL,
        "source_file",
        "line_number",
        "ingest_date",
        "text",
        "reason",
        "dropped",
        "_key",
        "_row",
    }
)


WHITESPACE = "whitespace"  # the delimiter that means runs of spaces and tabs


class SpecError(ValueError):
    """A dataset spec is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One column of the lake table: its name, type, where it comes from and its value rules."""

    name: str = Field(description="Column name in the lake (a plain identifier).")
    type: ColumnType
    source: str | None = Field(
        default=None, description="Header name (CSV) or column name (Parquet) when it differs."
    )
    nullable: bool = False
    min: int | float | None = Field(
        default=None, description="Smallest allowed value (numeric types)."
    )
    max: int | float | None = Field(
        default=None, description="Largest allowed value (numeric types)."
    )
    allowed: list[Scalar] | None = Field(default=None, min_length=1, description="Allowed values.")
    pattern: str | None = Field(default=None, description="Regex a string value must match fully.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not IDENTIFIER.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a plain identifier (letters, digits, _; not starting with a "
                "digit; at most 63 characters); use `source:` for the file's own name"
            )
        if name.lower() in RESERVED:
            raise ValueError(
                f"{name!r} is reserved (the lake adds {', '.join(sorted(RESERVED - {'_key'}))}); "
                "rename it and keep the file's name in `source:`"
            )
        return name

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC_TYPES:
            raise ValueError(f"min/max need a numeric type, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError(f"pattern needs type string, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex ({exc})") from None
        if self.allowed is not None:
            for value in self.allowed:
                _check_value_type(self.type, value, "allowed value")
        return self

    @property
    def source_name(self) -> str:
        """The column's name in the raw file."""
        return self.source or self.name


class LabelRule(_Strict):
    """How the 0/1 `label` is derived: `column` compared with `value`, or `column` as it is."""

    column: str
    op: LabelOp | None = Field(default=None, description="None: the column holds 0/1 already.")
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _op_and_value(self) -> LabelRule:
        if self.op is None and self.value is not None:
            raise ValueError("value needs an op (e.g. op: '>=')")
        if self.op is not None and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if (self.op == "in") != isinstance(self.value, list):
            raise ValueError("op 'in' takes a list value; the other ops take one value")
        return self

    @property
    def values(self) -> list[Scalar]:
        """The comparison value(s) as a list."""
        if self.value is None:
            return []
        return list(self.value) if isinstance(self.value, list) else [self.value]


class TableSpec(_Strict):
    """One source table: its files, how they are read, its typed columns and its key."""

    name: str = Field(description="Lake table name: <data_root>/lake/<dataset>/<name>/.")
    format: Literal["csv", "parquet"]
    files: list[str] = Field(min_length=1, description="Globs relative to the raw folder.")
    delimiter: str = Field(
        default=",",
        min_length=1,
        description="Field separator (up to 4 characters), or `whitespace`: runs of spaces and "
        "tabs, leading and trailing ones ignored.",
    )
    quote: str | None = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    null_values: list[str] = Field(default=[""], description="Field texts read as null (CSV).")
    columns: list[ColumnSpec] = Field(min_length=1)
    key: list[str] = Field(default=[], description="Columns that identify a row; [] = all.")

    @field_validator("name")
    @classmethod
    def _table_name(cls, table: str) -> str:
        if not IDENTIFIER.fullmatch(table) or table.startswith("."):
            raise ValueError(f"{table!r} is not a plain identifier")
        return table

    @field_validator("files")
    @classmethod
    def _relative_globs(cls, files: list[str]) -> list[str]:
        for glob in files:
            parts = PurePosixPath(glob).parts
            if not glob or glob.startswith(("/", "\\")) or ".." in parts:
                raise ValueError(f"{glob!r} must be a glob relative to the raw folder")
        return files

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, delimiter: str) -> str:
        if delimiter == WHITESPACE:
            return delimiter
        if len(delimiter) > 4:
            raise ValueError(
                f"{delimiter!r} is longer than 4 characters (write `whitespace` for runs of "
                "spaces and tabs)"
            )
        if any(ch in delimiter for ch in "\r\n\"'") or (
            delimiter.isspace() and delimiter not in ("\t", " ")
        ):
            raise ValueError(f"{delimiter!r} cannot be a delimiter")
        return delimiter

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        sample = "a,;|\t:\n\r0-9"
        if sample.encode(encoding, errors="replace") != sample.encode("ascii"):
            raise ValueError(
                f"{encoding!r} is not ASCII-compatible (utf-8, latin-1, cp1252, ... are); "
                "re-encode the files"
            )
        return encoding

    @model_validator(mode="after")
    def _references(self) -> TableSpec:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns: duplicate names {dupes}")
        sources = [c.source_name for c in self.columns]
        if len(set(sources)) != len(sources):
            raise ValueError("columns: two columns read the same source column")
        by_name = {c.name: c for c in self.columns}
        for key in self.key:
            if key not in by_name:
                raise ValueError(f"key: {key!r} is not a column (columns: {names})")
        if len(set(self.key)) != len(self.key):
            raise ValueError("key: a column is listed twice")
        for key in self.key:
            if by_name[key].nullable:
                raise ValueError(f"key: column {key!r} is nullable; key columns cannot be")
        if self.quote is not None and self.delimiter == WHITESPACE:
            raise ValueError("quote: whitespace-separated fields cannot be quoted; set quote: null")
        if self.quote is not None and self.quote in self.delimiter:
            raise ValueError("quote and delimiter overlap")
        if self.quote is not None and len(self.delimiter) > 1:
            raise ValueError(
                f"quote: quoted fields need a one-character delimiter, not {self.delimiter!r}; "
                "set quote: null"
            )
        return self

    @property
    def column_names(self) -> list[str]:
        """The spec's columns, in order."""
        return [c.name for c in self.columns]

    @property
    def key_columns(self) -> list[str]:
        """Columns that identify a row (all columns when `key` is empty)."""
        return list(self.key) or self.column_names

    def column(self, name: str) -> ColumnSpec:
        """The column called `name`."""
        return next(c for c in self.columns if c.name == name)


FieldKind = Literal["categorical", "multi", "numeric"]
Role = Literal["user", "item", "context"]
SplitOrder = Literal["time", "random", "file"]
MULTI_JOIN = "|"  # joins the values of a list or indicator multi-valued field in its ID value


class ValuesFile(_Strict):
    """A value -> text lookup read from a delimited file (path relative to the spec file)."""

    path: str
    delimiter: str = Field(default=",", min_length=1)
    encoding: str = "utf-8"
    key: int = Field(default=0, ge=0, description="0-based column holding the value.")
    text: int = Field(default=1, ge=0, description="0-based column holding its text.")
    header: bool = False


class FieldSpec(_Strict):
    """One model field: where its value comes from, how it is encoded and shown in text."""

    name: str = Field(description="Field name (ids, spans, scoring input); a plain identifier.")
    column: str | None = Field(default=None, description="Source column (default: name).")
    kind: FieldKind = "categorical"
    label: str | None = Field(default=None, description="Text label (default: name, _ -> space).")
    values: dict[str, str] | None = Field(default=None, description="Value -> text map.")
    values_file: ValuesFile | None = None
    role: Role = "context"
    separator: str | None = Field(
        default=None, description="multi: separator inside a string column (e.g. '|')."
    )
    columns: list[str] | None = Field(
        default=None, description="multi: a set of 0/1 indicator columns (value = column name)."
    )
    text_separator: str = Field(default=", ", description="multi: joins the values in text.")
    bins: int | None = Field(default=None, description="numeric: train-fitted quantile bins.")

    @field_validator("values", mode="before")
    @classmethod
    def _values_map(cls, values: Any) -> Any:
        if values is None:
            return None
        if not isinstance(values, dict):
            raise ValueError(f"must be a map of value -> text, not {type(values).__name__}")
        return {str(k): str(v) for k, v in values.items()}

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not IDENTIFIER.fullmatch(name) or name.lower() in RESERVED:
            raise ValueError(f"{name!r} is not a plain, unreserved identifier")
        return name

    @model_validator(mode="after")
    def _kind_options(self) -> FieldSpec:
        if self.kind == "numeric":
            if self.bins is None or self.bins < 2:
                raise ValueError(f"bins: a numeric field needs bins >= 2, not {self.bins}")
        elif self.bins is not None:
            raise ValueError(f"bins: only numeric fields are bucketed, not {self.kind}")
        if self.kind != "multi" and (self.separator is not None or self.columns is not None):
            raise ValueError("separator/columns: only multi-valued fields take them")
        if self.columns is not None and (self.separator is not None or self.column is not None):
            raise ValueError("columns: indicator columns exclude column and separator")
        if self.values is not None and self.values_file is not None:
            raise ValueError("values and values_file: give one value -> text map, not both")
        return self

    @property
    def source_columns(self) -> list[str]:
        """The joined-row columns this field reads."""
        return list(self.columns) if self.columns is not None else [self.column or self.name]

    @property
    def text_label(self) -> str:
        """The field's label in prompt text."""
        return self.label if self.label is not None else self.name.replace("_", " ")


class JoinSpec(_Strict):
    """Join a table onto the events: `events ⋈ table USING (key)`; `key` is the table's key."""

    table: str
    key: list[str] = Field(min_length=1)


class ProtocolSpec(_Strict):
    """A split protocol: sort the labelled rows, then cut train / valid / test.

    `order`: `time` by (event time, user, item), `random` by a seeded hash of (user, item, event
    time), `file` by (source file, line); ties broken by user, item, time, source file, line.
    """

    name: str
    order: SplitOrder
    train: float = Field(gt=0.0, lt=1.0)
    valid: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = 0
    leaky: bool = False
    description: str = ""

    @field_validator("name")
    @classmethod
    def _folder_safe(cls, name: str) -> str:
        if not DATASET_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a folder-safe name (letters, digits, _ and -)")
        return name

    @model_validator(mode="after")
    def _fractions(self) -> ProtocolSpec:
        if self.train + self.valid >= 1.0:
            raise ValueError(f"train {self.train} + valid {self.valid} leave no test rows")
        return self

    @property
    def test(self) -> float:
        """Share of rows in the test split."""
        return 1.0 - self.train - self.valid

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this protocol produces (no `valid` when its fraction is zero)."""
        return tuple(s for s in SPLITS if s != "valid" or self.valid > 0)


class PromptSpec(_Strict):
    """Per-field sentence template (`{value}` once, `{field}` at most once) and separator."""

    template: str = "{field} is {value}."
    separator: str = " "

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        if template.count("{value}") != 1:
            raise ValueError(f"template {template!r} must contain '{{value}}' exactly once")
        if template.count("{field}") > 1:
            raise ValueError(f"template {template!r} may contain '{{field}}' at most once")
        return template


class DownloadSpec(_Strict):
    """Where a public copy of the raw files lives: a zip at `url` with this `md5`."""

    url: str = Field(pattern=r"^https?://", description="HTTP(S) address of a zip archive.")
    md5: str = Field(pattern=r"^[0-9a-f]{32}$", description="Its md5, checked before unpacking.")


class DatasetSpec(_Strict):
    """A click log: tables, joins, label, event time, fields, prompt and protocols."""

    name: str = Field(description="Dataset name: the lake lives in <data_root>/lake/<name>.")
    tables: list[TableSpec] = Field(min_length=1)
    events: str = Field(description="The table with one row per interaction.")
    joins: list[JoinSpec] = []
    timestamp: str = Field(description="Event-time column of the events table.")
    label: LabelRule
    fields: list[FieldSpec] = Field(min_length=1)
    prompt: PromptSpec = PromptSpec()
    protocols: list[ProtocolSpec] = Field(min_length=1)
    download: DownloadSpec | None = Field(
        default=None, description="A public copy `flip data download` can fetch."
    )

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, name: str) -> str:
        if not DATASET_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a folder-safe name (letters, digits, _ and -)")
        return name

    @model_validator(mode="after")
    def _references(self) -> DatasetSpec:
        tables = {t.name: t for t in self.tables}
        if len(tables) != len(self.tables):
            raise ValueError("tables: two tables have the same name")
        if self.events not in tables:
            raise ValueError(f"events: {self.events!r} is not a table ({sorted(tables)})")
        events = tables[self.events]
        _check_timestamp({c.name: c for c in events.columns}, self.timestamp, events.column_names)
        _check_label({c.name: c for c in events.columns}, self.label, events.column_names)
        available = {c.name: c for c in events.columns}
        for i, join in enumerate(self.joins):
            where = f"joins[{i}]"
            if join.table not in tables or join.table == self.events:
                raise ValueError(f"{where}.table: {join.table!r} is not a dimension table")
            table = tables[join.table]
            for key in join.key:
                if key not in available:
                    raise ValueError(
                        f"{where}.key: {key!r} is not a column of the rows joined so far"
                    )
                if key not in table.column_names:
                    raise ValueError(
                        f"{where}.key: {key!r} is not a column of table {join.table!r}"
                    )
            if sorted(join.key) != sorted(table.key):
                raise ValueError(
                    f"{where}.key: {join.key} must be table {join.table!r}'s key ({table.key}), "
                    "so the join keeps one row per event"
                )
            clash = [c for c in table.column_names if c in available and c not in join.key]
            if clash:
                raise ValueError(f"{where}: columns {clash} of {join.table!r} are already joined")
            available.update({c.name: c for c in table.columns})
        _check_fields(self.fields, available)
        names = [p.name for p in self.protocols]
        if len(set(names)) != len(names):
            raise ValueError("protocols: two protocols have the same name")
        return self

    @property
    def field_names(self) -> list[str]:
        """The model's fields, in order (ids, prompts and spans follow it)."""
        return [f.name for f in self.fields]

    def table(self, name: str) -> TableSpec:
        """The table called `name`."""
        return next(t for t in self.tables if t.name == name)

    def field(self, name: str) -> FieldSpec:
        """The field called `name`."""
        return next(f for f in self.fields if f.name == name)

    def role_field(self, role: Role) -> str | None:
        """Name of the field with `role` (user or item), if the spec has one."""
        return next((f.name for f in self.fields if f.role == role), None)

    def protocol(self, name: str | None = None) -> ProtocolSpec:
        """The protocol called `name` (default: the first); unknown names list the known ones."""
        if name is None:
            return self.protocols[0]
        for protocol in self.protocols:
            if protocol.name == name:
                return protocol
        known = ", ".join(p.name for p in self.protocols)
        raise ValueError(f"dataset {self.name!r} has no protocol {name!r}; known: {known}")

    def input_columns(self) -> dict[str, ColumnType]:
        """The raw columns the fields read (scoring input), in field order, with their types."""
        types = {c.name: c.type for t in self.tables for c in t.columns}
        return {c: types[c] for f in self.fields for c in f.source_columns}

    @property
    def ingest_order(self) -> list[TableSpec]:
        """Tables in ingest order, each after the tables its join keys refer to: tables no join
        names, then the joined tables in reverse join order, the events last."""
        joined = [self.table(j.table) for j in reversed(self.joins)]
        names = {self.events, *(t.name for t in joined)}
        rest = [t for t in self.tables if t.name not in names]
        return [*rest, *joined, self.table(self.events)]

    def content_hash(self) -> str:
        """Hash of the spec's content (part of the feature and model cache keys)."""
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()


SPLITS: tuple[str, ...] = ("train", "valid", "test")


def _check_fields(fields: list[FieldSpec], available: dict[str, ColumnSpec]) -> None:
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError("fields: two fields have the same name")
    for i, spec in enumerate(fields):
        where = f"fields[{i}] ({spec.name})"
        for column in spec.source_columns:
            if column not in available:
                raise ValueError(
                    f"{where}.column: {column!r} is not a column of the joined rows "
                    f"({sorted(available)})"
                )
        first = available[spec.source_columns[0]]
        if spec.kind == "numeric" and first.type not in NUMERIC_TYPES:
            raise ValueError(f"{where}.kind: numeric needs a numeric column, not {first.type}")
        if spec.kind == "multi" and spec.columns is not None:
            for column in spec.columns:
                if available[column].type not in ("int32", "int64", "bool"):
                    raise ValueError(f"{where}.columns: {column!r} is not a 0/1 column")
    for role in ("user", "item"):
        holders = [f.name for f in fields if f.role == role]
        if len(holders) > 1:
            raise ValueError(f"fields: role {role!r} is held by {holders}; at most one field")


def _check_value_type(column_type: str, value: Any, what: str) -> None:
    ok = {
        "int32": isinstance(value, int) and not isinstance(value, bool),
        "int64": isinstance(value, int) and not isinstance(value, bool),
        "float64": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "string": isinstance(value, str),
        "timestamp": False,
    }[column_type]
    if not ok:
        raise ValueError(f"{what} {value!r} does not fit type {column_type}")


def _check_timestamp(by_name: dict[str, ColumnSpec], name: str, names: list[str]) -> None:
    if name not in by_name:
        raise ValueError(f"timestamp: {name!r} is not a column (columns: {names})")
    column = by_name[name]
    if column.type not in ("int64", "int32", "timestamp"):
        raise ValueError(f"timestamp: column {name!r} must be int64, int32 or timestamp")
    if column.nullable:
        raise ValueError(f"timestamp: column {name!r} is nullable; it cannot be")


def _check_label(by_name: dict[str, ColumnSpec], rule: LabelRule, names: list[str]) -> None:
    if rule.column not in by_name:
        raise ValueError(f"label.column: {rule.column!r} is not a column (columns: {names})")
    column = by_name[rule.column]
    if column.nullable:
        raise ValueError(f"label.column: {rule.column!r} is nullable; the label needs a value")
    if rule.op is None:
        if column.type not in ("int32", "int64", "bool"):
            raise ValueError(
                f"label: column {rule.column!r} ({column.type}) is not 0/1; give op and value"
            )
        return
    if rule.op in (">=", ">", "<=", "<") and column.type not in NUMERIC_TYPES:
        raise ValueError(f"label.op {rule.op!r} needs a numeric column, not {column.type}")
    if column.type == "timestamp":
        raise ValueError("label: a timestamp column cannot be compared")
    for value in rule.values:
        _check_value_type(column.type, value, "label.value")


PROJECT_DIR = Path(__file__).resolve().parent.parent


def resolve_spec_path(path: Path | str) -> Path:
    """`path` itself when it exists (or is absolute), else the same path in the project folder."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (PROJECT_DIR / path).exists():
        return path
    return PROJECT_DIR / path


def load_dataset_spec(path: Path | str) -> DatasetSpec:
    """Read and check a dataset spec; `SpecError` names the file and the offending key.

    `base: other.yaml` (relative to the spec's folder) starts from another spec's keys, which the
    file's own top-level keys replace. A field's `values_file` is read here (relative to the
    spec's folder) into its `values`, so the spec's content hash covers the lookup too.
    """
    path = Path(path)
    data = _read_mapping(path)
    if "base" in data:
        base = data.pop("base")
        if not isinstance(base, str):
            raise SpecError(f"{path}: base: expected a file name, not {base!r}")
        try:
            data = {**_read_mapping(path.parent / base), **data}
        except SpecError as exc:
            raise SpecError(f"{path}: base: {exc}") from None
    _check_join_keys(path, data)
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(exc, data)}") from None
    return _with_value_files(spec, path)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the dataset spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a dataset spec is a mapping (name, tables, fields, ...)")
    return data


def _check_join_keys(path: Path, data: dict[str, Any]) -> None:
    """YAML 1.1 reads a bare `on:` as the boolean true: say so instead of a cryptic error."""
    joins = data.get("joins")
    for i, join in enumerate(joins if isinstance(joins, list) else []):
        if isinstance(join, dict) and True in join:
            raise SpecError(f"{path}: joins[{i}]: write `key:`, not `on:` (YAML reads on as true)")


def _with_value_files(spec: DatasetSpec, path: Path) -> DatasetSpec:
    folder = path.parent
    fields = []
    for i, field in enumerate(spec.fields):
        lookup = field.values_file
        if lookup is None:
            fields.append(field)
            continue
        where = f"{path}: fields[{i}] ({field.name}).values_file"
        try:
            lines = (folder / lookup.path).read_text(encoding=lookup.encoding).splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{where}: cannot read {lookup.path} ({exc})") from None
        values: dict[str, str] = {}
        first = 2 if lookup.header else 1
        for number, line in enumerate(lines[1:] if lookup.header else lines, start=first):
            parts = line.split(lookup.delimiter)
            if not line.strip():
                continue
            if max(lookup.key, lookup.text) >= len(parts):
                raise SpecError(f"{where}: {lookup.path} line {number} has {len(parts)} columns")
            values[parts[lookup.key].strip()] = parts[lookup.text].strip()
        fields.append(field.model_copy(update={"values": values, "values_file": None}))
    return spec.model_copy(update={"fields": fields})


_MESSAGE_KEY = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*(\.|: )")


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = _location(error["loc"], data)
        message = str(error["msg"]).removeprefix("Value error, ")
        key = _MESSAGE_KEY.match(message)
        if loc and key:  # "key: ..." from a validator of the mapping at `loc`
            parts.append(f"{loc}.{message}")
        else:
            parts.append(f"{loc}: {message}" if loc else message)
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """`columns[2].type`, or `columns[2] (rating).type` when the column has a name."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out
