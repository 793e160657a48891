"""Prompt stage: split files -> feature files with text, token ids and field spans, plus manifest.

The fields, their text maps and the prompt template come from the split build's feature map
(the dataset spec). Output folder `<splits_dir>/prompts/<key>/`, keyed by the split build,
template, tokenizer and max length (a rerun with the same inputs returns at once):

    {train,valid,test}.parquet  ids per field (`<field>`), label, timestamp, text, input_ids,
                                token_spans / char_spans (F*2 ints: start, end per field)
    feature_map.json            copy of the split build's vocabularies
    manifest.json               rows, positive rates, OOV rates, token length percentiles,
                                truncation report, tokenizer ids, hashes
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap
from flip_core.data.features import code_hash, read_splits_summary
from flip_core.data.prompts import PromptTemplate
from flip_core.data.tokenization import (
    FieldTokenizer,
    TokenizedRows,
    as_field_tokenizer,
    check_against_whole_rows,
    render_and_tokenize,
)
from flip_core.hashing import text_sha256
from flip_core.spec import SPLITS

RENDER_VERSION = "prompts/1"
PERCENTILES = (50, 90, 95, 99, 100)


@dataclass(frozen=True)
class PromptsBuild:
    """A built feature folder and the hash that identifies it."""

    features_dir: Path
    prompts_hash: str
    cached: bool


def prompts_key(splits_hash: str, template: PromptTemplate, tok_hash: str, max_length: int) -> str:
    """Hash identifying one prompt build."""
    spec = {
        "v": RENDER_VERSION,
        "code": code_hash("render", "tokenization", "prompts", "fields"),
        "splits": splits_hash,
        "template": template.spec(),
        "tokenizer": tok_hash,
        "max_length": max_length,
    }
    return text_sha256(json.dumps(spec, sort_keys=True))


def render_features(
    splits_dir: Path,
    tokenizer: PreTrainedTokenizerBase | FieldTokenizer,
    max_length: int,
    verify_rows: int = 512,
) -> PromptsBuild:
    """Render and tokenize every split of a split build (cached by content)."""
    summary = read_splits_summary(splits_dir)
    feature_map = FeatureMap.load(splits_dir / FEATURE_MAP_FILE)
    fields = [feature_map.field_spec(name) for name in feature_map.field_names]
    names = feature_map.field_names
    template = PromptTemplate.for_fields(feature_map.prompt, fields)
    tokenizer = as_field_tokenizer(tokenizer)
    info = tokenizer.info()
    key = prompts_key(summary["splits_hash"], template, info["hash"], max_length)
    out = splits_dir / "prompts" / key[:16]
    if (out / "manifest.json").is_file():
        return PromptsBuild(out, key, cached=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    splits = [s for s in SPLITS if (splits_dir / "splits" / f"{s}.parquet").is_file()]
    tables = [pq.read_table(splits_dir / "splits" / f"{s}.parquet") for s in splits]
    combined = pa.concat_tables(tables)
    rows = render_and_tokenize(
        {f: combined[f"{f}_raw"] for f in names}, fields, template, tokenizer, max_length
    )
    check_against_whole_rows(rows, tokenizer, verify_rows)
    token_stats: dict[str, Any] = {}
    truncation: dict[str, Any] = {}
    start = 0
    for split, table in zip(splits, tables, strict=True):
        part = rows.slice(start, table.num_rows)
        start += table.num_rows
        pq.write_table(
            _feature_table(table, part, names),
            tmp / f"{split}.parquet",
            compression="lz4",
            use_dictionary=[*names, "label"],
        )
        token_stats[split] = _length_stats(part.lengths)
        truncation[split] = _truncation_report(part, names)
    shutil.copy2(splits_dir / FEATURE_MAP_FILE, tmp / FEATURE_MAP_FILE)
    manifest = _manifest(summary, names, template, info, max_length, key, token_stats, truncation)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return PromptsBuild(out, key, cached=False)


def _feature_table(table: pa.Table, rows: TokenizedRows, fields: list[str]) -> pa.Table:
    n, f = rows.token_spans.shape[:2]
    columns: dict[str, Any] = {name: table[name].cast(pa.int32()) for name in fields}
    columns["label"] = table["label"].cast(pa.int8())
    columns["timestamp"] = table["timestamp"]
    columns["text"] = rows.text
    columns["input_ids"] = rows.input_ids
    columns["token_spans"] = _fixed_lists(rows.token_spans.reshape(n, f * 2))
    columns["char_spans"] = _fixed_lists(rows.char_spans.reshape(n, f * 2))
    return pa.table(columns)


def _fixed_lists(matrix: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.int32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def _length_stats(lengths: np.ndarray) -> dict[str, float]:
    if len(lengths) == 0:
        return {}
    values = np.percentile(lengths, PERCENTILES)
    stats = {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}
    stats["mean"] = float(lengths.mean())
    return stats


def _truncation_report(rows: TokenizedRows, fields: list[str]) -> dict[str, Any]:
    lost = ~rows.kept
    return {
        "rows_truncated": int(lost.any(axis=1).sum()),
        "fields_lost": {name: int(lost[:, i].sum()) for i, name in enumerate(fields)},
    }


def _manifest(
    summary: dict[str, Any],
    fields: list[str],
    template: PromptTemplate,
    info: dict[str, Any],
    max_length: int,
    key: str,
    token_stats: dict[str, Any],
    truncation: dict[str, Any],
) -> dict[str, Any]:
    return {
        "dataset": summary["dataset"],
        "protocol": summary["protocol"],
        "fields": fields,
        "vocab_sizes": summary["vocab_sizes"],
        "min_count": summary["min_count"],
        "splits": summary["splits"],
        "token_lengths": token_stats,
        "truncation": truncation,
        "template": template.spec(),
        "max_length": max_length,
        "tokenizer": info,
        "hashes": {
            "data": summary["data_hash"],
            "spec": summary["spec_hash"],
            "splits": summary["splits_hash"],
            "template": text_sha256(json.dumps(template.spec(), sort_keys=True)),
            "tokenizer": info["hash"],
            "features": key,
        },
    }


def read_manifest(features_dir: Path) -> dict[str, Any]:
    """The `manifest.json` of a built feature folder."""
    path = Path(features_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{features_dir} is not a built feature folder (no manifest.json)")
    return dict(json.loads(path.read_text(encoding="utf-8")))
