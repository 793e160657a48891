"""Fetch a dataset's public zip (the spec's `download`), verify its md5, unpack it."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The download failed (offline, HTTP error, checksum mismatch, bad archive)."""


@dataclass(frozen=True)
class Downloaded:
    """Where the files went and the verified checksum."""

    folder: Path
    files: list[str]
    md5: str


def download_archive(to: Path, url: str, expected_md5: str, timeout_s: float = 60.0) -> Downloaded:
    """Download the zip at `url` into `to`, check `expected_md5`, unpack it there.

    Nothing is unpacked unless the checksum matches; the zip itself is not kept.
    """
    to.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=to, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.zip"
        md5 = _fetch(url, archive, timeout_s)
        if md5 != expected_md5:
            raise DownloadError(
                f"checksum mismatch for {url}: md5 {md5}, expected {expected_md5}; nothing unpacked"
            )
        files = _unpack(archive, to)
    folder = to / PurePosixPath(files[0]).parts[0] if files else to
    return Downloaded(folder=folder, files=files, md5=md5)


def _fetch(url: str, target: Path, timeout_s: float) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, target.open("wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason}); are we offline?") from None
    return digest.hexdigest()


def _unpack(archive: Path, to: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            for name in names:
                _check_member(name)
            for name in names:
                target = to / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive.name} is not a valid zip archive ({exc})") from None
    return names


def _check_member(name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(f"refusing to unpack {name!r}: it points outside the target folder")
