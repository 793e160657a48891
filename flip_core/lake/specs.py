"""Dataset specs: how to read a click log that is not MovieLens (CSV or Parquet) into the lake.

A spec is a YAML file (example: `configs/specs/clicks.yaml`) naming the files, their format,
delimiter, encoding and header, the typed columns with their value rules, the key that makes a row
unique, the event-time column and the label rule. Nothing in a spec is pasted into SQL: column
names must be plain identifiers and reach DuckDB only as bound parameters (`COLUMNS(lambda c:
list_contains($columns, c))`), types map onto a fixed set of SQL statements, and values (delimiter,
null markers, label threshold) are bound parameters too.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandera.pandas as pa
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


class DatasetSpec(_Strict):
    """A click log's layout and rules; `load_spec` reads one from YAML."""

    name: str = Field(description="Dataset name: the lake lives in <data_root>/lake/<name>.")
    table: str = Field(default="clicks", description="Lake table name.")
    format: Literal["csv", "parquet"]
    files: list[str] = Field(min_length=1, description="Globs relative to the raw folder.")
    delimiter: str = Field(default=",", min_length=1, max_length=4)
    quote: str | None = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    null_values: list[str] = Field(default=[""], description="Field texts read as null (CSV).")
    columns: list[ColumnSpec] = Field(min_length=1)
    key: list[str] = Field(default=[], description="Columns that identify a row; [] = all.")
    timestamp: str | None = Field(default=None, description="Event-time column.")
    label: LabelRule

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, name: str) -> str:
        if not DATASET_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a folder-safe name (letters, digits, _ and -)")
        return name

    @field_validator("table")
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
        if any(ch in delimiter for ch in "\r\n\"'") or (delimiter.isspace() and delimiter != "\t"):
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
    def _references(self) -> DatasetSpec:
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
        for key in self.key_columns:
            if by_name[key].nullable:
                raise ValueError(f"key: column {key!r} is nullable; key columns cannot be")
        if self.timestamp is not None:
            _check_timestamp(by_name, self.timestamp, names)
        _check_label(by_name, self.label, names)
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


def load_spec(path: Path) -> DatasetSpec:
    """Read and check a dataset spec; `SpecError` names the file and the offending key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the dataset spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a dataset spec is a mapping (name, format, files, columns, ...)")
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(exc, data)}") from None


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = _location(error["loc"], data)
        message = str(error["msg"]).removeprefix("Value error, ")
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


def spec_schema(spec: DatasetSpec, key_checked: bool = True) -> pa.DataFrameSchema:
    """The pandera schema of the spec's rows (its columns plus `label`), indexed by line.

    Types are enforced by the SQL casts already; this checks nulls, ranges, allowed values,
    patterns and the 0/1 label. `key_checked=False` adds the key uniqueness check (whole-lake
    validation; the ingest's SQL dedup step makes keys unique and tells duplicates from conflicts).
    """
    columns = {
        c.name: pa.Column(None, checks=_checks(c), nullable=c.nullable) for c in spec.columns
    }
    columns[LABEL] = pa.Column(None, checks=[pa.Check.isin([0, 1])], nullable=False)
    return pa.DataFrameSchema(
        columns, strict=True, unique=None if key_checked else spec.key_columns
    )


def _checks(column: ColumnSpec) -> list[pa.Check]:
    checks = []
    if column.min is not None:
        checks.append(pa.Check.ge(column.min))
    if column.max is not None:
        checks.append(pa.Check.le(column.max))
    if column.allowed is not None:
        checks.append(pa.Check.isin(column.allowed))
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(f"(?:{column.pattern})$"))
    return checks
