"""The dataset downloader against a local HTTP server serving a zip built here."""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flip_core.lake.download import DownloadError, download_archive
from flows.cli import app
from tests.features_support import ml1m_spec

EXPECTED = "0" * 32  # an md5 no test zip has


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP on 127.0.0.1; yields (base url, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _zip(path: Path, members: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


MEMBERS = {
    "ml-1m/users.dat": "1::F::1::10::48067\n",
    "ml-1m/movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n",
    "ml-1m/ratings.dat": "1::1::5::978300760\n",
}


def test_download_verifies_md5_and_unpacks(served, tmp_path: Path) -> None:
    url, root = served
    md5 = _zip(root / "ml-1m.zip", MEMBERS)
    result = download_archive(tmp_path / "out", f"{url}/ml-1m.zip", md5)
    assert result.md5 == md5
    assert result.folder == tmp_path / "out" / "ml-1m"
    assert sorted(result.files) == sorted(MEMBERS)
    for name, text in MEMBERS.items():
        assert (tmp_path / "out" / name).read_text() == text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ml-1m"]  # no zip or temp left


def test_checksum_mismatch_fails_and_unpacks_nothing(served, tmp_path: Path) -> None:
    url, root = served
    md5 = _zip(root / "ml-1m.zip", MEMBERS)
    with pytest.raises(DownloadError) as err:
        download_archive(tmp_path / "out", f"{url}/ml-1m.zip", EXPECTED)
    assert str(err.value) == (
        f"checksum mismatch for {url}/ml-1m.zip: md5 {md5}, expected {EXPECTED}; nothing unpacked"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_offline_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connecting is refused
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    with pytest.raises(DownloadError, match=r"cannot reach .*ml-1m.zip \(.*refused.*\); are we"):
        download_archive(tmp_path / "out", url, EXPECTED)


def test_http_error_and_zip_slip(served, tmp_path: Path) -> None:
    url, root = served
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_archive(tmp_path / "out", f"{url}/missing.zip", EXPECTED)
    md5 = _zip(root / "evil.zip", {"../escape.dat": "x"})
    with pytest.raises(DownloadError, match="points outside the target folder"):
        download_archive(tmp_path / "out", f"{url}/evil.zip", md5)
    assert not (tmp_path / "escape.dat").exists()


def test_cli_download_reports_mismatch_in_one_line(served, tmp_path: Path) -> None:
    url, root = served
    _zip(root / "ml-1m.zip", MEMBERS)  # not GroupLens' zip: the ml-1m spec's md5 rejects it
    args = ["data", "download", "--to", str(tmp_path), "--url", f"{url}/ml-1m.zip"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "download failed: checksum mismatch" in result.output
    download = ml1m_spec().download
    assert download is not None
    assert f"expected {download.md5}" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_download_of_a_spec_without_a_public_copy(tmp_path: Path) -> None:
    args = ["data", "download", "--dataset", "configs/datasets/synth-apps.yaml", "--to", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "dataset 'synth-apps' has no `download:` entry" in " ".join(result.output.split())
