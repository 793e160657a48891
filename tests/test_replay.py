"""`flip data replay`: daily inbox files cut by timestamp, idempotent, night by night."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flip_core.data.replay import DayFiles, ReplayError, replay
from flip_core.lake import ingest_dataset
from flip_core.spec import DatasetSpec, load_dataset_spec
from flows.cli import app
from tests.conftest import REPO_ROOT
from tests.features_support import ml1m_spec

DAY = 86_400
T0 = int(datetime(2000, 4, 25, tzinfo=UTC).timestamp())
APPS_SPEC = REPO_ROOT / "configs" / "datasets" / "synth-apps.yaml"

ML1M = ml1m_spec()


def days_in_inbox(inbox: Path) -> list[date]:
    return DayFiles.of(ML1M.table("ratings")).days(inbox)


def _raw(tmp_path: Path, lines: list[str], gz: bool = False) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "users.dat").write_text("1::F::1::10::48067\n", encoding="latin-1")
    (raw / "movies.dat").write_text("1::Café (1995)::Comedy\n", encoding="latin-1")
    payload = "".join(f"{line}\n" for line in lines).encode("latin-1")
    if gz:
        (raw / "ratings.users-1-9.dat.gz").write_bytes(gzip.compress(payload))
    else:
        (raw / "ratings.dat").write_bytes(payload)
    return raw


LINES = [
    f"1::1::5::{T0 + 10}",
    f"1::2::3::{T0 + DAY + 5}",
    f"1::3::4::{T0 + 10}",  # same day as the first, later in the file
    f"1::4::1::{T0 + 3 * DAY}",
    "1::5::oops",  # no timestamp: skipped and counted
]


@pytest.mark.parametrize("gz", [False, True])
def test_replay_cuts_by_utc_day_and_copies_side_files(tmp_path: Path, gz: bool):
    raw, inbox = _raw(tmp_path, LINES, gz), tmp_path / "inbox"
    result = replay(ML1M, raw, inbox)
    assert result.written == [date(2000, 4, 25), date(2000, 4, 26), date(2000, 4, 28)]
    assert result.rows_written == 4 and result.undated_lines == 1 and result.remaining == []
    first = (inbox / "ratings-2000-04-25.dat").read_text(encoding="latin-1")
    assert first == f"1::1::5::{T0 + 10}\n1::3::4::{T0 + 10}\n"
    assert (inbox / "movies.dat").read_bytes() == (raw / "movies.dat").read_bytes()
    assert (inbox / "users.dat").is_file()


def test_replay_night_by_night_is_idempotent(tmp_path: Path):
    raw, inbox = _raw(tmp_path, LINES), tmp_path / "inbox"
    one = replay(ML1M, raw, inbox, days=1)
    assert one.written == [date(2000, 4, 25)] and len(one.remaining) == 2
    two = replay(ML1M, raw, inbox, next_days=1)
    assert two.written == [date(2000, 4, 26)] and two.unchanged == [date(2000, 4, 25)]
    again = replay(ML1M, raw, inbox, until=date(2000, 4, 26))
    assert again.written == [] and again.rows_written == 0
    assert days_in_inbox(inbox) == [date(2000, 4, 25), date(2000, 4, 26)]
    rest = replay(ML1M, raw, inbox, next_days=5)
    assert rest.written == [date(2000, 4, 28)] and rest.remaining == []


def test_replay_refuses_an_inbox_of_another_source(tmp_path: Path):
    raw, inbox = _raw(tmp_path, LINES), tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ratings-2000-04-25.dat").write_text("9::9::1::1\n")
    with pytest.raises(ReplayError, match="different content"):
        replay(ML1M, raw, inbox)
    with pytest.raises(ReplayError, match="at most one"):
        replay(ML1M, raw, tmp_path / "other", days=1, next_days=1)
    with pytest.raises(ReplayError, match="does not exist"):
        replay(ML1M, tmp_path / "missing", inbox)


def test_replay_command(tmp_path: Path):
    raw, inbox = _raw(tmp_path, LINES), tmp_path / "inbox"
    runner = CliRunner()
    ok = runner.invoke(
        app, ["data", "replay", "--raw-dir", str(raw), "--inbox", str(inbox), "--days", "2"]
    )
    assert ok.exit_code == 0, ok.output
    assert "wrote 2 new day file(s)" in ok.output and "1 of 3 day(s) left" in ok.output
    bad = runner.invoke(
        app, ["data", "replay", "--raw-dir", str(raw), "--inbox", str(inbox), "--until", "x"]
    )
    assert bad.exit_code == 2 and "not a date" in bad.output
    missing = runner.invoke(
        app, ["data", "replay", "--raw-dir", str(tmp_path / "no"), "--inbox", str(inbox)]
    )
    # the message names a long tmp path, so the console may wrap it anywhere
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())
    assert runner.invoke(app, ["data", "replay", "--help"]).exit_code == 0


def test_replay_follows_a_spec_with_headers_and_the_inbox_ingests_as_the_source(tmp_path: Path):
    from flip_core.data.synth_apps import write_synthetic_apps

    spec = load_dataset_spec(APPS_SPEC)
    raw, inbox = tmp_path / "raw", tmp_path / "inbox"
    counts = write_synthetic_apps(raw, users=30, apps=20, events_per_user=10, seed=1)
    result = replay(spec, raw, inbox)
    assert result.rows_written == counts.events and result.undated_lines == 0
    day_files = sorted(inbox.glob("events-*.csv"))
    assert len(day_files) == result.total_days == len(result.written) > 1
    header = (raw / "events.csv").read_text().splitlines()[0]
    assert all(f.read_text().splitlines()[0] == header for f in day_files)
    assert {"users.csv", "apps.csv"} <= {p.name for p in inbox.iterdir()}
    direct = ingest_dataset(raw, tmp_path / "a", spec).table_rows
    replayed = ingest_dataset(inbox, tmp_path / "b", spec).table_rows
    assert replayed == direct


def _parquet_spec(tmp_path: Path) -> DatasetSpec:
    text = """
