"""Score raw log rows with a saved CTR model: encode fields (unseen -> OOV), batch, predict.

Raw rows carry the raw columns the dataset spec's fields read (`FeatureMap.columns`, saved with
the model) as they appear in the logs; other columns are ignored, a missing one is an error.
ID-only models (`FLIP_ID`, a plain ID backbone) never load a language model; `flip` and
`flip_plm` also render each row's prompt and tokenize it with the tokenizer saved in the model
directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap
from flip_core.data.features import encode_field
from flip_core.data.fields import raw_values
from flip_core.models.saving import CONFIG_FILE


class ScoringError(ValueError):
    """The input rows or the model directory cannot be scored."""


def field_values(feature_map: FeatureMap, frame: pd.DataFrame) -> dict[str, pa.Array]:
    """Each field's raw value per row, from the input columns the fields read."""
    check_columns(feature_map, frame.columns)
    columns = {name: _arrow_column(frame[name]) for name in feature_map.columns}
    return {
        name: raw_values(feature_map.field_spec(name), columns) for name in feature_map.field_names
    }


def encode_fields(feature_map: FeatureMap, raw: Mapping[str, pa.Array]) -> np.ndarray:
    """Field ids `[N, F]` (int64) of per-field raw values; unseen or missing values -> OOV."""
    names = feature_map.field_names
    missing = [name for name in names if name not in raw]
    if missing:
        raise ScoringError(f"no values for field(s) {', '.join(missing)}")
    rows = len(raw[names[0]]) if names else 0
    ids = np.empty((rows, len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        ids[:, j] = encode_field(feature_map, name, raw[name]).to_numpy(zero_copy_only=False)
    return ids


def check_columns(feature_map: FeatureMap, present: Iterable[str]) -> None:
    """Raise `ScoringError` naming every input column the model needs and `present` lacks."""
    have = set(present)
    missing = [name for name in feature_map.columns if name not in have]
    if missing:
        raise ScoringError(
            f"input lacks column(s) {', '.join(missing)}; dataset {feature_map.dataset!r} "
            f"models read {', '.join(feature_map.columns)}"
        )


def load_ctr_model(model_dir: Path) -> nn.Module:
    """Load a saved click model for inference: an ID backbone or a `FlipForCTR` variant."""
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ScoringError(f"{model_dir}: no {CONFIG_FILE}; not a saved model directory")
    meta = json.loads(config_path.read_text(encoding="utf-8"))
    if meta.get("model_type") == "id_model":
        from flip_core.models.id.base import IDModel

        return IDModel.from_pretrained(model_dir)
    if meta.get("kind") == "ctr":
        from flip_core.models.flip import FlipForCTR

        return FlipForCTR.from_pretrained(model_dir)
    raise ScoringError(
        f"{model_dir}: not a click model (kind={meta.get('kind', meta.get('model_type'))!r}); "
        "pretraining checkpoints cannot score"
    )


def _arrow_column(column: pd.Series) -> Any:
    """A raw column as Arrow, integral floats (from JSON/NaN) back to integers."""
    if pd.api.types.is_float_dtype(column) and bool((column.dropna() % 1 == 0).all()):
        column = column.astype("Int64")
    if column.dtype == object and column.map(lambda v: isinstance(v, float)).any():
        column = column.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    try:
        return pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if pd.isna(v) else str(v) for v in column], pa.string())


@dataclass
class PromptEncoder:
    """Raw rows -> padded prompt token ids and attention mask (for models with a PLM)."""

    tokenizer: Any
    feature_map: FeatureMap
    max_length: int = 128

    def __call__(self, raw: Mapping[str, pa.Array]) -> tuple[torch.Tensor, torch.Tensor]:
        """`input_ids` and `attention_mask`, `[N, T]`, padded to the longest row, from each
        field's raw values."""
        from flip_core.data.prompts import PromptTemplate
        from flip_core.data.tokenization import render_and_tokenize

        fmap = self.feature_map
        fields = [fmap.field_spec(name) for name in fmap.field_names]
        template = PromptTemplate.for_fields(fmap.prompt, fields)
        rows = render_and_tokenize(raw, fields, template, self.tokenizer, self.max_length)
        lengths = rows.lengths
        width = int(lengths.max()) if len(lengths) else 0
        mask = np.arange(width)[None, :] < lengths[:, None]
        ids = np.full(mask.shape, int(self.tokenizer.pad_token_id or 0), dtype=np.int64)
        ids[mask] = np.asarray(rows.input_ids.flatten(), dtype=np.int64)
        return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


