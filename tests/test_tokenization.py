"""Field-aligned tokenization equals whole-row tokenization (BERT WordPiece, byte-level BPE)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flip_core.data.features import build_splits
from flip_core.data.fields import readable_value
from flip_core.data.prompts import PromptTemplate
from flip_core.data.tokenization import (
    FieldTokenizer,
    TokenizationMismatchError,
    check_against_whole_rows,
    render_and_tokenize,
)
from flip_core.spec import PromptSpec
from tests.features_support import (
    field_tokenizer,
    ingest,
    minilm_tokenizer,
    ml1m_fields,
    ml1m_protocol,
    ml1m_spec,
    ml1m_template,
    roberta_tokenizer,
)

TOKENIZERS = {"bert": minilm_tokenizer, "roberta": roberta_tokenizer}
FIELDS = ml1m_spec().field_names
SPECS = ml1m_fields()


@pytest.fixture(scope="module")
def split_table(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    root = tmp_path_factory.mktemp("tok")
    lake = ingest(synthetic_raw, root / "data")
    build = build_splits(lake, root, ml1m_spec(), ml1m_protocol("ml1m-time-811"))
    return pa.concat_tables(
        [pq.read_table(build.splits_dir / "splits" / f"{s}.parquet") for s in ("train", "test")]
    )


def _columns(table: pa.Table) -> dict[str, pa.Array]:
    return {f: table[f"{f}_raw"] for f in FIELDS}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_assembled_ids_equal_whole_row_tokenization(name: str, split_table: pa.Table):
    tokenizer = TOKENIZERS[name]()
    rows = render_and_tokenize(_columns(split_table), SPECS, ml1m_template(), tokenizer, 256)
    texts = rows.text.to_pylist()
    whole = tokenizer(texts)["input_ids"]
    assert rows.input_ids.to_pylist() == whole
    assert rows.kept.all()
    assert "gender is " in texts[0] and texts[0].endswith(".")
    assert check_against_whole_rows(rows, tokenizer, sample=50) == 50


_word = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789éüñçÉ-'(),.&/:!?+", min_size=1, max_size=8
)
_value = st.lists(_word, min_size=1, max_size=4).map(" ".join)
_templates = st.tuples(
    st.sampled_from(["{field} is ", "{field}: ", "", "the {field} = ", "({field}) "]),
    st.sampled_from([".", "", ";", "!", " ."]),
    st.sampled_from([" ", "\n", " | "]),
).map(
    lambda t: PromptTemplate.for_fields(
        PromptSpec(template=t[0] + "{value}" + t[1], separator=t[2]), SPECS
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.lists(_value, min_size=len(FIELDS), max_size=len(FIELDS)), min_size=1, max_size=6
    ),
    template=_templates,
    name=st.sampled_from(sorted(TOKENIZERS)),
)
def test_random_rows_and_templates(values, template, name):
    tokenizer = TOKENIZERS[name]()
    columns = {f: pa.array([row[i] for row in values]) for i, f in enumerate(FIELDS)}
    rows = render_and_tokenize(columns, SPECS, template, field_tokenizer(name), 512)
    texts = rows.text.to_pylist()
    whole = tokenizer(texts, return_offsets_mapping=True)
    assert rows.input_ids.to_pylist() == whole["input_ids"]
    for r, row in enumerate(values):
        offsets = whole["offset_mapping"][r]
        for f, value in enumerate(row):
            a, b = (int(x) for x in rows.char_spans[r, f])
            assert texts[r][a:b] == readable_value(SPECS[f], value)
            s, e = (int(x) for x in rows.token_spans[r, f])
            assert e > s
            inside = [offsets[i] for i in range(s, e)]
            outside = [offsets[i] for i in range(len(offsets)) if not s <= i < e]
            assert all(x < b and y > a for x, y in inside)  # every span token touches the value
            assert not any(x < b and y > a for x, y in outside if y > x)  # no other token does
            covered = {c for x, y in inside for c in range(x, y)}
            assert {c for c in range(a, b) if not texts[r][c].isspace()} <= covered
            if name == "bert":  # WordPiece splits at punctuation: the span is exactly the value
                assert (min(x for x, _ in inside), max(y for _, y in inside)) == (a, b)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_truncation_drops_whole_fields_and_reports_them(name: str, split_table: pa.Table):
    tokenizer = TOKENIZERS[name]()
    table = split_table.slice(0, 200)
    full = render_and_tokenize(_columns(table), SPECS, ml1m_template(), tokenizer, 512)
    limit = int(full.lengths.min()) - 1
    cut = render_and_tokenize(_columns(table), SPECS, ml1m_template(), tokenizer, limit)
    assert (cut.lengths <= limit).all()
    assert (~cut.kept).any(axis=1).all()  # every row lost at least its last field
    assert not cut.kept[:, -1].any()
    for r in range(table.num_rows):
        kept = cut.kept[r]
        assert list(kept) == sorted(kept, reverse=True)  # a prefix of the fields is kept
        assert full.text[r].as_py().startswith(cut.text[r].as_py())
        assert (cut.token_spans[r][~kept] == 0).all()
        assert (cut.token_spans[r][kept] == full.token_spans[r][kept]).all()
    assert cut.input_ids.to_pylist() == tokenizer(cut.text.to_pylist())["input_ids"]


def test_non_separable_template_is_caught():
    tokenizer = minilm_tokenizer()
    columns = {f: pa.array(["play" if i % 2 == 0 else "ing"]) for i, f in enumerate(FIELDS)}
    rows = render_and_tokenize(
        columns, SPECS, PromptTemplate(template="{value}", separator=""), tokenizer, 128
    )
    with pytest.raises(TokenizationMismatchError, match="pre-tokenizer boundary"):
        check_against_whole_rows(rows, tokenizer, sample=10)


def test_field_tokenizer_ignores_padding_in_tokenizer_files():
    ftok = FieldTokenizer(minilm_tokenizer())  # MiniLM's tokenizer.json pads to 128
    assert ftok.prefix == [minilm_tokenizer().cls_token_id]
    assert ftok.suffix == [minilm_tokenizer().sep_token_id]
    assert ftok.hash == FieldTokenizer(minilm_tokenizer()).hash
    assert ftok.hash != FieldTokenizer(roberta_tokenizer()).hash
