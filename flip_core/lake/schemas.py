"""The lake's tables: pandera models (the value rules) and their layout.

Parsing (field count, integer syntax, bytes) happens in SQL; the rules on values live here, in
pandera `DataFrameModel`s validated lazily so every failing row is reported, not only the first.
Ratings must also refer to known users and movies: `ratings_schema(users, movies)` adds those
checks for the ids known at ingest time.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
GENDERS = ("M", "F")
OCCUPATIONS = (0, 20)
RATINGS = (1, 5)


class RatingsModel(pa.DataFrameModel):
    """One rating (the click log): who, what, how many stars, when."""

    user_id: Series[np.int32] = pa.Field(ge=1)
    movie_id: Series[np.int32] = pa.Field(ge=1)
    rating: Series[np.int32] = pa.Field(in_range={"min_value": RATINGS[0], "max_value": RATINGS[1]})
    timestamp: Series[np.int64] = pa.Field(ge=0)

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["user_id", "movie_id", "timestamp"]


class UsersModel(pa.DataFrameModel):
    """One user's demographics (MovieLens-1M codes)."""

    user_id: Series[np.int32] = pa.Field(ge=1, unique=True)
    gender: Series[str] = pa.Field(isin=list(GENDERS))
    age: Series[np.int32] = pa.Field(isin=list(AGE_BUCKETS))
    occupation: Series[np.int32] = pa.Field(
        in_range={"min_value": OCCUPATIONS[0], "max_value": OCCUPATIONS[1]}
    )
    zip: Series[str] = pa.Field(str_matches=r"^[0-9A-Za-z][0-9A-Za-z -]{0,15}$")

    class Config:
        strict = True


class MoviesModel(pa.DataFrameModel):
    """One movie: title with year, and its `|`-separated genres."""

    movie_id: Series[np.int32] = pa.Field(ge=1, unique=True)
    title: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 500})
    genres: Series[str] = pa.Field(str_matches=r"^[^|\s][^|]*(\|[^|\s][^|]*)*$")

    class Config:
        strict = True


@dataclass(frozen=True)
class TableSpec:
    """How one lake table is parsed, keyed and validated."""

    name: str
    fields: tuple[str, ...]
    key: tuple[str, ...]
    model: type[pa.DataFrameModel]
    dimension: bool

    @property
    def field_count(self) -> int:
        return len(self.fields)


TABLES: dict[str, TableSpec] = {
    "users": TableSpec(
        "users", ("user_id", "gender", "age", "occupation", "zip"), ("user_id",), UsersModel, True
    ),
    "movies": TableSpec(
        "movies", ("movie_id", "title", "genres"), ("movie_id",), MoviesModel, True
    ),
    "ratings": TableSpec(
        "ratings",
        ("user_id", "movie_id", "rating", "timestamp"),
        ("user_id", "movie_id", "timestamp"),
        RatingsModel,
        False,
    ),
}
LAKE_TABLES = ("ratings", "users", "movies")


def ratings_schema(
    known_users: Sequence[int] | np.ndarray,
    known_movies: Sequence[int] | np.ndarray,
    key_checked: bool = False,
) -> pa.DataFrameSchema:
    """The ratings model plus referential checks against the given user and movie ids.

    `key_checked=True` leaves out the (costly) key uniqueness check, for frames whose keys were
    made unique already (the ingest's SQL dedup step does that, and tells duplicates from
    conflicts, which a uniqueness check cannot).
    """
    schema = RatingsModel.to_schema()
    if key_checked:
        schema = copy.copy(schema)  # to_schema() is cached: never mutate it
        schema.unique = None
    users = pa.Check.isin(np.asarray(known_users), name="known_user", error="known_user")
    movies = pa.Check.isin(np.asarray(known_movies), name="known_movie", error="known_movie")
    return schema.update_columns(
        {
            "user_id": {"checks": [*schema.columns["user_id"].checks, users]},
            "movie_id": {"checks": [*schema.columns["movie_id"].checks, movies]},
        }
    )


def failure_reasons(
    schema: pa.DataFrameSchema | type[pa.DataFrameModel], frame: pd.DataFrame
) -> dict[int, str]:
    """Validate `frame` lazily; map each failing row's index label to a readable reason.

    Raises `SchemaErrors` when a failure is not tied to rows (a wrong column or dtype): that is a
    bug upstream, not bad input. `frame` is validated in place (no copy): the lake models coerce
    nothing, so it is left as it was.
    """
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except SchemaErrors as exc:
        return _reasons(exc.failure_cases)
    return {}


def _reasons(cases: pd.DataFrame) -> dict[int, str]:
    if cases["index"].isna().any():
        bad = cases[cases["index"].isna()].head(3).to_dict("records")
        raise ValueError(f"lake schema violated at column level (not row level): {bad}")
    reasons: dict[int, list[str]] = {}
    parts = (cases[c] for c in ("index", "column", "check", "failure_case"))
    for index, column, check, value in zip(*parts, strict=True):
        reasons.setdefault(int(index), []).append(_describe(column, str(check), value))
    return {index: "; ".join(dict.fromkeys(parts)) for index, parts in reasons.items()}


def _describe(column: Any, check: str, value: Any) -> str:
    name = column if isinstance(column, str) else "row"
    if isinstance(value, np.generic):
        value = value.item()
    if check.startswith(("field_uniqueness", "multiple_fields_uniqueness")):
        return "duplicate key"
    if check in ("known_user", "known_movie"):
        return f"{name}: {value!r} is not a {check.removeprefix('known_')} in the lake"
    return f"{name}: {check} failed (got {value!r})"
