"""Synthetic app-store click log (a second dataset shape, unlike MovieLens) with learnable signal.

Writes `users.csv`, `apps.csv` and `events.csv` (UTF-8, comma-separated, with headers, quoted
where needed): string item keys, a float price, `;`-joined tags, three 0/1 indicator columns,
a device and an hour of day per event, and a 0/1 `clicked` label. A click comes from a user bias,
an app bias, a user-app latent interaction, a device-category affinity, a plan-dependent price
effect, a country-tag affinity and an evening boost, plus noise, so both the ID view and the text
view carry signal. Users arrive over time, so a time split has cold-start users; a user may meet
the same app more than once.

The matching dataset spec is `configs/datasets/synth-apps.yaml`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "JP", "ES")
PLANS = ("free", "pro", "team")
DEVICES = ("phone", "tablet", "desktop")
# One category holds a comma, so its CSV field is quoted.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "games": ("puzzle", "arcade", "strategy", "word game", "multiplayer"),
    "productivity": ("notes", "calendar", "office", "automation"),
    "social": ("chat", "photo", "video", "dating"),
    "health & fitness": ("running", "yoga", "sleep", "diet"),
    "food, drink": ("recipes", "delivery", "coffee"),
    "education": ("languages", "maths", "kids", "exam prep"),
    "music": ("streaming", "podcasts", "radio"),
    "travel": ("maps", "hotels", "flights", "offline maps"),
}
PRICES = (0.99, 1.99, 2.99, 4.99, 9.99)
INDICATORS = ("has_ads", "in_app_purchases", "offline")
START = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400
_LATENT_DIM = 4
_BASE_LOGIT = -0.6


@dataclass(frozen=True)
class SynthAppsCounts:
    """Row counts of a written synthetic app dataset (data rows, headers not counted)."""

    users: int
    apps: int
    events: int


@dataclass(frozen=True)
class _Apps:
    category: np.ndarray  # category index per app
    price: np.ndarray
    tags: list[list[str]]
    flags: np.ndarray  # (apps, 3) 0/1 indicators


def write_synthetic_apps(
    out_dir: Path, users: int = 300, apps: int = 200, events_per_user: int = 40, seed: int = 0
) -> SynthAppsCounts:
    """Write a seeded synthetic app-usage click log to `out_dir`; returns the row counts."""
    if users < 1 or apps < 1 or events_per_user < 1:
        raise ValueError("users, apps and events_per_user must all be >= 1")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    country = rng.integers(0, len(COUNTRIES), size=users)
    plan = rng.choice(len(PLANS), size=users, p=[0.6, 0.3, 0.1])
    catalog = _catalog(rng, apps)
    events = _events(rng, country, plan, catalog, events_per_user)
    signup = rng.integers(0, 1500, size=users)
    _write_csv(
        out_dir / "users.csv",
        ["user_key", "country", "plan", "signup_days"],
        [[u + 1, COUNTRIES[country[u]], PLANS[plan[u]], int(signup[u])] for u in range(users)],
    )
    _write_csv(
        out_dir / "apps.csv",
        ["app_key", "category", "price", "tags", *INDICATORS],
        _app_rows(catalog),
    )
    _write_csv(
        out_dir / "events.csv",
        ["event_id", "user_key", "app_key", "ts", "device", "hour", "clicked"],
        events,
    )
    return SynthAppsCounts(users=users, apps=apps, events=len(events))


def app_key(index: int) -> str:
    """The key of the app with 0-based `index`: `app-0001`, `app-0002`, ..."""
    return f"app-{index + 1:04d}"


def _catalog(rng: np.random.Generator, apps: int) -> _Apps:
    names = list(CATEGORIES)
    category = rng.integers(0, len(names), size=apps)
    paid = rng.random(apps) < 0.35
    price = np.where(paid, rng.choice(PRICES, size=apps), 0.0)
    tags = [_pick_tags(rng, CATEGORIES[names[c]]) for c in category]
    flags = np.stack(
        [
            (~paid & (rng.random(apps) < 0.7)).astype(int),  # free apps show ads
            (rng.random(apps) < np.where(paid, 0.2, 0.5)).astype(int),
            (rng.random(apps) < 0.3).astype(int),
        ],
        axis=1,
    )
    return _Apps(category=category, price=price, tags=tags, flags=flags)


def _pick_tags(rng: np.random.Generator, pool: tuple[str, ...]) -> list[str]:
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    picked = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in sorted(picked.tolist())]


def _app_rows(catalog: _Apps) -> list[list[object]]:
    names = list(CATEGORIES)
    return [
        [
            app_key(a),
            names[c],
            float(catalog.price[a]),
            ";".join(catalog.tags[a]),
            *(int(f) for f in catalog.flags[a]),
        ]
        for a, c in enumerate(catalog.category.tolist())
    ]


def _tag_index() -> dict[str, int]:
    tags = sorted({t for pool in CATEGORIES.values() for t in pool})
    return {t: i for i, t in enumerate(tags)}


def _events(
    rng: np.random.Generator,
    country: np.ndarray,
    plan: np.ndarray,
    catalog: _Apps,
    events_per_user: int,
) -> list[list[object]]:
    """One row per impression, sorted by time; `event_id` follows the time order."""
    users, apps = len(country), len(catalog.price)
    tag_index = _tag_index()
    tag_hot = np.zeros((apps, len(tag_index)))
    for a, tags in enumerate(catalog.tags):
        tag_hot[a, [tag_index[t] for t in tags]] = 1.0 / len(tags)
    user_bias = rng.normal(0.0, 0.6, size=users)
    app_bias = rng.normal(0.0, 0.6, size=apps)
    user_vec = rng.normal(0.0, 0.6, size=(users, _LATENT_DIM))
    app_vec = rng.normal(0.0, 0.6, size=(apps, _LATENT_DIM))
    device_by_category = rng.normal(0.0, 0.7, size=(len(DEVICES), len(CATEGORIES)))
    tag_by_country = rng.normal(0.0, 0.9, size=(len(COUNTRIES), len(tag_index)))
    price_by_plan = np.array([-0.35, -0.05, 0.1])  # free users shy away from paid apps
    popularity = 1.0 / np.arange(1, apps + 1) ** 0.7
    popularity = popularity[rng.permutation(apps)] / popularity.sum()

    arrival = START + np.sort(rng.integers(0, 150 * DAY, size=users))
    rows: list[tuple[int, int, int, int, int, int]] = []
    for u in range(users):
        count = max(1, int(rng.poisson(events_per_user)))
        items = rng.choice(apps, size=count, p=popularity)  # repeats allowed
        device = rng.choice(len(DEVICES), size=count, p=[0.6, 0.25, 0.15])
        stamps = arrival[u] + rng.integers(0, 45 * DAY, size=count)
        hour = (stamps // 3600) % 24
        logit = (
            _BASE_LOGIT + user_bias[u] + app_bias[items] + app_vec[items] @ user_vec[u]
            + device_by_category[device, catalog.category[items]]
            + price_by_plan[plan[u]] * catalog.price[items]
            + tag_hot[items] @ tag_by_country[country[u]]
            + np.where(hour >= 18, 0.5, 0.0) + rng.normal(0.0, 0.3, size=count)
        )  # fmt: skip
        clicked = (rng.random(count) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
        rows.extend(
            (int(t), u, int(a), int(d), int(h), int(c))
            for t, a, d, h, c in zip(stamps, items, device, hour, clicked, strict=True)
        )
    rows.sort()
    return [
        [i + 1, u + 1, app_key(a), t, DEVICES[d], h, c] for i, (t, u, a, d, h, c) in enumerate(rows)
    ]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
