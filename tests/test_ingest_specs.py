"""Dataset specs: CSV and Parquet click logs into the lake, exact counts, quarantine, foreign keys,
bad specs."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flip_core.config import IngestConfig
from flip_core.lake import (
    BadShareError,
    IngestError,
    LakeValidationError,
    ingest_dataset,
    load_manifest,
    read_quarantine,
    validate_spec_lake,
)
from flip_core.layout import DataLayout
from flip_core.spec import SpecError, load_dataset_spec
from tests.conftest import REPO_ROOT

LENIENT = IngestConfig(max_bad_share=1.0)
HEADER = "uid,item,ts,stars,price"
TABLE: dict[str, Any] = {
    "name": "clicks",
    "format": "csv",
    "files": ["clicks*.csv"],
    "columns": [
        {"name": "user_id", "source": "uid", "type": "int64", "min": 1},
        {"name": "item", "type": "string", "pattern": "[a-zàèéç0-9 ,]+"},
        {"name": "ts", "type": "int64", "min": 0},
        {"name": "stars", "type": "int32", "min": 1, "max": 5},
        {"name": "price", "type": "float64", "nullable": True},
    ],
    "key": ["user_id", "item", "ts"],
}
SPEC: dict[str, Any] = {
    "name": "shop",
    "tables": [TABLE],
    "events": "clicks",
    "timestamp": "ts",
    "label": {"column": "stars", "op": ">=", "value": 4},
    "fields": [{"name": "user_id", "role": "user"}, {"name": "item", "role": "item"}],
    "protocols": [{"name": "time-811", "order": "time", "train": 0.8}],
}
# Physical line numbers below count the header as line 1.
GOOD = ["1,a,100,5,1.5", "2,b,101,3,2", '3,"c,d",102,4,', "4,e,103,1,0.5"]


def _write_spec(tmp_path: Path, top: dict[str, Any] | None = None, **table: Any) -> Path:
    """A one-table dataset spec: SPEC with `top` keys and the table's `table` keys replaced."""
    path = tmp_path / "spec.yaml"
    data = {**SPEC, "tables": [{**TABLE, **table}], **(top or {})}
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return path


def _raw(tmp_path: Path, lines: list[str], name: str = "clicks-1.csv", end: str = "\n") -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    (raw / name).write_bytes("".join(line + end for line in lines).encode("utf-8"))
    return raw


def _lake(data_root: Path, dataset: str = "shop", table: str = "clicks") -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(
            "SELECT * EXCLUDE (source_file, ingest_date) "
            "FROM read_parquet(?, hive_partitioning = true) ORDER BY line_number",
            [DataLayout(data_root).lake_table_glob(dataset, table)],
        ).fetchall()


def _quarantine(data_root: Path, dataset: str = "shop") -> list[tuple[str, int, str]]:
    q = read_quarantine(data_root, dataset)
    return list(zip(q["source_file"], q["line_number"].astype(int), q["reason"], strict=True))


