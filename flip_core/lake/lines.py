"""Raw text files -> numbered lines, in bounded batches, with byte-level problems flagged.

Lines are split on `\\n` (a `\\r` right before it is dropped, so CRLF files read like LF files;
a bare `\\r` elsewhere is a control byte). Line numbers are 1-based physical lines, blank lines
included, so a message can point an editor at the exact line. Splitting and byte checks run in
numpy over whole batches; only lines that need it (non-ASCII, bad bytes) touch Python one by one.
Gzip input is streamed; a truncated stream yields every complete line and flags the partial one.

Fast path (`iter_batches` with a `fast` parser): a batch of plain lines of simple fields
(`parse_int_lines`: integers only, parsed by Arrow's multithreaded CSV reader;
`parse_text_lines`: integers and text) is typed in one go; its line numbers are then simply
consecutive. A batch that does not qualify, or that the parser refuses, goes through the exact
numbered-lines split instead, so the two paths give the same rows, line numbers and problems.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from flip_core.lake.background import Background

_Inflater = Callable[..., Any]
try:  # ISA-L's inflate gives the same bytes as zlib's, about 2.5x faster
    from isal import isal_zlib

    _decompressobj: _Inflater = isal_zlib.decompressobj
    _isal_error = cast(type[Exception], isal_zlib.IsalError)
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _isal_error)
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _decompressobj = zlib.decompressobj
    _INFLATE_ERRORS = (zlib.error,)

PREVIEW_CHARS = 200
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark
_C1_CONTROL = re.compile("[\x80-\x9f]")
_ROWS_PER_BATCH = 1 << 17
_READ_BYTES = 16 << 20  # compressed bytes read at a time


class RawFileError(ValueError):
    """The raw file cannot be read at all (corrupt compression, unknown encoding)."""


@dataclass
class LineStats:
    """What the reader saw besides data lines; complete once iteration ends."""

    lines: int = 0
    blank_lines: list[int] = field(default_factory=list)
    blank_count: int = 0
    crlf_lines: int = 0
    truncated: bool = False
    empty: bool = True
    bom: bool = False  # the file began with a UTF-8 byte-order mark (stripped)


@dataclass(frozen=True)
class LineBatch:
    """Numbered lines (`line_number`, `line` without its newline, `issue` or null)."""

    table: pa.Table


@dataclass(frozen=True)
class TypedBatch:
    """Rows parsed by a fast parser: typed columns plus `line_number`, every line valid syntax."""

    table: pa.Table


FastParser = Callable[[bytes, int], pa.Table | None]
"""(whole lines, first line number) -> typed rows, one per line, or None to take the exact path."""


@dataclass(frozen=True)
class _Chunk:
    data: bytes  # whole lines; the last lacks its newline when `partial`
    dropped: int  # bytes of an over-long first line that were not kept
    partial: bool


def iter_line_batches(
    path: Path, encoding: str, chunk_bytes: int, max_line_bytes: int, stats: LineStats
) -> Iterator[LineBatch]:
    """Yield the non-blank lines of `path` (plain or .gz) in batches of about `chunk_bytes`."""
    for batch in iter_batches(path, encoding, chunk_bytes, max_line_bytes, stats, fast=None):
        assert isinstance(batch, LineBatch)  # no fast parser, so no typed batch
        yield batch


def iter_batches(
    path: Path,
    encoding: str,
    chunk_bytes: int,
    max_line_bytes: int,
    stats: LineStats,
    fast: FastParser | None,
) -> Iterator[LineBatch | TypedBatch]:
    """Like `iter_line_batches`, but a batch that `fast` parses comes as a `TypedBatch`.

    Lines are counted only where a batch takes the exact split: a fast parser's rows are its
    lines, one each.
    """
    first_line = 1
    for chunk in _chunks(path, encoding, chunk_bytes, max_line_bytes, stats):
        if fast is not None and not chunk.dropped and not (chunk.partial and stats.truncated):
            table = fast(chunk.data, first_line)
            if table is not None:
                first_line += table.num_rows
                stats.lines = first_line - 1
                yield TypedBatch(table=table)
                continue
        batch, lines = _split(
            chunk.data,
            first_line,
            encoding,
            max_line_bytes,
            stats,
            chunk.dropped,
            partial=chunk.partial,
        )
        first_line += lines
        if batch.table.num_rows:
            yield batch


def _chunks(
    path: Path, encoding: str, chunk_bytes: int, max_line_bytes: int, stats: LineStats
) -> Iterator[_Chunk]:
    """Cut the file into runs of whole lines of about `chunk_bytes`."""
    _check_encoding(path, encoding)
    carry = b""
    dropped = 0  # bytes of an over-long unfinished line not kept in memory
    first = True
    for block in _blocks(path, chunk_bytes, stats):
        if first and block.startswith(BOM):  # not data: line 1 starts after it
            block, stats.bom = block[len(BOM) :], True
        first = False
        if not block:
            continue
        stats.empty = False
        data = carry + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield _Chunk(data[:cut], dropped, partial=False)
            dropped = 0
        carry = data[cut:]
        if len(carry) > max_line_bytes:  # keep only the head of a line that is too long anyway
            dropped += len(carry) - max_line_bytes - 1
            carry = carry[: max_line_bytes + 1]
    if carry:
        yield _Chunk(carry, dropped, partial=True)


_DIGITS = b"0123456789"


def int_delimiter(delimiter: str) -> bool:
    """Whether `parse_int_lines` can split on `delimiter`: one ASCII punctuation, space or tab
    character, possibly repeated (`,`, `\\t`, `::`); never a digit or a sign."""
    char = delimiter[:1]
    return (
        delimiter == char * len(delimiter)
        and char.isascii()
        and (char in " \t" or (char.isprintable() and not char.isalnum()))
        and char not in "+-."
    )


def parse_int_lines(
    data: bytes,
    first_line: int,
    types: dict[str, pa.DataType],
    max_line_bytes: int,
    delimiter: str,
) -> pa.Table | None:
    """Parse `data`, every line one unsigned integer field per entry of `types` (int32 or int64),
    separated by `delimiter` (see `int_delimiter`).

    Returns the typed columns plus `line_number` (`first_line` onward), one row per line, or
    None when any line is not plainly that (another byte, a blank line, a field count, an empty
    field, a value out of its type's range, a line over `max_line_bytes`): the caller then takes
    the exact path. Arrow parses in a thread of its own while the bytes are checked here (the
    checks hold the GIL, Arrow's reader does not); its table is used only if they pass.
    """
    if not data:
        return None
    parsing = Background(lambda: _read_int_csv(data, types, delimiter), "parse-int-lines")
    allowed = _DIGITS + delimiter[:1].encode("ascii") + b"\n"
    plain = not data.translate(None, allowed) and _short_lines(
        data, types, max_line_bytes, len(delimiter)
    )
    table: pa.Table | None = parsing.result()
    if not plain or table is None:
        return None
    table = table.select(list(types))
    # A blank line reads as a row of nulls, as does an empty field: both go the exact way. Else
    # each line (ended by `\n`: the only line end left, as `\r` is refused) is one row.
    if any(column.null_count for column in table.columns):
        return None
    numbers = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
    return table.append_column("line_number", pa.array(numbers))


def _read_int_csv(data: bytes, types: dict[str, pa.DataType], delimiter: str) -> pa.Table | None:
    """`data` read by Arrow's CSV reader with the delimiter's one character, so that a delimiter
    of n characters leaves n - 1 empty (null-typed) columns between two fields of `types`; None
    if Arrow refuses it."""
    gaps = len(delimiter) - 1
    names = [f"{name}{k * ':'}" for name in types for k in range(gaps + 1)][: -gaps or None]
    column_types = {n: types.get(n, pa.null()) for n in names}
    try:
        return pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter[0],
                quote_char=False,
                double_quote=False,
                ignore_empty_lines=False,
            ),
            # Only an empty field is null (the default list of null spellings costs ~10% of
            # the parse, and no other spelling can get past the byte check anyway).
            convert_options=pa_csv.ConvertOptions(
                column_types=column_types, null_values=[""], strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:
        return None


# Bytes a plain text line never has (unless the delimiter has them): control bytes (tab and CR
# included: the exact path decides on those), DEL and the latin-1 C1 controls.
_TEXT_REFUSED = bytes([*range(0, 10), *range(11, 32), *range(0x7F, 0xA0)])
_LATIN_1 = codecs.lookup("latin-1").name
# Unsigned integers that surely fit the type: anything else takes the exact path.
_PLAIN_INT = {"int32": r"^[0-9]{1,9}$", "int64": r"^[0-9]{1,18}$"}


def parse_text_lines(
    data: bytes,
    first_line: int,
    fields: dict[str, pa.DataType],
    max_line_bytes: int,
    encoding: str,
    delimiter: str,
    nulls: Sequence[str] = ("",),
) -> pa.Table | None:
    """Parse `data`, every line one `delimiter`-separated field per entry of `fields` (int32,
    int64 or string).

    Returns the columns plus `line_number` (`first_line` onward), one row per line, or None
    when a line is not plainly that, so the caller takes the exact path: a refused byte
    (`_TEXT_REFUSED`), a byte over 0x7f unless `encoding` is latin-1, a blank line, a delimiter
    of several characters followed by its last one again (`:::`), another field count, an
    integer field that is not 1 to 9 (int32) or 18 (int64) digits, a text field that is a null
    spelling (`nulls`), a line over `max_line_bytes`. Text fields are the decoded text between
    the delimiters, as the exact path's `string_split` gives them.
    """
    refused = _TEXT_REFUSED.translate(None, delimiter.encode("ascii", errors="replace"))
    text_ok = data.isascii() or codecs.lookup(encoding).name == _LATIN_1
    if (
        not data
        or not text_ok
        or len(data.translate(None, refused)) != len(data)
        or data.startswith(b"\n")
        or b"\n\n" in data
        or (len(delimiter) > 1 and (delimiter + delimiter[-1]).encode("latin-1") in data)
    ):
        return None
    starts, ends = _line_bounds(data)
    if int((ends - starts).max()) > max_line_bytes:
        return None
    text = data.decode("latin-1").removesuffix("\n")  # ASCII or latin-1 (checked above)
    parts = pc.split_pattern(pa.array(text.split("\n"), pa.string()), delimiter)
    if pc.any(pc.not_equal(pc.list_value_length(parts), len(fields))).as_py():
        return None
    columns = _typed_fields(pc.list_flatten(parts), fields, nulls)
    if columns is None:
        return None
    columns["line_number"] = pa.array(np.arange(first_line, first_line + len(ends), dtype=np.int64))
    return pa.table(columns)


def _typed_fields(
    flat: pa.Array, fields: dict[str, pa.DataType], nulls: Sequence[str]
) -> dict[str, pa.Array] | None:
    """The flattened fields of whole lines split into typed columns, or None if one is not plain."""
    columns: dict[str, pa.Array] = {}
    null_texts = pa.array(list(nulls), pa.string())
    for k, (name, kind) in enumerate(fields.items()):
        column = flat.take(pa.array(np.arange(k, len(flat), len(fields))))
        if pa.types.is_integer(kind):
            if not pc.all(pc.match_substring_regex(column, _PLAIN_INT[str(kind)])).as_py():
                return None
            column = column.cast(kind)
        elif len(null_texts) and pc.any(pc.is_in(column, null_texts)).as_py():
            return None
        columns[name] = column
    return columns


def _short_lines(
    data: bytes, types: dict[str, pa.DataType], max_line_bytes: int, delimiter_bytes: int
) -> bool:
    """No line of `data` (digits, delimiters, line ends) is longer than `max_line_bytes`.

    A field that parses into an int32/int64 has at most 10/19 significant digits plus its
    leading zeros. If no run of `zeros` zeros occurs in `data`, a field has fewer leading zeros
    than that, so a line of k fields has at most `digits + k * (zeros - 1) + d * (k - 1)` bytes
    (`d`: the delimiter's length).
    `zeros` is the longest run this bound allows (a long needle is also the fastest to look
    for: ~1 ms on 12 MB, against ~3 ms for 20 zeros); else lengths are checked line by line.
    """
    fields = len(types)
    digits = sum(10 if pa.types.is_int32(t) else 19 for t in types.values())
    zeros = (max_line_bytes - digits - delimiter_bytes * (fields - 1)) // fields + 1
    if zeros > 1 and b"0" * zeros not in data:
        return True
    starts, ends = _line_bounds(data)
    return int((ends - starts).max()) <= max_line_bytes


def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of each line of non-empty `data`; ends exclude the `\n`."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    if data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    return starts, ends


def _check_encoding(path: Path, encoding: str) -> None:
    try:
        b"".decode(encoding)
    except LookupError:
        raise RawFileError(f"{path.name}: unknown encoding {encoding!r}") from None


def _blocks(path: Path, chunk_bytes: int, stats: LineStats) -> Iterator[bytes]:
    if path.suffix == ".gz":
        yield from gzip_blocks(path, chunk_bytes, stats)
        return
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            yield block


def gzip_blocks(
    path: Path,
    chunk_bytes: int,
    stats: LineStats,
    *,
    read_bytes: int = _READ_BYTES,
    decompressobj: _Inflater | None = None,
) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip file in blocks of `chunk_bytes` (the last one
    shorter); mark `stats.truncated` if it ends early.

    Each inflate call is capped at what the current block still needs, so memory stays bounded
    however well the data compresses; input is read `read_bytes` at a time (large by default, so
    a file of a few MiB inflates in one call: one release of the GIL, not one per MiB).
    `decompressobj` makes the inflater (default: ISA-L's when installed, else zlib's).
    """
    new_inflater = decompressobj or _decompressobj
    inflater = new_inflater(wbits=16 + zlib.MAX_WBITS)
    member_open = False
    pending: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        raw = handle.read(read_bytes)
        while raw:
            try:
                out = inflater.decompress(raw, chunk_bytes - size)
            except _INFLATE_ERRORS as exc:
                raise RawFileError(f"{path.name}: corrupt gzip data ({exc})") from None
            member_open = True
            pending.append(out)
            size += len(out)
            if inflater.eof:  # a member ended; another may follow in the same file
                member_open = False
                raw = inflater.unused_data
                inflater = new_inflater(wbits=16 + zlib.MAX_WBITS)
            else:
                raw = inflater.unconsumed_tail
            if size >= chunk_bytes:
                yield b"".join(pending)
                pending, size = [], 0
            if not raw:
                raw = handle.read(read_bytes)
    if member_open:  # output zlib still holds once the input is spent
        pending.append(inflater.flush())
        member_open = not inflater.eof
    stats.truncated = member_open
    if any(pending):
        yield b"".join(pending)


def _split(
    data: bytes,
    first_line: int,
    encoding: str,
    max_line_bytes: int,
    stats: LineStats,
    dropped: int = 0,
    partial: bool = False,
) -> tuple[LineBatch, int]:
    """Split `data` (whole lines; the last one may lack its newline) into a numbered batch; also
    return its count of lines, blank ones included.

    `dropped`: bytes of the first line that were not kept (it is over-long).
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _line_bounds(data)  # a partial last line ends at the end of `data`
    count = len(ends)
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    content_ends = ends - has_cr
    lengths = content_ends - starts
    lengths[0] += dropped
    numbers = np.arange(first_line, first_line + count, dtype=np.int64)
    stats.lines = int(numbers[-1]) if count else stats.lines
    stats.crlf_lines += int(has_cr.sum())

    issues: dict[int, str] = {}
    texts: dict[int, str] = {}
    # Bytes below 0x20 other than the line ends are rare: count them before looking closer.
    below_space = int(np.count_nonzero(arr < 32))
    if below_space != count - partial + int(has_cr.sum()) or b"\x7f" in data:
        _flag_bad_bytes(arr, starts, content_ends, issues)
    if not data.isascii():
        _decode_non_ascii(data, arr, starts, content_ends, encoding, issues, texts)
    for i in np.flatnonzero(lengths > max_line_bytes):
        size = int(lengths[i])
        issues[int(i)] = f"line is {size:,} bytes, over the {max_line_bytes:,}-byte limit"
    if partial and stats.truncated and count:
        issues[count - 1] = "incomplete last line: the gzip stream is truncated"

    blank = lengths == 0
    blank_numbers = numbers[blank]
    stats.blank_count += len(blank_numbers)
    stats.blank_lines.extend(int(n) for n in blank_numbers[: max(0, 5 - len(stats.blank_lines))])

    # Offsets span each line plus its newline; SQL strips the trailing \r\n.
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[:-1] = starts
    offsets[-1] = len(arr)
    lines = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    replace = {i: text for i, text in texts.items() if i not in issues}
    replace.update({i: _preview(data, starts[i], content_ends[i]) for i in issues})
    if replace:
        mask = np.zeros(count, dtype=bool)
        keys = sorted(replace)
        mask[keys] = True
        lines = pc.replace_with_mask(
            lines, pa.array(mask), pa.array([replace[k] for k in keys], pa.large_string())
        )
    issue_col = (
        pa.array([issues.get(i) for i in range(count)], pa.string())
        if issues
        else pa.nulls(count, pa.string())
    )
    table = pa.table({"line_number": numbers, "line": lines, "issue": issue_col})
    if blank.any():
        table = table.filter(pa.array(~blank))
    # Many record batches let DuckDB scan the batch with all its threads.
    batches = table.to_batches(max_chunksize=_ROWS_PER_BATCH)
    return LineBatch(table=pa.Table.from_batches(batches, table.schema)), count


def _flag_bad_bytes(
    arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, issues: dict[int, str]
) -> None:
    """NUL and other control bytes (tab allowed; \\r only before \\n) make a line invalid."""
    control = (arr < 32) & (arr != 9) & (arr != 10)
    control |= arr == 127
    positions = np.flatnonzero(control)
    if not len(positions):
        return
    rows = np.searchsorted(starts, positions, side="right") - 1
    inside = positions < ends[rows]  # a \r of a CRLF ending lies past the content end
    for pos, row in zip(positions[inside].tolist(), rows[inside].tolist(), strict=True):
        if row in issues:
            continue
        byte = int(arr[pos])
        col = pos - int(starts[row]) + 1
        what = "NUL byte" if byte == 0 else f"control byte 0x{byte:02x}"
        issues[row] = f"invalid bytes: {what} at column {col}"


def _decode_non_ascii(
    data: bytes,
    arr: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    encoding: str,
    issues: dict[int, str],
    texts: dict[int, str],
) -> None:
    """Decode lines with bytes >= 0x80 from `encoding`; lines that do not decode are flagged."""
    positions = np.flatnonzero(arr >= 128)
    if not len(positions):
        return
    rows = np.unique(np.searchsorted(starts, positions, side="right") - 1)
    for row in rows.tolist():
        if row in issues:
            continue
        raw = data[int(starts[row]) : int(ends[row])]
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            issues[row] = f"invalid bytes for {encoding} at column {exc.start + 1}"
            continue
        control = _C1_CONTROL.search(text)
        if control:
            code, col = ord(control.group()), control.start() + 1
            issues[row] = f"invalid bytes: control character U+{code:04X} at column {col}"
        else:
            texts[row] = text


def _preview(data: bytes, start: int, end: int) -> str:
    """A printable, bounded rendering of a bad line for the quarantine."""
    raw = data[start : min(end, start + PREVIEW_CHARS)]
    text = raw.decode("latin-1").encode("unicode_escape").decode("ascii")
    return text + ("..." if end - start > PREVIEW_CHARS else "")
