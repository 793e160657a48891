"""The features stage from a `FlipConfig`: lake -> splits + vocab -> prompt feature folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from flip_core.layout import DataLayout
from flip_core.config import FlipConfig
from flip_core.data.features import SplitsBuild, build_splits
from flip_core.data.render import PromptsBuild, render_features
from flip_core.data.tokenization import FieldTokenizer, load_tokenizer
from flip_core.spec import SPLITS, DatasetSpec, load_dataset_spec, resolve_spec_path


def dataset_spec(config: FlipConfig) -> DatasetSpec:
    """The configured dataset spec (`paths.dataset`)."""
    return load_dataset_spec(resolve_spec_path(config.paths.dataset))


def default_lake_dir(config: FlipConfig) -> Path:
    """`<data_root>/lake/<dataset>`."""
    return DataLayout(config.paths.data_root).lake(dataset_spec(config).name)


def features_root(config: FlipConfig) -> Path:
    """`<data_root>/features/<dataset>`; builds live in `<protocol>/<key>/` below it."""
    return DataLayout(config.paths.data_root).features(dataset_spec(config).name)


def build_splits_from_config(config: FlipConfig, lake: Path | None = None) -> SplitsBuild:
    """Splits and vocabularies of the configured protocol (cached by content)."""
    fc = config.features
    spec = dataset_spec(config)
    return build_splits(
        lake or default_lake_dir(config),
        features_root(config),
        spec,
        spec.protocol(fc.protocol),
        fc.min_count,
        fc.duckdb,
    )


def render_from_config(
    config: FlipConfig,
    splits_dir: Path,
    tokenizer: PreTrainedTokenizerBase | FieldTokenizer | None = None,
) -> PromptsBuild:
    """Prompt features of a split build with the configured template and PLM tokenizer."""
    fc = config.features
    tok = tokenizer if tokenizer is not None else load_tokenizer(config.plm.name)
    return render_features(splits_dir, tok, fc.max_length, fc.verify_rows)


def manifest_lines(manifest: dict[str, Any]) -> list[str]:
    """A readable summary of a feature manifest: rows, positive rates, OOV, token lengths."""
    protocol = manifest["protocol"]
    lines = [
        f"dataset {manifest.get('dataset')}, protocol {protocol['name']}"
        + (" (LEAKY: no valid split)" if protocol["leaky"] else "")
    ]
    for split in SPLITS:
        stats = manifest["splits"].get(split)
        if stats is None:
            continue
        tokens = manifest["token_lengths"].get(split, {})
        trunc = manifest["truncation"].get(split, {})
        oov = ", ".join(f"{f} {r:.3f}" for f, r in stats["oov_rate"].items() if r > 0) or "none"
        lines += [
            f"{split}: {stats['rows']:,} rows, positive rate {stats['positive_rate']:.4f}, "
            f"timestamps {stats['min_timestamp']}..{stats['max_timestamp']}",
            f"  OOV rate: {oov}",
            "  tokens: "
            + ", ".join(f"{k} {v:.1f}" for k, v in tokens.items())
            + f"; rows truncated {trunc.get('rows_truncated', 0)}",
        ]
    sizes = ", ".join(f"{f} {n}" for f, n in manifest["vocab_sizes"].items())
    lines.append(f"vocab sizes (incl. PAD/MASK/OOV): {sizes}")
    lines.append("hashes: " + ", ".join(f"{k} {v[:12]}" for k, v in manifest["hashes"].items()))
    return lines
