"""Ingest of the ml-1m spec into the lake: counts, idempotency, new days, dimension versions,
crashes, validation."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flip_core.config import IngestConfig
from flip_core.lake import (
    IngestError,
    LakeValidationError,
    ingest_dataset,
    load_manifest,
    read_quarantine,
    validate_spec_lake,
)
from flip_core.layout import DataLayout
from flows.cli import app
from tests.conftest import SHARED_DATA
from tests.features_support import ml1m_spec

SPEC = ml1m_spec()
DATASET = SPEC.name

ML1M = SHARED_DATA / "ml-1m"
ML1M_COUNTS = {"ratings": 487_650, "users": 6_040, "movies": 3_883}
CONTRACT = {
    "ratings": [
        ("user_id", "INTEGER"),
        ("movie_id", "INTEGER"),
        ("rating", "INTEGER"),
        ("timestamp", "BIGINT"),
        ("source_file", "VARCHAR"),
        ("line_number", "BIGINT"),
        ("ingest_date", "DATE"),
    ],
    "users": [
        ("user_id", "INTEGER"),
        ("gender", "VARCHAR"),
        ("age", "INTEGER"),
        ("occupation", "INTEGER"),
        ("zip", "VARCHAR"),
        ("source_file", "VARCHAR"),
        ("line_number", "BIGINT"),
        ("ingest_date", "DATE"),
    ],
    "movies": [
        ("movie_id", "INTEGER"),
        ("title", "VARCHAR"),
        ("genres", "VARCHAR"),
        ("source_file", "VARCHAR"),
        ("line_number", "BIGINT"),
        ("ingest_date", "DATE"),
    ],
}


def _line_count(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line)


def _lake_rows(data_root: Path, table: str) -> int:
    with duckdb.connect() as con:
        row = con.execute(
            "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)",
            [DataLayout(data_root).lake_table_glob(DATASET, table)],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _real_or_synthetic(synthetic_raw: Path) -> tuple[Path, dict[str, int]]:
    if (ML1M / "users.dat").is_file():
        return ML1M, ML1M_COUNTS
    counts = {t: _line_count(synthetic_raw / f"{t}.dat") for t in ("ratings", "users", "movies")}
    return synthetic_raw, counts


def test_ml1m_counts_and_second_ingest_adds_nothing(synthetic_raw: Path, tmp_path: Path) -> None:
    raw, expected = _real_or_synthetic(synthetic_raw)
    data_root = tmp_path / "data"
    first = ingest_dataset(raw, data_root, SPEC)
    assert {t: first.added(t) for t in expected} == expected
    assert first.quarantined() == 0
    assert first.table_rows == expected
    assert {t: _lake_rows(data_root, t) for t in expected} == expected

    second = ingest_dataset(raw, data_root, SPEC)
    assert {t: second.added(t) for t in expected} == {t: 0 for t in expected}
    assert all(s.status == "skipped" for s in second.sources)
    assert {t: _lake_rows(data_root, t) for t in expected} == expected
    report = validate_spec_lake(data_root, SPEC)
    assert report.rows == expected and report.ok


def test_lake_layout_and_types_follow_the_contract(synthetic_raw: Path, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    result = ingest_dataset(synthetic_raw, data_root, SPEC, ingest_date="2026-01-02")
    root = DataLayout(data_root).lake(DATASET)
    for table, columns in CONTRACT.items():
        with duckdb.connect() as con:
            described = con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = true)",
                [DataLayout(data_root).lake_table_glob(DATASET, table)],
            ).fetchall()
        assert [(c[0], c[1]) for c in described] == columns
        assert [p.name for p in (root / table).iterdir()] == ["ingest_date=2026-01-02"]
    manifest = json.loads((root / "_manifest.json").read_text())
    assert {s["table"] for s in manifest["sources"]} == {"ratings", "users", "movies"}
    for source in manifest["sources"]:
        assert len(source["sha256"]) == 64
        assert source["rows"] == result.added(source["table"])
    with duckdb.connect() as con:
        first = con.execute(
            "SELECT source_file, line_number FROM read_parquet(?) ORDER BY line_number LIMIT 1",
            [DataLayout(data_root).lake_table_glob(DATASET, "ratings")],
        ).fetchone()
    assert first == ("ratings.dat", 1)


def test_new_day_file_adds_a_partition_and_overlap_is_not_duplicated(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    data_root = tmp_path / "data"
    ingest_dataset(raw, data_root, SPEC, ingest_date="2026-01-01")
    before = _lake_rows(data_root, "ratings")
    old_lines = (raw / "ratings.dat").read_text(encoding="latin-1").splitlines()
    new_lines = [f"1::{m}::4::{1_100_000_000 + m}" for m in range(1, 11)]
    (raw / "ratings-2026-01-02.dat").write_text(
        "\n".join(old_lines[:5] + new_lines) + "\n", encoding="latin-1"
    )
    result = ingest_dataset(raw, data_root, SPEC, ingest_date="2026-01-02")
    assert result.added("ratings") == 10
    day2 = next(s for s in result.sources if s.path.name == "ratings-2026-01-02.dat")
    assert day2.already_in_lake == 5
    assert "ratings-2026-01-02.dat: 5 row(s) already in the lake, not added again" in (
        result.messages
    )
    assert _lake_rows(data_root, "ratings") == before + 10
    parts = sorted(p.name for p in (DataLayout(data_root).lake(DATASET) / "ratings").iterdir())
    assert parts == ["ingest_date=2026-01-01", "ingest_date=2026-01-02"]


def test_new_version_of_users_adds_new_keys_and_quarantines_changes(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    data_root = tmp_path / "data"
    ingest_dataset(raw, data_root, SPEC)
    users = (raw / "users.dat").read_text(encoding="latin-1").splitlines()
    n = len(users)
    first = users[0].split("::")
    changed = "::".join([first[0], "F" if first[1] == "M" else "M", *first[2:]])
    (raw / "users.dat").write_text(
        "\n".join([changed, *users[1:], f"{n + 1}::M::25::3::12345"]) + "\n", encoding="latin-1"
    )
    result = ingest_dataset(raw, data_root, SPEC, IngestConfig(max_bad_share=0.05))
    report = next(s for s in result.sources if s.table == "users")
    assert (report.kept, report.quarantined, report.already_in_lake) == (1, 1, n - 1)
    quarantined = read_quarantine(data_root, DATASET)
    assert quarantined["line_number"].tolist() == [1]
    assert quarantined["reason"].tolist() == [
        "key already in the lake with other values (users.dat line 1)"
    ]
    assert quarantined["raw_line"].tolist() == [changed]
    assert _lake_rows(data_root, "users") == n + 1
    assert validate_spec_lake(data_root, SPEC).ok


def test_crashed_run_leaves_no_partition_and_orphans_are_removed(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    root = DataLayout(data_root).lake(DATASET)
    ingest_dataset(synthetic_raw, data_root, SPEC, ingest_date="2026-01-01")
    # A run that died after renaming one file but before writing the manifest.
    orphan = root / "ratings" / "ingest_date=2026-01-02" / "part-crashed-000.parquet"
    orphan.parent.mkdir(parents=True)
    shutil.copy(next((root / "ratings" / "ingest_date=2026-01-01").glob("*.parquet")), orphan)
    (root / ".staging-crashed" / "ratings").mkdir(parents=True)
    with pytest.raises(LakeValidationError, match="not listed in the manifest"):
        validate_spec_lake(data_root, SPEC)
    result = ingest_dataset(synthetic_raw, data_root, SPEC)
    assert sorted(result.removed_orphans) == [
        ".staging-crashed",
        "ratings/ingest_date=2026-01-02/part-crashed-000.parquet",
    ]
    assert validate_spec_lake(data_root, SPEC).ok


def test_validate_lake_reports_rows_that_break_the_models(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    ingest_dataset(synthetic_raw, data_root, SPEC)
    part = next((DataLayout(data_root).lake(DATASET) / "ratings").glob("*/*.parquet"))
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * REPLACE (CASE WHEN line_number = 3 THEN 7 ELSE rating END AS rating) "
            "FROM read_parquet(?, hive_partitioning = false)) TO '"
            + str(part)
            + ".new' (FORMAT parquet)",
            [str(part)],
        )
    Path(f"{part}.new").replace(part)
    with pytest.raises(LakeValidationError) as err:
        validate_spec_lake(data_root, SPEC)
    assert "ratings ratings.dat line 3: rating: in_range(1, 5) failed (got 7)" in str(err.value)


def test_cli_ingest_prints_summary_and_fails_in_one_line(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    data_root = tmp_path / "data"
    ok = runner.invoke(
        app, ["data", "ingest", "--raw-dir", str(synthetic_raw), "--data-root", str(data_root)]
    )
    assert ok.exit_code == 0, ok.output
    assert "ratings: +" in ok.output and "lake valid:" in ok.output
    missing = runner.invoke(
        app, ["data", "ingest", "--raw-dir", str(tmp_path / "nope"), "--data-root", str(data_root)]
    )
    assert missing.exit_code == 1
    assert "ingest failed: raw data folder" in missing.output and "does not exist" in missing.output
    bad_date = runner.invoke(
        app, ["data", "ingest", "--raw-dir", str(synthetic_raw), "--ingest-date", "yesterday"]
    )
    assert bad_date.exit_code == 2
    assert "ingest.ingest_date" in bad_date.output
    for args in (["data", "ingest"], ["data", "download"]):
        assert runner.invoke(app, [*args, "--help"]).exit_code == 0


def test_cli_errors_print_bracketed_text_as_it_is(tmp_path: Path) -> None:
    # console markup must not eat (or crash on) brackets that come from the data or the config
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "users.dat").write_text("1::F::1::10::48067\n", encoding="latin-1")
    (raw / "movies.dat").write_text("1::Toy Story (1995)::Animation\n", encoding="latin-1")
    (raw / "ratings.dat").write_text("1::1::5::978300760\n[/b]::1::5::1\n", encoding="latin-1")
    runner = CliRunner()
    args = ["data", "ingest", "--raw-dir", str(raw), "--data-root", str(tmp_path / "data")]
    bad_row = runner.invoke(app, args)
    assert bad_row.exit_code == 1
    assert "ratings.dat line 2: user_id: not an integer ('[/b]')" in bad_row.output
    bad_limit = runner.invoke(app, [*args, "--set", "ingest.duckdb.memory_limit=lots"])
    assert bad_limit.exit_code == 2
    assert "'ingest.duckdb.memory_limit': Value error, expected a size such as 4GB" in (
        bad_limit.output
    )
    assert "(got 'lots')" in bad_limit.output


@pytest.mark.usefixtures("prefect_api")
def test_ingest_flow_reports_the_lake_and_reruns_add_nothing(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    from flows.ingest import ingest_flow

    data_root = tmp_path / "data"
    result = ingest_flow(data_root=data_root, raw_dir=synthetic_raw)
    expected = {t: _line_count(synthetic_raw / f"{t}.dat") for t in ("ratings", "users", "movies")}
    assert result["lake_rows"] == expected
    assert result["lake_added"] == expected
    assert result["quarantined"] == 0
    assert result["lake_dir"] == str(DataLayout(data_root).lake(DATASET))
    again = ingest_flow(data_root=data_root, raw_dir=synthetic_raw)
    assert again["lake_rows"] == expected
    assert again["lake_added"] == {t: 0 for t in expected}
    assert again["lake_hash"] == result["lake_hash"]
    manifest = load_manifest(DataLayout(data_root).lake(DATASET), DATASET)
    assert manifest.rows("ratings") == expected["ratings"]


def test_a_second_ingest_of_the_same_lake_at_once_fails_clearly(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    root = DataLayout(data_root).lake(DATASET)
    root.mkdir(parents=True)
    with (root / ".ingest.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running ingest holds it
        with pytest.raises(IngestError, match="another ingest is running on"):
            ingest_dataset(synthetic_raw, data_root, SPEC)
    assert ingest_dataset(synthetic_raw, data_root, SPEC).added("ratings") > 0


def test_validate_lake_finds_ratings_of_a_user_the_lake_lost(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    ingest_dataset(synthetic_raw, data_root, SPEC)
    (part,) = (DataLayout(data_root).lake(DATASET) / "users").glob("*/*.parquet")
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * FROM read_parquet(?, hive_partitioning = false) WHERE user_id <> 1) "
            "TO '" + str(part) + ".new' (FORMAT parquet)",
            [str(part)],
        )
        lines = con.execute(
            "SELECT line_number FROM read_parquet(?) WHERE user_id = 1 ORDER BY line_number",
            [DataLayout(data_root).lake_table_glob(DATASET, "ratings")],
        ).fetchall()
    Path(f"{part}.new").replace(part)
    problems = validate_spec_lake(data_root, SPEC, strict=False).problems
    shown = [f"ratings ratings.dat line {n}: user_id 1 is not a row of users" for (n,) in lines]
    assert [p for p in problems if "is not a row of" in p] == shown[:5]
    assert f"ratings: {len(lines) - 5} more rows name no row of users" in problems