name: pq-clicks
tables:
  - name: clicks
    format: parquet
    files: ["clicks*.parquet"]
    columns:
      - {name: event_id, type: int64}
      - {name: user_id, type: int64}
      - {name: at, type: timestamp}
      - {name: clicked, type: int32, allowed: [0, 1]}
    key: [event_id]
events: clicks
timestamp: at
label: {column: clicked}
fields:
  - {name: user_id, role: user}
protocols:
  - {name: pq-time, order: time, train: 0.8, valid: 0.1}
"""
    path = tmp_path / "pq.yaml"
    path.write_text(text)
    return load_dataset_spec(path)


def test_replay_cuts_parquet_events_into_day_files(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = _parquet_spec(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    moments = [datetime.fromtimestamp(T0 + s, tz=UTC) for s in (5, DAY + 1, 7, 2 * DAY)]
    rows = pa.table(
        {
            "event_id": pa.array([1, 2, 3, 4], pa.int64()),
            "user_id": pa.array([1, 1, 2, 2], pa.int64()),
            "at": pa.array(moments, pa.timestamp("us", tz="UTC")),
            "clicked": pa.array([0, 1, 1, 0], pa.int32()),
        }
    )
    pq.write_table(rows, raw / "clicks.parquet")
    result = replay(spec, raw, tmp_path / "inbox", days=2)
    assert result.written == [date(2000, 4, 25), date(2000, 4, 26)] and result.rows_written == 3
    first = pq.read_table(tmp_path / "inbox" / "clicks-2000-04-25.parquet")
    assert first.column("event_id").to_pylist() == [1, 3]
    assert result.remaining == [date(2000, 4, 27)]


def test_replay_needs_a_files_pattern_that_can_name_day_files(tmp_path: Path):
    spec = _parquet_spec(tmp_path)
    table = spec.table("clicks").model_copy(update={"files": ["clicks.parquet"]})
    with pytest.raises(ReplayError, match=r"needs exactly one '\*'"):
        DayFiles.of(table)
