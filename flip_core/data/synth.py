"""Synthetic MovieLens-1M-shaped data with learnable click signal.

Writes `users.dat`, `movies.dat` and `ratings.dat` in the real GroupLens format (`::`-separated,
latin-1). A rating comes from a user bias, an item bias, a user-item latent interaction and a
demographic-genre affinity, plus noise, so both the ID view (users, items, their interaction) and
the text view (gender, age, genres) carry signal. Users arrive over time, as in the real logs, so a
time split has cold-start users.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)  # fmt: skip
_TITLE_WORDS = (
    "Night", "River", "Café", "Return", "Dream", "City", "Storm", "Garden", "Señor", "Last",
    "Secret", "Summer", "Ghost", "Road", "Über", "Island", "Letter", "King", "Fire", "Blue",
)  # fmt: skip
_LATENT_DIM = 4


@dataclass(frozen=True)
class SynthCounts:
    """Row counts of a written synthetic dataset."""

    users: int
    movies: int
    ratings: int


def write_synthetic_movielens(
    out_dir: Path, users: int = 500, movies: int = 400, ratings_per_user: int = 60, seed: int = 0
) -> SynthCounts:
    """Write a seeded synthetic ML-1M-shaped dataset to `out_dir`; returns the row counts."""
    if users < 1 or movies < 1 or ratings_per_user < 1:
        raise ValueError("users, movies and ratings_per_user must all be >= 1")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)

    gender = rng.choice(np.array(["M", "F"]), size=users, p=[0.7, 0.3])
    age_idx = rng.choice(len(AGE_BUCKETS), size=users, p=[0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06])
    occupation = rng.integers(0, 21, size=users)
    zips = rng.integers(1000, 99999, size=users)
    user_lines = [
        f"{u + 1}::{gender[u]}::{AGE_BUCKETS[age_idx[u]]}::{occupation[u]}::{zips[u]:05d}"
        for u in range(users)
    ]

    genre_sets = [_pick_genres(rng) for _ in range(movies)]
    years = rng.integers(1930, 2001, size=movies)
    movie_lines = [
        f"{m + 1}::{_title(rng, m)} ({years[m]})::{'|'.join(GENRES[g] for g in genre_sets[m])}"
        for m in range(movies)
    ]

    rating_lines = _ratings(rng, gender, age_idx, genre_sets, users, movies, ratings_per_user)

    _write_lines(out_dir / "users.dat", user_lines)
    _write_lines(out_dir / "movies.dat", movie_lines)
    _write_lines(out_dir / "ratings.dat", rating_lines)
    return SynthCounts(users=users, movies=movies, ratings=len(rating_lines))


def _pick_genres(rng: np.random.Generator) -> list[int]:
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    return sorted(rng.choice(len(GENRES), size=count, replace=False).tolist())


def _title(rng: np.random.Generator, index: int) -> str:
    words = rng.choice(len(_TITLE_WORDS), size=2, replace=False)
    return f"{_TITLE_WORDS[words[0]]} {_TITLE_WORDS[words[1]]} {index + 1}"


def _ratings(
    rng: np.random.Generator,
    gender: np.ndarray,
    age_idx: np.ndarray,
    genre_sets: list[list[int]],
    users: int,
    movies: int,
    ratings_per_user: int,
) -> list[str]:
    user_bias = rng.normal(0.0, 0.6, size=users)
    item_bias = rng.normal(0.0, 0.6, size=movies)
    user_vec = rng.normal(0.0, 0.7, size=(users, _LATENT_DIM))
    item_vec = rng.normal(0.0, 0.7, size=(movies, _LATENT_DIM))
    # Demographic-genre affinity: the text view (gender, age, genres) explains part of the label.
    genre_by_gender = rng.normal(0.0, 0.8, size=(2, len(GENRES)))
    genre_by_age = rng.normal(0.0, 0.6, size=(len(AGE_BUCKETS), len(GENRES)))
    genre_hot = np.zeros((movies, len(GENRES)))
    for m, gs in enumerate(genre_sets):
        genre_hot[m, gs] = 1.0 / len(gs)

    popularity = 1.0 / np.arange(1, movies + 1) ** 0.8
    popularity = popularity[rng.permutation(movies)]
    popularity /= popularity.sum()

    start, day = 956_703_932, 86_400  # 2000-04-25, the start of the real ML-1M logs
    arrival = start + np.sort(rng.integers(0, 900 * day, size=users))
    lines: list[str] = []
    for u in range(users):
        count = min(movies, max(1, int(rng.poisson(ratings_per_user))))
        items = rng.choice(movies, size=count, replace=False, p=popularity)
        g = 0 if gender[u] == "M" else 1
        affinity = genre_hot[items] @ (genre_by_gender[g] + genre_by_age[age_idx[u]])
        score = (
            user_bias[u] + item_bias[items] + item_vec[items] @ user_vec[u] + affinity
            + rng.normal(0.0, 0.5, size=count)
        )  # fmt: skip
        stars = np.clip(np.round(3.6 + score), 1, 5).astype(int)
        stamps = np.sort(arrival[u] + rng.integers(0, 30 * day, size=count))
        lines.extend(
            f"{u + 1}::{i + 1}::{s}::{t}" for i, s, t in zip(items, stars, stamps, strict=True)
        )
    return lines


def _write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="latin-1")
    tmp.replace(path)
