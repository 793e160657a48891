"""Dataset specs: the ml-1m spec loads; each kind of bad spec fails at load with one line naming
the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flip_core.spec import DatasetSpec, SpecError, load_dataset_spec
from tests.features_support import ML1M_SPEC_PATH


def _ml1m() -> dict[str, Any]:
    return dict(yaml.safe_load(ML1M_SPEC_PATH.read_text(encoding="utf-8")))


def _load_error(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_dataset_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_the_ml1m_spec_declares_fields_roles_and_protocols() -> None:
    spec = load_dataset_spec(ML1M_SPEC_PATH)
    assert spec.field_names == [
        "user_id", "gender", "age", "occupation", "zip", "movie_id", "title", "genres"
    ]  # fmt: skip
    assert (spec.role_field("user"), spec.role_field("item")) == ("user_id", "movie_id")
    assert [p.name for p in spec.protocols] == ["ml1m-time-811", "ml1m-random-811", "ml1m-ref-9010"]
    occupations = spec.field("occupation").values
    assert occupations is not None and occupations["4"] == "college/grad student"
    assert [t.name for t in spec.ingest_order] == ["movies", "users", "ratings"]
    assert spec.input_columns()["zip"] == "string"


def test_an_unknown_column_in_a_key_names_the_table_and_key(tmp_path: Path) -> None:
    data = _ml1m()
    data["tables"][0]["key"] = ["user_key"]
    message = _load_error(tmp_path, data)
    assert "tables[0] (users).key" in message and "'user_key' is not a column" in message


def test_a_field_whose_source_column_is_missing_is_named(tmp_path: Path) -> None:
    data = _ml1m()
    data["fields"][1]["column"] = "sex"
    message = _load_error(tmp_path, data)
    assert "fields[1] (gender).column: 'sex' is not a column of the joined rows" in message


def test_a_join_key_that_does_not_exist_is_named(tmp_path: Path) -> None:
    data = _ml1m()
    data["joins"][1]["key"] = ["item_id"]
    message = _load_error(tmp_path, data)
    assert "joins[1].key: 'item_id' is not a column of the rows joined so far" in message


def test_a_value_map_that_is_not_a_map_is_named(tmp_path: Path) -> None:
    data = _ml1m()
    data["fields"][1]["values"] = ["male", "female"]
    message = _load_error(tmp_path, data)
    assert "fields[1] (gender).values" in message and "must be a map" in message


def test_a_numeric_field_needs_two_bins_or_more(tmp_path: Path) -> None:
    data = _ml1m()
    data["fields"][2] = {"name": "age", "kind": "numeric", "bins": 1}
    message = _load_error(tmp_path, data)
    assert "fields[2] (age)" in message and "bins >= 2" in message


def test_a_join_on_a_column_that_is_not_the_tables_key_is_refused(tmp_path: Path) -> None:
    data = _ml1m()
    data["tables"][0]["key"] = ["user_id", "zip"]
    message = _load_error(tmp_path, data)
    assert "joins[0].key" in message and "must be table 'users''s key" in message


def test_two_user_fields_are_refused(tmp_path: Path) -> None:
    data = _ml1m()
    data["fields"][4]["role"] = "user"
    message = _load_error(tmp_path, data)
    assert "role 'user' is held by ['user_id', 'zip']" in message


def test_a_protocol_without_test_rows_is_refused(tmp_path: Path) -> None:
    data = _ml1m()
    data["protocols"][0]["valid"] = 0.2
    message = _load_error(tmp_path, data)
    assert "protocols[0] (ml1m-time-811)" in message and "leave no test rows" in message


def test_base_specs_and_value_files(tmp_path: Path) -> None:
    (tmp_path / "occupations.txt").write_text("0:other\n4:college/grad student\n", "utf-8")
    data = {
        "base": str(ML1M_SPEC_PATH.resolve()),
        "name": "ml-1m-lookup",
        "fields": [
            *_ml1m()["fields"][:3],
            {"name": "occupation", "values_file": {"path": "occupations.txt", "delimiter": ":"}},
            *_ml1m()["fields"][4:],
        ],
    }
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    spec = load_dataset_spec(path)
    assert spec.name == "ml-1m-lookup" and spec.tables == load_dataset_spec(ML1M_SPEC_PATH).tables
    assert spec.field("occupation").values == {"0": "other", "4": "college/grad student"}
    assert spec.content_hash() != load_dataset_spec(ML1M_SPEC_PATH).content_hash()


def test_the_protocol_lookup_lists_the_known_ones() -> None:
    spec: DatasetSpec = load_dataset_spec(ML1M_SPEC_PATH)
    with pytest.raises(ValueError, match="known: ml1m-time-811, ml1m-random-811, ml1m-ref-9010"):
        spec.protocol("nope")
