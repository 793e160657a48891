from pathlib import Path

import pytest

from flip_core.config import ConfigError, FlipConfig, load_config
from flip_core.data.build import dataset_spec

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_defaults_resolve_without_a_file():
    config = load_config()
    assert config == FlipConfig()
    assert config.paths.dataset == Path("configs/datasets/ml-1m.yaml")
    assert config.features.protocol is None  # the spec's first protocol
    assert dataset_spec(config).protocol(config.features.protocol).name == "ml1m-time-811"


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path: Path):
    load_config(path)


def test_file_overrides_defaults_and_cli_overrides_file(tmp_path: Path):
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  epochs: 7\n  batch_size: 64\n")
    config = load_config(path, ["training.epochs=9", "paths.raw_dir=/tmp/raw"])
    assert config.training.epochs == 9
    assert config.training.batch_size == 64
    assert config.paths.raw_dir == Path("/tmp/raw")


def test_unknown_key_names_key_and_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "unknown key 'training.learning_rat'" in str(info.value)


def test_mistyped_value_names_key_and_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  epochs: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "key 'training.epochs'" in message and "'many'" in message


def test_bad_override_names_the_override():
    with pytest.raises(ConfigError, match=r"--set trainin\.epochs=2: unknown key 'trainin'"):
        load_config(None, ["trainin.epochs=2"])
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        load_config(None, ["training.epochs"])


def test_missing_file_and_non_mapping_are_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


def test_yaml_round_trip():
    config = load_config(None, ["training.epochs=4"])
    import yaml

    assert FlipConfig.model_validate(yaml.safe_load(config.to_yaml())) == config