def test_csv_counts_quarantine_lines_and_reingest(tmp_path: Path) -> None:
    lines = [
        HEADER,
        *GOOD,  # lines 2-5
        "",  # 6: blank, skipped
        "1,a,100,5,1.5",  # 7: duplicate of line 2, kept once
        "1,a,100,4,1.5",  # 8: same key as line 2, other stars
        "x,f,104,5,1",  # 9: not an integer
        "5,g,105,9,1",  # 10: stars out of range
        "6,h,106",  # 11: too few fields
        "7,i,107,,1",  # 12: stars is not nullable
    ]
    raw = _raw(tmp_path, lines, end="\r\n")
    spec = load_dataset_spec(_write_spec(tmp_path))
    data_root = tmp_path / "data"
    result = ingest_dataset(raw, data_root, spec, LENIENT, ingest_date="2024-01-01")

    [report] = result.sources
    assert (report.kept, report.duplicates, report.quarantined) == (4, 1, 5)
    assert report.crlf_lines == 12 and report.blank_lines == 1
    assert _quarantine(data_root) == [
        ("clicks-1.csv", 8, "duplicate key of line 2 with other values"),
        ("clicks-1.csv", 9, "user_id: not an integer ('x')"),
        ("clicks-1.csv", 10, "stars: in_range(1, 5) failed (got 9)"),
        ("clicks-1.csv", 11, "expected 5 fields separated by ',', found 3"),
        ("clicks-1.csv", 12, "stars: missing value (column is not nullable)"),
    ]
    assert _lake(data_root) == [  # the label is derived later, from the spec's rule
        (1, "a", 100, 5, 1.5, 2),
        (2, "b", 101, 3, 2.0, 3),
        (3, "c,d", 102, 4, None, 4),
        (4, "e", 103, 1, 0.5, 5),
    ]
    assert "clicks: +4 rows, 5 quarantined, 4 in the lake" in result.summary()
    assert validate_spec_lake(data_root, spec).rows == {"clicks": 4}

    again = ingest_dataset(raw, data_root, spec, LENIENT, ingest_date="2024-01-02")
    assert again.added("clicks") == 0 and again.sources[0].status == "skipped"
    assert len(_lake(data_root)) == 4

    # A new day's file adds a partition; a row the lake holds already is counted, not added.
    _raw(tmp_path, [HEADER, "1,a,100,5,1.5", "8,j,108,5,3"], name="clicks-2.csv")
    day2 = ingest_dataset(raw, data_root, spec, LENIENT, ingest_date="2024-01-02")
    new = [s for s in day2.sources if s.status == "ingested"]
    assert [(s.path.name, s.kept, s.already_in_lake) for s in new] == [("clicks-2.csv", 1, 1)]
    parts = sorted(p.name for p in (DataLayout(data_root).lake("shop") / "clicks").iterdir())
    assert parts == ["ingest_date=2024-01-01", "ingest_date=2024-01-02"]
    assert load_manifest(DataLayout(data_root).lake("shop"), "shop").rows("clicks") == 5


@pytest.mark.parametrize(
    ("delimiter", "encoding", "bom"),
    [(";", "latin-1", b""), ("\t", "utf-8", b"\xef\xbb\xbf"), ("::", "cp1252", b"")],
)
def test_delimiters_and_encodings(
    tmp_path: Path, delimiter: str, encoding: str, bom: bytes
) -> None:
    rows = ["1,café,100,5,1", "2,b,101,2,", "3,crème,102,4,7.25"]
    lines = [HEADER, *rows]
    text = "".join(line.replace(",", delimiter) + "\n" for line in lines)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "clicks.csv").write_bytes(bom + text.encode(encoding))
    spec = load_dataset_spec(
        _write_spec(tmp_path, delimiter=delimiter, encoding=encoding, quote=None)
    )
    result = ingest_dataset(raw, tmp_path / "data", spec, LENIENT)
    assert (result.added("clicks"), result.quarantined()) == (3, 0)
    assert [row[:5] for row in _lake(tmp_path / "data")] == [
        (1, "café", 100, 5, 1.0),
        (2, "b", 101, 2, None),
        (3, "crème", 102, 4, 7.25),
    ]


def test_wrong_encoding_bytes_are_quarantined_with_the_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    data = (HEADER + "\n1,a,100,5,1\n2,caf\xe9,101,5,1\n").encode("latin-1")
    (raw / "clicks.csv").write_bytes(data)
    result = ingest_dataset(
        raw, tmp_path / "data", load_dataset_spec(_write_spec(tmp_path)), LENIENT
    )
    assert (result.added("clicks"), result.quarantined()) == (1, 1)
    assert _quarantine(tmp_path / "data") == [
        ("clicks.csv", 3, "invalid bytes for utf-8 at column 6")
    ]


def test_header_false_reads_columns_in_order(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["1,a,100,5,1", "2,b,101,2,2"])
    spec = load_dataset_spec(_write_spec(tmp_path, header=False))
    result = ingest_dataset(raw, tmp_path / "data", spec, LENIENT)
    assert result.added("clicks") == 2
    assert [(r[0], r[-1]) for r in _lake(tmp_path / "data")] == [(1, 1), (2, 2)]


