"""Orchestration helpers: content cache keys, locks, fault injection, artifacts, flow params."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow

from flip_core.config import ConfigError, load_config
from flip_core.data.synth import write_synthetic_movielens
from flows.params import flow_config
from tasks.artifacts import metrics_markdown, mlflow_ui_hint, mlflow_ui_link, validation_markdown
from tasks.caching import cache_key, code_version, work_dir
from tasks.faults import fault_callbacks, inject_faults, parse_faults
from tasks.locks import lake_lock, lake_lock_file, registry_lock_file
from tasks.raw_data import RawDataManifest, prepare_raw_data

SYNTH_SPEC = "configs/datasets/synth-ml-1m.yaml"


def _config(tmp_path: Path, *extra: str):
    return load_config(None, [f"paths.data_root={tmp_path / 'data'}", *extra])


def _key(config, sections=("synth",)) -> str:
    return cache_key("step", {"config": config}, sections)


def test_cache_key_follows_only_the_named_sections_and_the_data_root(tmp_path: Path):
    base = _config(tmp_path)
    assert _key(base) == _key(_config(tmp_path))
    assert _key(base) == _key(_config(tmp_path, "training.epochs=9"))  # section not named
    assert _key(base) != _key(_config(tmp_path, "synth.seed=3"))
    other_root = load_config(None, [f"paths.data_root={tmp_path / 'elsewhere'}"])
    assert _key(base) != _key(other_root)


def test_wiping_the_data_root_invalidates_its_keys(tmp_path: Path):
    config = _config(tmp_path)
    before = _key(config)
    salt = config.paths.data_root / ".flip-cache-salt"
    assert salt.is_file()
    salt.unlink()
    assert _key(config) != before


def test_cache_key_follows_raw_content_and_manifests(tmp_path: Path):
    raw = tmp_path / "raw"
    write_synthetic_movielens(raw, users=5, movies=5, ratings_per_user=3, seed=0)
    config = _config(tmp_path, f"paths.raw_dir={raw}")
    before = _key(config, ("paths",))
    with (raw / "ratings.dat").open("a", encoding="latin-1") as handle:
        handle.write("1::1::5::978300760\n")
    assert _key(config, ("paths",)) != before

    m1 = RawDataManifest(raw_dir=raw, content_hash="a" * 64, synthetic=False)
    m2 = RawDataManifest(raw_dir=tmp_path / "moved", content_hash="a" * 64, synthetic=False)
    m3 = RawDataManifest(raw_dir=raw, content_hash="b" * 64, synthetic=False)
    assert cache_key("s", {"m": m1}) == cache_key("s", {"m": m2})  # content, not location
    assert cache_key("s", {"m": m1}) != cache_key("s", {"m": m3})
    assert cache_key("s", {"m": m1}) != cache_key("other", {"m": m1})


def test_cache_key_rejects_values_it_cannot_fingerprint():
    with pytest.raises(TypeError, match="cannot build a content cache key"):
        cache_key("s", {"x": object()})
    with pytest.raises(KeyError, match="unknown config section"):
        cache_key("s", {"c": load_config()}, sections=("nope",))


def test_code_version_is_a_stable_hash_and_work_dir_is_deterministic(tmp_path: Path):
    assert code_version(("tasks",)) == code_version(("tasks",))
    assert code_version(("tasks",)) != code_version(("sql",))
    with pytest.raises(FileNotFoundError):
        code_version(("no-such-folder",))
    config = _config(tmp_path)
    a = work_dir(config, "finetune", "x", sections=("training",))
    assert a == work_dir(config, "finetune", "x", sections=("training",))
    assert a != work_dir(config, "finetune", "y", sections=("training",))
    assert a.parent == config.paths.data_root / "work" / "finetune"


@flow
def _prepare_twice(data_root: Path) -> list[str]:
    overrides = [
        f"paths.data_root={data_root}",
        "synth.enabled=true",
        f"paths.dataset={SYNTH_SPEC}",
        "synth.users=8",
    ]
    config = load_config(None, [*overrides, "synth.items=6"])
    first = prepare_raw_data(config, return_state=True)
    second = prepare_raw_data(config, return_state=True)
    assert first.result() == second.result()
    return [str(first.name), str(second.name)]


@pytest.mark.usefixtures("prefect_api")
def test_second_call_with_same_content_is_a_cache_hit(tmp_path: Path):
    assert _prepare_twice(tmp_path / "data") == ["Completed", "Cached"]


@flow
def _prepare_with_fault(data_root: Path) -> str:
    overrides = [
        f"paths.data_root={data_root}",
        "synth.enabled=true",
        f"paths.dataset={SYNTH_SPEC}",
        "synth.users=4",
    ]
    config = load_config(None, overrides)
    state = prepare_raw_data.with_options(retry_delay_seconds=0)(config, return_state=True)
    return str(state.name)


@pytest.mark.usefixtures("prefect_api")
def test_a_step_that_fails_once_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    failed: set[str] = set()
    monkeypatch.setenv("FLIP_FAULTS", "prepare-raw-data:fail-once")
    monkeypatch.setattr("tasks.faults.failed_once", failed)
    assert _prepare_with_fault(tmp_path / "data") == "Completed"
    assert failed == {"prepare-raw-data"}  # the first attempt did fail


def test_parse_faults_and_fail_once(monkeypatch: pytest.MonkeyPatch):
    assert parse_faults("a:fail-once, b:sleep=0.1") == {"a": ["fail-once"], "b": ["sleep=0.1"]}
    with pytest.raises(ValueError, match="unknown action"):
        parse_faults("a:explode")
    with pytest.raises(ValueError, match="expected step:action"):
        parse_faults("a")
    monkeypatch.setenv("FLIP_FAULTS", "s:fail-once")
    monkeypatch.setattr("tasks.faults.failed_once", set())
    with pytest.raises(ConnectionError, match="injected"):
        inject_faults("s")
    inject_faults("s")  # second attempt passes
    inject_faults("other")


def test_step_sleep_fault_slows_every_training_step(monkeypatch: pytest.MonkeyPatch):
    from flip_core.training import TrainerState

    monkeypatch.setenv("FLIP_FAULTS", "finetune:step-sleep=0.2,finetune:sleep=0")
    assert fault_callbacks("pretrain") == []
    (slow,) = fault_callbacks("finetune")
    started = time.monotonic()
    slow.on_step(TrainerState(step=1), {})
    assert time.monotonic() - started >= 0.2
    inject_faults("finetune")  # step-sleep does nothing outside the trainer; sleep=0 passes


_HOLD = """
import sys, time
from pathlib import Path
from filelock import FileLock
lock = FileLock(sys.argv[1]); lock.acquire()
Path(sys.argv[2]).write_text("held")
time.sleep(float(sys.argv[3]))
"""


def test_lake_lock_excludes_a_second_process(tmp_path: Path):
    config = _config(tmp_path)
    lock_file = lake_lock_file(config)
    lock_file.parent.mkdir(parents=True)
    flag = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock_file), str(flag), "3"])
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        held_since = time.monotonic()
        with (
            pytest.raises(TimeoutError, match="still held by another run"),
            lake_lock(config, timeout_s=0.3),
        ):
            pass
        with lake_lock(config, timeout_s=30):
            waited = time.monotonic() - held_since
        assert waited > 2.5  # got it only once the holder (3 s) had let go
    finally:
        holder.kill()
        holder.wait()


def test_registry_lock_sits_next_to_a_sqlite_store(tmp_path: Path):
    config = load_config(
        None,
        [f"paths.data_root={tmp_path}", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"],
    )
    assert registry_lock_file(config) == tmp_path / "m.db.lock"
    remote = load_config(None, [f"paths.data_root={tmp_path}", "mlflow.tracking_uri=http://x:5"])
    assert registry_lock_file(remote).parent == tmp_path / ".locks"


def test_artifact_markdown():
    text = validation_markdown(
        "ml1m",
        {"ratings": {"read": 10, "kept": 9, "quarantined": 1}},
        {"rating out of range": 1},
        bad_share=0.1,
        limit=0.01,
    )
    assert "| table | kept | quarantined | read |" in text
    assert "| ratings | 9 | 1 | 10 |" in text
    assert "Bad share: **10.000%** (limit 1.00%)" in text
    assert "| rating out of range | 1 |" in text
    table = metrics_markdown({"valid_auc": 0.75}, {"valid_auc": 0.7}, "promoted")
    assert "| valid_auc | 0.7500 | 0.7000 | +0.0500 |" in table
    first = metrics_markdown({"valid_auc": 0.75}, None, "promoted")
    assert "No champion yet" in first
    assert mlflow_ui_link("http://h:5000/", "1", "abc") == "http://h:5000/#/experiments/1/runs/abc"
    assert mlflow_ui_link("sqlite:///m.db", "1", "abc").startswith("http://127.0.0.1:5000/")
    # how to browse: a server is its own UI; only a local store needs `mlflow ui`
    assert mlflow_ui_hint("http://h:5000") == (
        "open http://h:5000 in a browser (the tracking server serves the MLflow UI)"
    )
    assert mlflow_ui_hint("sqlite:///m.db").startswith("mlflow ui --backend-store-uri sqlite:///")


def test_tracking_uri_explicit_config_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_config().mlflow.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_config().mlflow.tracking_uri == "http://127.0.0.1:5999"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("mlflow:\n  tracking_uri: sqlite:///from-file.db\n")
    assert load_config(yaml_file).mlflow.tracking_uri == "sqlite:///from-file.db"
    explicit = flow_config(yaml_file, None, **{"mlflow.tracking_uri": "http://param:1"})
    assert explicit.mlflow.tracking_uri == "http://param:1"


def test_synthetic_data_is_its_own_dataset_and_never_beside_a_raw_folder(tmp_path: Path):
    from flip_core.data.build import dataset_spec
    from tasks.raw_data import synthetic_spec_error

    assert dataset_spec(load_config()).name == "ml-1m"
    synthetic = load_config(overrides=["synth.enabled=true", f"paths.dataset={SYNTH_SPEC}"])
    assert dataset_spec(synthetic).name == "synth-ml-1m"
    assert synthetic_spec_error("synth-ml-1m") is None
    assert "never 'ml-1m'" in (synthetic_spec_error("ml-1m") or "")
    with pytest.raises(ConfigError, match="choose real data"):
        load_config(overrides=["synth.enabled=true", f"paths.raw_dir={tmp_path}"])


def test_flow_parameters_override_the_file(tmp_path: Path):
    config = flow_config(
        Path(__file__).resolve().parent.parent / "configs" / "demo.yaml",
        ["training.epochs=7"],
        **{"paths.data_root": tmp_path, "finetune.variants": ["flip", "flip_id"], "plm.name": None},
    )
    assert config.paths.data_root == tmp_path
    assert config.finetune.variants == ["flip", "flip_id"]
    assert config.training.epochs == 7
    assert config.plm.name == "minilm-l6"
