"""Helpers for the features tests: tokenizers built offline, lakes ingested from raw folders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, RobertaTokenizerFast

from flip_core.data.feature_map import FeatureMap, FieldVocab
from flip_core.data.prompts import PromptTemplate
from flip_core.data.tokenization import FieldTokenizer, load_tokenizer
from flip_core.lake import ingest_dataset
from flip_core.spec import (
    DatasetSpec,
    FieldSpec,
    ProtocolSpec,
    load_dataset_spec,
    resolve_spec_path,
)

_CORPUS = [
    "user id is 12. gender is female. age is 25-34. occupation is K-12 student.",
    "zip code is 48067. movie id is 1. title is Toy Story (1995).",
    "genres is Animation, Children's, Comedy. title is Señor Über Café (1999).",
    "occupation is academic/educator. age is 56+. age is under 18. writer artist",
]


@cache
def minilm_tokenizer() -> PreTrainedTokenizerBase:
    """MiniLM's BERT WordPiece tokenizer, from the offline package."""
    return load_tokenizer("minilm-l6")


@cache
def roberta_tokenizer() -> PreTrainedTokenizerBase:
    """A small byte-level BPE tokenizer trained here, wrapped as a RoBERTa tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


@cache
def field_tokenizer(name: str) -> FieldTokenizer:
    """`FieldTokenizer` of "bert" (MiniLM) or "roberta" (the small BPE), built once."""
    return FieldTokenizer(minilm_tokenizer() if name == "bert" else roberta_tokenizer())


ML1M_SPEC_PATH = resolve_spec_path("configs/datasets/ml-1m.yaml")


@cache
def ml1m_spec() -> DatasetSpec:
    """The MovieLens-1M dataset spec (the synthetic MovieLens data has the same shape)."""
    return load_dataset_spec(ML1M_SPEC_PATH)


def ingest(raw_dir: Path, data_root: Path) -> Path:
    """Ingest a raw MovieLens-shaped folder with the real ingest; returns the lake folder."""
    return ingest_dataset(raw_dir, data_root, ml1m_spec()).lake_dir


def ml1m_fields() -> list[FieldSpec]:
    """The ml-1m spec's fields, in order."""
    return list(ml1m_spec().fields)


def ml1m_field(name: str) -> FieldSpec:
    """One field of the ml-1m spec."""
    return ml1m_spec().field(name)


def ml1m_template() -> PromptTemplate:
    """The ml-1m spec's prompt template with its fields' text labels."""
    spec = ml1m_spec()
    return PromptTemplate.for_fields(spec.prompt, spec.fields)


def ml1m_protocol(name: str | None = None) -> ProtocolSpec:
    """A protocol of the ml-1m spec (default: its first, ml1m-time-811)."""
    return ml1m_spec().protocol(name)


def ml1m_feature_map(
    values: Mapping[str, Sequence[str]],
    counts: Mapping[str, Sequence[int]] | None = None,
    min_count: int = 1,
) -> FeatureMap:
    """A feature map of the ml-1m spec's fields (specs, input columns, prompt) with the given
    vocabularies (field -> values, most frequent first; counts 1 unless given)."""
    spec = ml1m_spec()
    vocabs = [
        FieldVocab(
            f.name,
            list(values[f.name]),
            list(counts[f.name]) if counts is not None else [1] * len(values[f.name]),
            spec=f,
        )
        for f in spec.fields
    ]
    return FeatureMap(
        vocabs, min_count, dataset=spec.name, prompt=spec.prompt, columns=spec.input_columns()
    )
