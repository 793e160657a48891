"""`flip data replay`: daily inbox files cut by timestamp, idempotent, night by night."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flip_core.data.replay import ReplayError, days_in_inbox, replay
from flows.cli import app

DAY = 86_400
T0 = int(datetime(2000, 4, 25, tzinfo=UTC).timestamp())


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
    result = replay(raw, inbox)
    assert result.written == [date(2000, 4, 25), date(2000, 4, 26), date(2000, 4, 28)]
    assert result.rows_written == 4 and result.undated_lines == 1 and result.remaining == []
    first = (inbox / "ratings-2000-04-25.dat").read_text(encoding="latin-1")
    assert first == f"1::1::5::{T0 + 10}\n1::3::4::{T0 + 10}\n"
    assert (inbox / "movies.dat").read_bytes() == (raw / "movies.dat").read_bytes()
    assert (inbox / "users.dat").is_file()


def test_replay_night_by_night_is_idempotent(tmp_path: Path):
    raw, inbox = _raw(tmp_path, LINES), tmp_path / "inbox"
    one = replay(raw, inbox, days=1)
    assert one.written == [date(2000, 4, 25)] and len(one.remaining) == 2
    two = replay(raw, inbox, next_days=1)
    assert two.written == [date(2000, 4, 26)] and two.unchanged == [date(2000, 4, 25)]
    again = replay(raw, inbox, until=date(2000, 4, 26))
    assert again.written == [] and again.rows_written == 0
    assert days_in_inbox(inbox) == [date(2000, 4, 25), date(2000, 4, 26)]
    rest = replay(raw, inbox, next_days=5)
    assert rest.written == [date(2000, 4, 28)] and rest.remaining == []


def test_replay_refuses_an_inbox_of_another_source(tmp_path: Path):
    raw, inbox = _raw(tmp_path, LINES), tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ratings-2000-04-25.dat").write_text("9::9::1::1\n")
    with pytest.raises(ReplayError, match="different content"):
        replay(raw, inbox)
    with pytest.raises(ReplayError, match="at most one"):
        replay(raw, tmp_path / "other", days=1, next_days=1)
    with pytest.raises(ReplayError, match="does not exist"):
        replay(tmp_path / "missing", inbox)


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
