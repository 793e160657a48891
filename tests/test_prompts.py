"""Prompt rendering: readable values, template checks, value char spans."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flip_core.data.fields import readable_value
from flip_core.data.prompts import PromptTemplate
from tests.features_support import ml1m_field, ml1m_spec, ml1m_template

FIELDS = ml1m_spec().field_names


def _readable(name: str, raw: object) -> str:
    return readable_value(ml1m_field(name), raw)


def test_readable_values():
    assert _readable("gender", "F") == "female"
    assert _readable("gender", "M") == "male"
    assert _readable("age", 1) == "under 18"
    assert _readable("age", 25) == "25-34"
    assert _readable("age", 56) == "56+"
    assert _readable("occupation", 0) == "other"
    assert _readable("occupation", 20) == "writer"
    assert _readable("occupation", 4) == "college/grad student"
    assert len(ml1m_field("occupation").values or {}) == 21
    genres = _readable("genres", "Animation|Children's|Comedy")
    assert genres == "Animation, Children's, Comedy"
    assert _readable("title", "Toy Story (1995)") == "Toy Story (1995)"
    assert _readable("zip", None) == "unknown"


def test_default_render_is_the_paper_prompt():
    values = {
        "user_id": "1", "gender": "female", "age": "under 18", "occupation": "K-12 student",
        "zip": "48067", "movie_id": "1", "title": "Toy Story (1995)",
        "genres": "Animation, Children's, Comedy",
    }  # fmt: skip
    text, spans = ml1m_template().render(values, FIELDS)
    assert text == (
        "user id is 1. gender is female. age is under 18. occupation is K-12 student. "
        "zip code is 48067. movie id is 1. title is Toy Story (1995). "
        "genres is Animation, Children's, Comedy."
    )
    assert [text[a:b] for a, b in spans] == [values[f] for f in FIELDS]


@pytest.mark.parametrize("bad", ["{field} is", "{value} {value}", "{field}{field} {value}"])
def test_bad_templates_are_rejected(bad: str):
    with pytest.raises(ValueError, match="template"):
        PromptTemplate(template=bad)


_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=0, max_size=12
)


@given(
    values=st.lists(_text, min_size=len(FIELDS), max_size=len(FIELDS)),
    before=_text,
    after=_text,
    separator=st.sampled_from([" ", "\n", " | ", ""]),
)
def test_char_spans_hold_exactly_the_values(values, before, after, separator):
    template = PromptTemplate(
        template=before.replace("{", "(") + "{value}" + after.replace("{", "("),
        separator=separator,
    )
    row = dict(zip(FIELDS, values, strict=True))
    text, spans = template.render(row, FIELDS)
    assert [text[a:b] for a, b in spans] == values
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