def test_parquet_rows_are_indexed_and_label_rule_in(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    table = pa.table(
        {
            "event": pa.array([10, 11, 12, 10, 13, 14], pa.int64()),
            "action": ["buy", "view", "cart", "buy", None, "view"],
            "when": pa.array([5, 6, 7, 5, 8, -1], pa.int64()),
            "unused": ["x"] * 6,
        }
    )
    pq.write_table(table, raw / "events.parquet")
    spec_path = tmp_path / "events.yaml"
    spec_path.write_text(
        "name: events\nevents: events\ntables:\n"
        "  - name: events\n    format: parquet\n    files: ['*.parquet']\n    key: [event_id]\n"
        "    columns:\n"
        "      - {name: event_id, source: event, type: int64}\n"
        "      - {name: action, type: string, allowed: [buy, view, cart]}\n"
        "      - {name: t, source: when, type: int64, min: 0}\n"
        "timestamp: t\nlabel: {column: action, op: in, value: [buy, cart]}\n"
        "fields: [{name: event_id, role: item}]\n"
        "protocols: [{name: p, order: file, train: 0.8}]\n",
        encoding="utf-8",
    )
    spec = load_dataset_spec(spec_path)
    data_root = tmp_path / "data"
    result = ingest_dataset(raw, data_root, spec, LENIENT)
    [report] = result.sources
    assert (report.kept, report.duplicates, report.quarantined) == (3, 1, 2)
    assert _quarantine(data_root, "events") == [
        ("events.parquet", 4, "action: missing value (column is not nullable)"),
        ("events.parquet", 5, "t: greater_than_or_equal_to(0) failed (got -1)"),
    ]
    assert "events.parquet row 4" in report.problems[0]
    assert _lake(data_root, "events", "events") == [
        (10, "buy", 5, 0),
        (11, "view", 6, 1),
        (12, "cart", 7, 2),
    ]
    assert ingest_dataset(raw, data_root, spec, LENIENT).added("events") == 0


def test_bad_share_leaves_no_partition_and_keeps_the_quarantine(tmp_path: Path) -> None:
    raw = _raw(tmp_path, [HEADER, *GOOD, "x,f,104,5,1"])
    data_root = tmp_path / "data"
    spec = load_dataset_spec(_write_spec(tmp_path))
    with pytest.raises(BadShareError, match=r"1 of 5 rows quarantined \(20.00%\) > limit 1.00%"):
        ingest_dataset(raw, data_root, spec, IngestConfig())
    root = DataLayout(data_root).lake("shop")
    assert not list(root.rglob("*.parquet"))
    assert not (root / "_manifest.json").exists()
    assert _quarantine(data_root) == [("clicks-1.csv", 6, "user_id: not an integer ('x')")]
    with pytest.raises(LakeValidationError, match="no Parquet files"):
        validate_spec_lake(data_root, spec)


def test_header_without_a_spec_column_fails_naming_file_and_column(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["uid;item;ts;stars;price", "1;a;100;5;1"])
    with pytest.raises(IngestError, match=r"clicks-1.csv line 1 \(header\): no column 'uid'"):
        ingest_dataset(raw, tmp_path / "data", load_dataset_spec(_write_spec(tmp_path)), LENIENT)
    assert not list((tmp_path / "data").rglob("*.parquet"))


def test_validation_catches_a_duplicated_key_in_the_lake(tmp_path: Path) -> None:
    spec = load_dataset_spec(_write_spec(tmp_path))
    data_root = tmp_path / "data"
    ingest_dataset(_raw(tmp_path, [HEADER, *GOOD]), data_root, spec, LENIENT)
    [part] = (DataLayout(data_root).lake("shop") / "clicks").rglob("*.parquet")
    rows = pq.read_table(part)
    pq.write_table(pa.concat_tables([rows, rows.slice(0, 1)]), part)
    report = validate_spec_lake(data_root, spec, strict=False)
    assert any("duplicate key" in p for p in report.problems)
    assert any("5 rows in files, 4 in the manifest" in p for p in report.problems)


@pytest.mark.parametrize(
    ("top", "changes", "message"),
    [
        (False, {"colour": 1}, "tables[0] (clicks).colour: Extra inputs are not permitted"),
        (True, {"colour": 1}, "colour: Extra inputs are not permitted"),
        (False, {"format": "xlsx"}, "format: Input should be 'csv' or 'parquet'"),
        (
            False,
            {"columns": [{"name": 'a"; DROP TABLE x; --', "type": "int64"}]},
            "columns[0] (a\"; DROP TABLE x; --).name: 'a\"; DROP TABLE x; --' is not a plain",
        ),
        (False, {"columns": [{"name": "label", "type": "int32"}]}, "'label' is reserved"),
        (False, {"key": ["nope"]}, "key: 'nope' is not a column"),
        (True, {"label": {"column": "stars", "op": ">="}}, "label: op '>=' needs a value"),
        (True, {"label": {"column": "item", "op": ">", "value": 3}}, "needs a numeric column"),
        (
            False,
            {"columns": [{"name": "s", "type": "string", "min": 1}]},
            "columns[0] (s): min/max need a numeric type",
        ),
        (False, {"encoding": "utf-16"}, "encoding: 'utf-16' is not ASCII-compatible"),
        (False, {"files": ["../x/*.csv"]}, "files: '../x/*.csv' must be a glob relative"),
        (False, {"delimiter": "::"}, "quote: quoted fields need a one-character delimiter"),
        (False, {"columns": [{"name": "s", "type": "float32"}]}, "columns[0] (s).type: Input"),
    ],
)
def test_bad_specs_name_the_file_and_key(
    tmp_path: Path, top: bool, changes: dict[str, Any], message: str
) -> None:
    path = _write_spec(tmp_path, changes) if top else _write_spec(tmp_path, **changes)
    with pytest.raises(SpecError) as caught:
        load_dataset_spec(path)
    text = str(caught.value).replace("Value error, ", "")
    assert text.startswith(f"{path}: ")
    assert message in text


def test_unreadable_specs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML"):
        load_dataset_spec(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad.yaml: a dataset spec is a mapping"):
        load_dataset_spec(bad)


def test_example_spec_through_the_cli(tmp_path: Path) -> None:
    from flows.cli import app  # imports torch: only here

    example = REPO_ROOT / "configs" / "datasets" / "clicks.yaml"
    raw = _raw(
        tmp_path,
        [
            "event_id,user_id,item_id,ts,device,dwell_s,clicked",
            "1,7,i-1,1700000000,mobile,3.5,1",
            "2,7,i-2,1700000060,NA,,0",
            "3,8,i-1,1700000120,fridge,1,1",
        ],
        name="clicks-2024-01-01.csv",
    )
    data_root = tmp_path / "data"
    args = ["data", "ingest", "--dataset", str(example), "--raw-dir", str(raw)]
    args += ["--data-root", str(data_root), "--set", "ingest.max_bad_share=0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "clicks: +2 rows, 1 quarantined, 2 in the lake" in result.output
    assert "lake valid: {'clicks': 2}" in result.output
    assert _quarantine(data_root, "clicks-demo") == [
        (
            "clicks-2024-01-01.csv",
            4,
            "device: isin(['mobile', 'desktop', 'tablet']) failed (got 'fridge')",
        )
    ]

    bad = _write_spec(tmp_path, key=["nope"])
    args = ["data", "ingest", "--dataset", str(bad), "--raw-dir", str(raw)]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 2
    assert "spec error:" in failed.output and "key: 'nope' is not a column" in failed.output


def test_gzip_csv_with_timestamp_and_boolean_label(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    text = "at|who|flag\n2024-01-02 10:00:00|u1|true\n2024-01-02 11:30:00|u2|false\n"
    text += "yesterday|u3|true\n2024-01-03 09:00:00|u4|maybe\n"
    (raw / "log.tsv.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    spec_path = tmp_path / "log.yaml"
    spec_path.write_text(
        "name: log\nevents: log\ntables:\n"
        "  - name: log\n    format: csv\n    files: ['*.tsv.gz']\n    delimiter: '|'\n"
        "    key: [at, who]\n    columns:\n"
        "      - {name: at, type: timestamp}\n      - {name: who, type: string}\n"
        "      - {name: flag, type: bool}\n"
        "timestamp: at\nlabel: {column: flag}\nfields: [{name: who, role: user}]\n"
        "protocols: [{name: p, order: time, train: 0.8}]\n",
        encoding="utf-8",
    )
    data_root = tmp_path / "data"
    result = ingest_dataset(raw, data_root, load_dataset_spec(spec_path), LENIENT)
    assert (result.added("log"), result.quarantined()) == (2, 2)
    assert _quarantine(data_root, "log") == [
        ("log.tsv.gz", 4, "at: not a timestamp ('yesterday')"),
        ("log.tsv.gz", 5, "flag: not a boolean ('maybe')"),
    ]
    assert _lake(data_root, "log", "log") == [
        (datetime(2024, 1, 2, 10), "u1", True, 2),
        (datetime(2024, 1, 2, 11, 30), "u2", False, 3),
    ]


def test_the_configured_spec_drives_the_ingest(tmp_path: Path) -> None:
    from flip_core.config import load_config
    from flip_core.data.build import dataset_spec

    raw = _raw(tmp_path, [HEADER, *GOOD])
    spec = _write_spec(tmp_path)
    config = load_config(
        None, [f"paths.dataset={spec}", f"paths.raw_dir={raw}", f"paths.data_root={tmp_path}/d"]
    )
    assert dataset_spec(config).name == "shop"
    result = ingest_dataset(raw, config.paths.data_root, dataset_spec(config), config.ingest)
    assert result.added("clicks") == 4
    assert len(_lake(tmp_path / "d")) == 4


def test_unreadable_parquet_and_a_changed_spec_fail_clearly(tmp_path: Path) -> None:
    raw = _raw(tmp_path, [HEADER, *GOOD])
    data_root = tmp_path / "data"
    ingest_dataset(raw, data_root, load_dataset_spec(_write_spec(tmp_path)), LENIENT)
    narrower = load_dataset_spec(_write_spec(tmp_path, columns=TABLE["columns"][:4]))
    with pytest.raises(IngestError, match=r"a spec with other columns needs a new dataset name"):
        ingest_dataset(raw, data_root, narrower, LENIENT)
    assert "columns [" in validate_spec_lake(data_root, narrower, strict=False).problems[0]

    (raw / "broken.parquet").write_bytes(b"PAR1 not really")
    broken = _write_spec(tmp_path, {"name": "broken"}, format="parquet", files=["*.parquet"])
    spec = load_dataset_spec(broken)
    with pytest.raises(IngestError, match=r"broken.parquet: not a readable Parquet file"):
        ingest_dataset(raw, data_root, spec, LENIENT)


def _shop_with_items(tmp_path: Path, items: list[str]) -> tuple[Path, Path]:
    """A raw folder and spec: clicks joined with items on the two-column key (item, size)."""
    tmp_path.mkdir(exist_ok=True)
    spec = _write_spec(
        tmp_path,
        {
            "tables": [
                {
                    "name": "items",
                    "format": "csv",
                    "files": ["items*.csv"],
                    "columns": [
                        {"name": "item", "type": "string"},
                        {"name": "size", "type": "int32"},
                        {"name": "cost", "type": "float64", "min": 0},
                    ],
                    "key": ["item", "size"],
                },
                {**TABLE, "columns": [*TABLE["columns"], {"name": "size", "type": "int32"}]},
            ],
            "joins": [{"table": "items", "key": ["item", "size"]}],
        },
    )
    raw = _raw(tmp_path, ["item,size,cost", *items], name="items.csv")
    clicks = ["1,a,100,5,1,1", "2,a,101,3,2,2", "3,b,102,4,,1", "4,c,103,1,0.5,1"]
    _raw(tmp_path, [f"{HEADER},size", *clicks])
    return raw, spec


def test_multi_column_foreign_keys_name_the_key_table_and_root_cause(tmp_path: Path) -> None:
    raw, spec = _shop_with_items(tmp_path, ["a,1,2.5", "b,1,-1", "c,2,1"])
    result = ingest_dataset(raw, tmp_path / "data", load_dataset_spec(spec), LENIENT)
    assert (result.added("items"), result.added("clicks")) == (2, 1)
    cost = "cost: greater_than_or_equal_to(0) failed (got -1.0)"
    assert _quarantine(tmp_path / "data") == [
        ("clicks-1.csv", 3, "item 'a', size 2 is not a row of items"),
        ("clicks-1.csv", 4, f"item 'b', size 1 was quarantined (items.csv line 3: {cost})"),
        ("clicks-1.csv", 5, "item 'c', size 1 is not a row of items"),
        ("items.csv", 3, cost),
    ]
    # The next run knows the lake's items: a new click file on a known key goes in.
    _raw(tmp_path, [f"{HEADER},size", "5,c,104,2,1,2"], name="clicks-2.csv")
    again = ingest_dataset(raw, tmp_path / "data", load_dataset_spec(spec), LENIENT)
    assert again.added("clicks") == 1 and again.quarantined() == 0
    # No item at all: every click says so.
    empty, spec = _shop_with_items(tmp_path / "empty", [])
    with pytest.raises(IngestError, match="clicks would have no row"):
        ingest_dataset(empty, tmp_path / "empty" / "data", load_dataset_spec(spec), LENIENT)
    reasons = {q[2] for q in _quarantine(tmp_path / "empty" / "data")}
    assert reasons == {"items.csv is empty, so items has no row"}


def test_a_chain_of_joins_checks_each_link_whatever_the_table_order(tmp_path: Path) -> None:
    # clicks -> items (on item) -> brands (on brand, a column of items): items go in after
    # brands although the spec lists them first, and a click of a quarantined item says why.
    table = {"format": "csv", "key": []}
    spec = _write_spec(
        tmp_path,
        {
            "tables": [
                {
                    **table,
                    "name": "items",
                    "files": ["items.csv"],
                    "columns": [
                        {"name": "item", "type": "string"},
                        {"name": "brand", "type": "string"},
                    ],
                    "key": ["item"],
                },
                {
                    **table,
                    "name": "brands",
                    "files": ["brands.csv"],
                    "columns": [{"name": "brand", "type": "string"}],
                    "key": ["brand"],
                },
                {
                    **table,
                    "name": "clicks",
                    "files": ["clicks.csv"],
                    "columns": [
                        {"name": "user_id", "type": "int64"},
                        {"name": "item", "type": "string"},
                        {"name": "ts", "type": "int64"},
                        {"name": "stars", "type": "int32"},
                    ],
                },
            ],
            "joins": [{"table": "items", "key": ["item"]}, {"table": "brands", "key": ["brand"]}],
        },
    )
    raw = _raw(tmp_path, ["brand", "b1"], name="brands.csv")
    _raw(tmp_path, ["item,brand", "i1,b1", "i2,b2"], name="items.csv")
    _raw(tmp_path, ["user_id,item,ts,stars", "1,i1,5,4", "2,i2,6,3"], name="clicks.csv")
    result = ingest_dataset(raw, tmp_path / "data", load_dataset_spec(spec), LENIENT)
    assert [s.table for s in result.sources] == ["brands", "items", "clicks"]
    assert (result.added("items"), result.added("clicks")) == (1, 1)
    brand = "brand 'b2' is not a row of brands"
    assert _quarantine(tmp_path / "data") == [
        ("clicks.csv", 3, f"item 'i2' was quarantined (items.csv line 3: {brand})"),
        ("items.csv", 3, brand),
    ]