class RawRowScorer:
    """Click probabilities for raw rows, in fixed-size batches (memory flat in the row count)."""

    def __init__(
        self,
        model: nn.Module,
        feature_map: FeatureMap,
        batch_size: int = 8192,
        prompts: PromptEncoder | None = None,
    ) -> None:
        self.model = model.eval()
        self.feature_map = feature_map
        self.batch_size = batch_size
        self.prompts = prompts

    @classmethod
    def from_pretrained(
        cls,
        model_dir: Path | str,
        batch_size: int = 8192,
        max_length: int = 128,
    ) -> RawRowScorer:
        """Model + `feature_map.json` (+ tokenizer, for PLM variants) from one model directory."""
        path = Path(model_dir)
        if not (path / FEATURE_MAP_FILE).is_file():
            raise ScoringError(f"{path}: no feature_map.json next to the model")
        model = load_ctr_model(path)
        fmap = FeatureMap.load(path)
        prompts = None
        if getattr(model, "plm", None) is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            prompts = PromptEncoder(tokenizer, fmap, max_length)
        return cls(model, fmap, batch_size, prompts)

    @torch.inference_mode()
    def predict_ids(self, field_ids: np.ndarray) -> np.ndarray:
        """Probabilities `[N]` (float64) for already-encoded field ids (ID-only models)."""
        if self.prompts is not None:
            raise ScoringError("this model reads prompts too: score raw rows (predict_proba)")
        out = np.empty(len(field_ids), dtype=np.float64)
        for start in range(0, len(field_ids), self.batch_size):
            batch = torch.from_numpy(field_ids[start : start + self.batch_size])
            logits = self.model(field_ids=batch).logits
            out[start : start + len(batch)] = torch.sigmoid(logits.float()).numpy()
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probabilities `[N]` for raw rows (a DataFrame with the model's input columns)."""
        return self.predict_fields(field_values(self.feature_map, frame))

    @torch.inference_mode()
    def predict_fields(self, raw: Mapping[str, pa.Array]) -> np.ndarray:
        """Probabilities `[N]` for per-field raw values (e.g. a split file's `<field>_raw`)."""
        ids = encode_fields(self.feature_map, raw)
        if self.prompts is None:
            return self.predict_ids(ids)
        out = np.empty(len(ids), dtype=np.float64)
        for start in range(0, len(ids), self.batch_size):
            end = start + self.batch_size
            batch = {name: values[start:end] for name, values in raw.items()}
            input_ids, attention_mask = self.prompts(batch)
            logits = self.model(
                field_ids=torch.from_numpy(ids[start:end]),
                input_ids=input_ids,
                attention_mask=attention_mask,
            ).logits
            out[start : start + len(input_ids)] = torch.sigmoid(logits.float()).numpy()
        return out


def arrow_types(columns: Mapping[str, str]) -> dict[str, Any]:
    """Arrow types of raw input columns given by their dataset-spec types."""
    types = {
        "int32": pa.int64(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us"),
    }
    return {name: types[kind] for name, kind in columns.items()}


def iter_raw_chunks(
    path: Path, chunk_rows: int, columns: Mapping[str, str] | None = None
) -> Iterator[pd.DataFrame]:
    """Stream raw rows from a Parquet or CSV file in DataFrames of about `chunk_rows` rows.

    CSV columns named in `columns` (name -> dataset-spec type) are typed explicitly (codes such
    as zip codes stay strings with their leading zeros); other columns are inferred. Memory stays
    bounded by the chunk size.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = check_input(path)
    if suffix == ".parquet":
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
    elif suffix == ".csv":
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=max(1 << 16, chunk_rows * 160)),
            convert_options=pacsv.ConvertOptions(column_types=arrow_types(columns or {})),
        )
        for batch in reader:
            yield batch.to_pandas()


def check_input(path: Path) -> str:
    """Fail early on a missing file or an unsupported format; returns the suffix."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ScoringError(f"input file {path} does not exist")
    if suffix not in (".parquet", ".csv"):
        raise ScoringError(f"input {path}: unsupported format {suffix!r}; use .parquet or .csv")
    return suffix


def id_columns(feature_map: FeatureMap) -> list[str]:
    """Raw columns of the user and item fields (kept beside the scores by default)."""
    names = [feature_map.role_field(role) for role in ("user", "item")]
    return [feature_map.field_spec(n).source_columns[0] for n in names if n is not None]


def example_rows(feature_map: FeatureMap) -> pd.DataFrame:
    """Two raw input rows: the most frequent train values, and values never seen in training."""
    seen: dict[str, Any] = {}
    unseen: dict[str, Any] = {}
    for vocab in feature_map.fields:
        spec = feature_map.field_spec(vocab.name)
        top = vocab.values[0] if vocab.values else None
        if spec.columns is not None:
            chosen = set((top or "").split("|"))
            seen.update({c: int(c in chosen) for c in spec.columns})
            unseen.update({c: 0 for c in spec.columns})
            continue
        column = spec.source_columns[0]
        kind = feature_map.columns.get(column, "string")
        if spec.kind == "numeric":
            edges = vocab.bins or [0.0]
            seen[column], unseen[column] = _typed(kind, edges[0]), _typed(kind, edges[-1] * 10 + 1)
        else:
            seen[column] = _typed(kind, top)
            unseen[column] = _typed(kind, "999999" if kind != "string" else "never-seen")
    return pd.DataFrame([seen, unseen], columns=list(feature_map.columns))


def _typed(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("int32", "int64"):
        return int(float(value))
    if kind == "float64":
        return float(value)
    if kind == "bool":
        return str(value).lower() in ("true", "1")
    return str(value)


def score_split_file(scorer: RawRowScorer, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a split file's rows (`splits/<split>.parquet`: `<field>_raw`
    and `label`), scored from their raw values with the scorer's own vocabularies, so any model
    of the same dataset can be scored on the current rows (the champion gate rescoring)."""
    import pyarrow.parquet as pq

    names = scorer.feature_map.field_names
    present = set(pq.read_schema(path).names)
    missing = [name for name in names if f"{name}_raw" not in present]
    if missing:
        raise ScoringError(f"{path} lacks the raw values of field(s) {', '.join(missing)}")
    table = pq.read_table(path, columns=[*(f"{n}_raw" for n in names), "label"])
    raw = {name: table[f"{name}_raw"].combine_chunks() for name in names}
    labels = table["label"].to_numpy().astype(np.float64)
    return labels, scorer.predict_fields(raw)
