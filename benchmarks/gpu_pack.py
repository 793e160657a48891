"""Pack a feature folder and its encoder for `benchmarks/gpu_run.sh` (a bare CUDA machine).

    python benchmarks/gpu_pack.py --features FEATURES_DIR --out data/gpu [--plm minilm-l6]

Writes two files that need only torch to read (`torch.load(..., weights_only=True)`):

- `data.pt.gz`: per split the field ids, labels and, per field, the index of the row's value
  text in a per-field table of value token ids; the template's constant token pieces between
  the values (the prompt is rebuilt on the device, token for token; checked here on a random
  sample of rows of every split); field names, vocabulary sizes, special token ids.
- `encoder.pt`: the BERT encoder's weights in float16 (the GPU script trains in float32 master
  weights under bf16 autocast) and its config. MiniLM-L6: about 44 MiB; the pack stays under the
  device machine's 64 MiB upload.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from flip_core.data.feature_map import FeatureMap
from flip_core.data.render import read_manifest
from flip_core.models.plm import PLMEncoder, load_tokenizer

SPLITS = ("train", "valid", "test")
CHECK_ROWS = 2000


def _split_arrays(path: Path, names: list[str]) -> dict[str, Any]:
    table = pq.read_table(path, columns=[*names, "label", "input_ids", "token_spans"])
    n = table.num_rows
    ids = table["input_ids"].combine_chunks()
    offsets = np.asarray(ids.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    return {
        "field_ids": np.stack([table[f].to_numpy() for f in names], axis=1).astype(np.int64),
        "labels": table["label"].to_numpy().astype(np.uint8),
        "tokens": np.asarray(ids.flatten(), dtype=np.int64),
        "offsets": offsets,
        "spans": np.asarray(table["token_spans"].combine_chunks().flatten(), np.int64).reshape(
            n, len(names), 2
        ),
    }


def _row_pieces(arr: dict[str, Any], i: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The row's value token tuples and the constant pieces around them."""
    tok = arr["tokens"][arr["offsets"][i] : arr["offsets"][i + 1]]
    spans = arr["spans"][i]
    values, glue, prev = [], [], 0
    for start, end in spans:
        glue.append(tuple(tok[prev:start].tolist()))
        values.append(tuple(tok[start:end].tolist()))
        prev = end
    glue.append(tuple(tok[prev:].tolist()))
    return values, glue


def pack(features: Path, out: Path, plm: str, num_layers: int | None) -> dict[str, Any]:
    """Write data.pt.gz and encoder.pt into `out`; return a summary."""
    fmap = FeatureMap.load(features / "feature_map.json")
    names = fmap.field_names
    arrays = {s: _split_arrays(features / f"{s}.parquet", names) for s in SPLITS}
    glue = _row_pieces(arrays["train"], 0)[1]
    tables: list[dict[tuple[int, ...], int]] = [{} for _ in names]
    data: dict[str, Any] = {"splits": {}}
    rng = np.random.default_rng(0)
    for split, arr in arrays.items():
        n = len(arr["labels"])
        value_idx = np.empty((n, len(names)), dtype=np.int64)
        for i in range(n):
            tok = arr["tokens"][arr["offsets"][i] : arr["offsets"][i + 1]]
            for f, (start, end) in enumerate(arr["spans"][i]):
                key = tuple(tok[start:end].tolist())
                value_idx[i, f] = tables[f].setdefault(key, len(tables[f]))
        for i in rng.choice(n, size=min(CHECK_ROWS, n), replace=False):
            if _row_pieces(arr, int(i))[1] != glue:
                raise ValueError(f"{split} row {i}: the template pieces differ from row 0's")
        data["splits"][split] = {
            "field_ids": torch.from_numpy(arr["field_ids"].astype(np.int16)),
            "labels": torch.from_numpy(arr["labels"]),
            "value_idx": torch.from_numpy(value_idx.astype(np.int32)),
        }
    data["values"] = [
        [list(key) for key, _ in sorted(t.items(), key=lambda kv: kv[1])] for t in tables
    ]
    data["glue"] = [list(g) for g in glue]
    tok_info = read_manifest(features)["tokenizer"]
    tokenizer = load_tokenizer(plm)
    data["meta"] = {
        "field_names": names,
        "vocab_sizes": fmap.vocab_sizes,
        "user_field": names.index(_role(fmap, "user")),
        "item_field": names.index(_role(fmap, "item")),
        "pad_token_id": int(tok_info["pad_token_id"] or 0),
        "mask_token_id": int(tok_info["mask_token_id"]),
        "features": str(features),
    }
    encoder = PLMEncoder.from_name(plm, num_layers=num_layers, tokenizer=tokenizer).encoder
    cfg = encoder.config
    if cfg.model_type != "bert":
        raise ValueError(f"the GPU script runs BERT encoders; {plm} is {cfg.model_type}")
    enc = {
        "state_dict": {k: v.detach().half() for k, v in encoder.state_dict().items()},
        "config": {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "intermediate_size": cfg.intermediate_size,
            "max_position_embeddings": cfg.max_position_embeddings,
            "type_vocab_size": cfg.type_vocab_size,
            "layer_norm_eps": cfg.layer_norm_eps,
            "hidden_act": cfg.hidden_act,
            "name": plm,
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with gzip.open(out / "data.pt.gz", "wb", compresslevel=6) as f:
        f.write(buffer.getvalue())
    torch.save(enc, out / "encoder.pt")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    return {
        "rows": {s: len(a["labels"]) for s, a in arrays.items()},
        "value_texts": [len(t) for t in tables],
        "bytes": sizes,
        "total_mib": sum(sizes.values()) / 2**20,
    }


def _role(fmap: FeatureMap, role: str) -> str:
    """The field of the dataset spec's `role` (user or item): the GPU run's warm/cold users and
    long-tail items need both."""
    name = fmap.role_field(role)
    if name is None:
        raise ValueError(f"the features' dataset spec has no field with role: {role}")
    return name


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plm", default="minilm-l6")
    ap.add_argument("--num-layers", type=int, default=None)
    args = ap.parse_args()
    print(json.dumps(pack(args.features, args.out, args.plm, args.num_layers)))


if __name__ == "__main__":
    main()
