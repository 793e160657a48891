"""The synthetic app-store click log: seeded, the stated CSV shape, learnable labels, its spec."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from flip_core.data.synth_apps import CATEGORIES, COUNTRIES, write_synthetic_apps
from flip_core.lake import ingest_dataset
from flip_core.spec import load_dataset_spec
from tests.conftest import REPO_ROOT

SPEC = REPO_ROOT / "configs" / "datasets" / "synth-apps.yaml"
HEADERS = {
    "users.csv": ["user_key", "country", "plan", "signup_days"],
    "apps.csv": [
        "app_key",
        "category",
        "price",
        "tags",
        "has_ads",
        "in_app_purchases",
        "offline",
    ],
    "events.csv": ["event_id", "user_key", "app_key", "ts", "device", "hour", "clicked"],
}


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("apps")
    write_synthetic_apps(out, users=200, apps=120, events_per_user=30, seed=1)
    return out


def test_seeded_and_seed_sensitive(tmp_path: Path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synthetic_apps(tmp_path / name, users=40, apps=30, events_per_user=10, seed=seed)
    for file in HEADERS:
        a, b, c = ((tmp_path / d / file).read_bytes() for d in "abc")
        assert a == b, file
        assert a != c, file


def test_headers_columns_and_counts(tmp_path: Path):
    counts = write_synthetic_apps(tmp_path, users=50, apps=40, events_per_user=12, seed=2)
    for file, header in HEADERS.items():
        found, _ = _rows(tmp_path / file)
        assert found == header, file
    _, users = _rows(tmp_path / "users.csv")
    _, apps = _rows(tmp_path / "apps.csv")
    _, events = _rows(tmp_path / "events.csv")
    assert (counts.users, counts.apps, counts.events) == (len(users), len(apps), len(events))
    assert len(users) == 50 and len(apps) == 40 and len(events) > 50 * 6
    assert {u["country"] for u in users} <= set(COUNTRIES)
    assert {u["plan"] for u in users} <= {"free", "pro", "team"}
    assert all(int(u["signup_days"]) >= 0 for u in users)
    assert [a["app_key"] for a in apps] == [f"app-{i:04d}" for i in range(1, 41)]
    assert {a["category"] for a in apps} <= set(CATEGORIES)
    for app in apps:
        tags = app["tags"].split(";")
        assert tags and set(tags) <= set(CATEGORIES[app["category"]])
        assert {app[c] for c in ("has_ads", "in_app_purchases", "offline")} <= {"0", "1"}
        assert float(app["price"]) >= 0
    assert any(float(a["price"]) == 0 for a in apps) and any(float(a["price"]) > 0 for a in apps)
    user_keys, app_keys = {u["user_key"] for u in users}, {a["app_key"] for a in apps}
    assert [int(e["event_id"]) for e in events] == list(range(1, len(events) + 1))
    times = [int(e["ts"]) for e in events]
    assert times == sorted(times)
    for event in events:
        assert event["user_key"] in user_keys and event["app_key"] in app_keys
        assert event["device"] in {"phone", "tablet", "desktop"}
        assert 0 <= int(event["hour"]) <= 23 and event["clicked"] in {"0", "1"}


def test_quoting_round_trips(raw: Path):
    text = (raw / "apps.csv").read_text(encoding="utf-8")
    assert '"food, drink"' in text  # the comma-holding category is quoted
    _, apps = _rows(raw / "apps.csv")
    assert any(a["category"] == "food, drink" for a in apps)


def test_labels_balanced_and_cold_users_in_time_order(raw: Path):
    _, events = _rows(raw / "events.csv")
    labels = [int(e["clicked"]) for e in events]
    assert set(labels) == {0, 1}
    assert 0.2 < float(np.mean(labels)) < 0.8
    cut = int(0.8 * len(events))
    seen = {e["user_key"] for e in events[:cut]}
    cold = [e["user_key"] not in seen for e in events[int(0.9 * len(events)) :]]
    assert 0.05 < float(np.mean(cold)) < 0.95  # the time split's test has cold and warm users


def test_labels_are_learnable(raw: Path):
    _, users = _rows(raw / "users.csv")
    _, apps = _rows(raw / "apps.csv")
    _, events = _rows(raw / "events.csv")
    user = {u["user_key"]: u for u in users}
    app = {a["app_key"]: a for a in apps}
    features = [
        [
            e["user_key"],
            e["app_key"],
            f"{e['device']}/{app[e['app_key']]['category']}",
            f"{user[e['user_key']]['country']}/{app[e['app_key']]['tags']}",
            f"{user[e['user_key']]['plan']}/{app[e['app_key']]['price']}",
            str(int(e["hour"]) >= 18),
        ]
        for e in events
    ]
    labels = np.array([int(e["clicked"]) for e in events])
    order = np.random.default_rng(0).permutation(len(events))
    train, test = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
    encoder = OneHotEncoder(handle_unknown="ignore").fit([features[i] for i in train])
    model = LogisticRegression(C=0.5, max_iter=500)
    model.fit(encoder.transform([features[i] for i in train]), labels[train])
    scores = model.predict_proba(encoder.transform([features[i] for i in test]))[:, 1]
    assert roc_auc_score(labels[test], scores) > 0.65


def test_spec_ingests_every_row(raw: Path, tmp_path: Path):
    result = ingest_dataset(raw, tmp_path / "data", load_dataset_spec(SPEC))
    assert {r.table: r.quarantined for r in result.sources} == {"users": 0, "apps": 0, "events": 0}
    assert result.sources[-1].table == "events"  # after the tables its keys refer to
    lines = {f: len(_rows(raw / f)[1]) for f in HEADERS}
    assert result.table_rows == {f.removesuffix(".csv"): n for f, n in lines.items()}


def test_rejects_empty_sizes(tmp_path: Path):
    with pytest.raises(ValueError, match=">= 1"):
        write_synthetic_apps(tmp_path, users=0)


def test_spec_fields_kinds_and_roles():
    spec = load_dataset_spec(SPEC)
    assert spec.name == "synth-apps"
    assert spec.events == "events" and spec.timestamp == "ts"
    assert [(j.table, j.key) for j in spec.joins] == [
        ("users", ["user_key"]),
        ("apps", ["app_key"]),
    ]
    assert spec.label.column == "clicked" and spec.label.op is None
    kinds = {f.name: f.kind for f in spec.fields}
    assert spec.field_names == [
        "user_key",
        "country",
        "plan",
        "app_key",
        "category",
        "price",
        "tags",
        "features",
        "device",
        "hour",
    ]
    assert kinds == {
        "user_key": "categorical",
        "country": "categorical",
        "plan": "categorical",
        "app_key": "categorical",
        "category": "categorical",
        "price": "numeric",
        "tags": "multi",
        "features": "multi",
        "device": "categorical",
        "hour": "numeric",
    }
    assert spec.role_field("user") == "user_key" and spec.role_field("item") == "app_key"
    assert spec.field("device").role == "context"
    assert spec.field("user_key").text_label == "user" and spec.field("app_key").text_label == "app"
    assert (spec.field("price").bins, spec.field("hour").bins) == (8, 6)
    assert spec.field("tags").separator == ";"
    assert spec.field("features").source_columns == ["has_ads", "in_app_purchases", "offline"]
    assert spec.field("plan").values == {
        "free": "free plan",
        "pro": "pro plan",
        "team": "team plan",
    }
    assert [(p.name, p.order) for p in spec.protocols] == [
        ("apps-time-811", "time"),
        ("apps-random-811", "random"),
    ]
    assert spec.protocol("apps-random-811").seed == 7
    # The generator's header is exactly what the spec's tables read, in order.
    for table in spec.tables:
        assert [c.source_name for c in table.columns] == HEADERS[f"{table.name}.csv"]


@pytest.mark.parametrize("name", ["ml-1m.yaml", "synth-apps.yaml"])
def test_user_guide_inlines_the_spec_verbatim(name: str):
    guide = (REPO_ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    spec = (REPO_ROOT / "configs" / "datasets" / name).read_text(encoding="utf-8")
    assert f"```yaml\n{spec.rstrip()}\n```" in guide, f"docs/datasets.md: update the copy of {name}"
