"""Typed pipeline configuration.

One `FlipConfig` holds every setting. Defaults live here (and only here); an experiment YAML in
`configs/` overrides some of them, and `--set section.key=value` on the command line overrides the
file. Unknown or mistyped keys are errors that name the key and where it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and its source."""


_DUCKDB_MEMORY = re.compile(
    r"^\s*(\d+(\.\d+)?\s*(%|b|bytes?|[kmgt]i?b?|(kilo|mega|giga|tera)bytes?)|-1|none)\s*$",
    re.IGNORECASE,
)


SYNTHETIC_PREFIX = "synth-"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else `sqlite:///mlflow.db` (relative to the working dir)."""
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


MASK_RATIO = 0.15  # default share of a row's fields that MLM, and MTM, mask in pretraining


def check_mask_ratio(ratio: float) -> float:
    """`ratio` if it is a share in (0, 1] (at least one field is masked per row anyway)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"a mask ratio must be in (0, 1], got {ratio}")
    return ratio


MaskRatio = Annotated[float, AfterValidator(check_mask_ratio)]

Variant = Literal["flip", "flip_id", "flip_plm"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(_Section):
    """Where the pipeline reads and writes."""

    data_root: Path = Path("data")
    dataset: Path = Field(
        default=Path("configs/datasets/ml-1m.yaml"),
        description="Dataset spec YAML (tables, joins, label, fields, prompt, protocols); a "
        "relative path is looked up in the working folder, then in the project folder.",
    )
    raw_dir: Path | None = Field(
        default=None,
        description="Folder of raw files the dataset spec reads (the inbox). A run without one "
        "fails, unless synth.enabled asks for synthetic data.",
    )


class SynthConfig(_Section):
    """Synthetic data of the spec's shape: only when asked for (`enabled`), never a fallback."""

    enabled: bool = Field(
        default=False,
        description="Train on synthetic data (demos, tests) instead of paths.raw_dir. The data is "
        f"its own dataset: paths.dataset must be a spec named {SYNTHETIC_PREFIX}* (e.g. "
        "configs/datasets/synth-ml-1m.yaml), never a real dataset's.",
    )
    users: int = Field(default=500, ge=1)
    items: int = Field(default=400, ge=1, description="Items (movies, apps, ...).")
    events_per_user: int = Field(default=60, ge=1, description="Mean events per user.")
    seed: int = 0


class DuckDBConfig(_Section):
    """Resource limits for every DuckDB connection; defaults are safe on a 24 GiB machine."""

    memory_limit: str = "4GB"
    threads: int = Field(default=2, ge=1)
    temp_directory: Path | None = None

    @field_validator("memory_limit")
    @classmethod
    def _duckdb_size(cls, value: str) -> str:
        """The forms DuckDB's `memory_limit` takes: a size with a unit, a share of RAM, none."""
        if not _DUCKDB_MEMORY.match(value):
            raise ValueError(
                "expected a size such as 4GB, 512MiB or 1.5GB, a share such as 50%, or none"
            )
        return value


class IngestConfig(_Section):
    """Raw log ingestion and validation."""

    max_bad_share: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Fail the ingest above this quarantined share."
    )
    max_line_bytes: int = Field(
        default=65_536, ge=64, description="Longer raw lines are quarantined, never parsed."
    )
    chunk_mib: int = Field(
        default=64, ge=1, description="Raw bytes parsed per batch; bounds memory on big files."
    )
    ingest_date: str | None = Field(
        default=None,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="Lake partition for this run (YYYY-MM-DD); None means today (UTC).",
    )
    fast_path: bool = Field(
        default=True,
        description="Type clean files of simple shape in one go; false: every file line by line "
        "(the same result, slower; for checks).",
    )
    future_tolerance_s: int = Field(
        default=86_400,
        ge=0,
        description="Event times later than now (at the run's start) plus this many seconds are "
        "quarantined. Integer event times are Unix seconds.",
    )
    min_event_time: str | None = Field(
        default="1970-01-01",
        pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$",
        description="Event times before this UTC date or datetime (YYYY-MM-DD[THH:MM[:SS]]) are "
        "quarantined; None: no floor.",
    )
    duckdb: DuckDBConfig = DuckDBConfig()


class FeaturesConfig(_Section):
    """Protocol, vocabularies and prompt rendering."""

    protocol: str | None = Field(
        default=None,
        description="A protocol of the dataset spec (e.g. ml1m-time-811); None: its first.",
    )
    min_count: int = Field(default=1, ge=1)
    max_length: int = Field(default=128, ge=8)
    verify_rows: int = Field(
        default=512, ge=0, description="Rows per split re-tokenized whole to check the assembly."
    )
    duckdb: DuckDBConfig = DuckDBConfig()


class PLMConfig(_Section):
    """Pretrained language model: a hub name, a local path, or the alias `minilm-l6`."""

    name: str = "minilm-l6"
    pooling: Literal["cls", "mean"] = "cls"
    learning_rate: float = Field(
        default=5e-5, gt=0.0, description="LR of the PLM's own weights (heads use training's)."
    )
    num_layers: int | None = Field(
        default=None,
        ge=1,
        description="Keep only the first k transformer layers of the encoder (None: all); "
        "same tokenizer and features. Saved models record it.",
    )


class IDModelConfig(_Section):
    """ID-based CTR backbone."""

    backbone: str = "dcnv2"
    embedding_dim: int = Field(default=16, ge=1)
    hidden_units: list[int] = [256, 128]
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Backbone-specific settings, checked by the backbone."
    )


class TrainingConfig(_Section):
    """Settings shared by every training stage."""

    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    epochs: int = Field(default=3, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    grad_accum_steps: int = Field(default=1, ge=1)
    grad_clip_norm: float | None = Field(default=1.0, gt=0.0)
    early_stopping_patience: int = Field(default=2, ge=0)
    checkpoint_every_steps: int = Field(default=500, ge=1)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    num_threads: int | None = Field(default=None, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 autocast on CUDA GPUs that support it, else fp32."
    )
    monitor: Literal["auto", "valid_auc", "valid_loss"] = Field(
        default="auto", description="Selection metric; auto: valid AUC if the model has logits."
    )
    scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    eval_every_steps: int | None = Field(
        default=None, ge=1, description="Also evaluate on valid every N steps (always per epoch)."
    )
    log_every_steps: int = Field(default=50, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    progress: bool = True
    eval_batch_size: int | None = Field(default=None, ge=1)


class ObjectivesConfig(_Section):
    """FLIP's pretraining objectives (each switchable for ablations): what a pretrained model
    saves of them in its config.json."""

    mlm: bool = True
    mtm: bool = True
    icl: bool = True
    mlm_weight: float = Field(default=1.0, ge=0.0)
    mtm_weight: float = Field(default=1.0, ge=0.0)
    icl_weight: float = Field(default=1.0, ge=0.0)
    mlm_field_ratio: MaskRatio = MASK_RATIO
    mtm_field_ratio: MaskRatio = MASK_RATIO
    single_pass: bool = Field(
        default=False,
        description="One PLM pass per step (MTM/ICL read the MLM-masked text; masks on disjoint "
        "fields) instead of two.",
    )
    mtm_loss: Literal["sampled_softmax", "nce"] = "sampled_softmax"
    mtm_num_negatives: int = Field(default=256, ge=1)
    mtm_full_softmax_max_vocab: int = Field(
        default=1024, ge=1, description="Fields with at most this many ids use a full softmax."
    )
    mtm_hidden_dim: int = Field(default=128, ge=1)
    icl_dim: int = Field(default=128, ge=1)
    icl_temperature: float = Field(default=0.07, gt=0.0, le=1.0)
    icl_learn_temperature: bool = True


class PretrainConfig(ObjectivesConfig):
    """FLIP pretraining: its objectives, and which rows it reads."""

    max_rows: int | None = Field(default=None, ge=1, description="Cap on the train rows.")
    max_valid_rows: int | None = Field(
        default=None, ge=1, description="Cap on the valid rows pretraining evaluates (speed)."
    )
    sample: Literal["random", "first"] = Field(
        default="random",
        description="How capped splits are cut: a seeded random sample or the first (oldest) rows.",
    )
    sample_seed: int = Field(default=0, description="Seed of the random row samples.")
    shuffle_text: bool = Field(
        default=False,
        description="Control arm: each row's text is taken from another row (a seeded "
        "derangement), which destroys the alignment and keeps everything else equal.",
    )
    shuffle_text_seed: int = 0

    def objectives(self) -> ObjectivesConfig:
        """The objective settings alone (what a model saves)."""
        return ObjectivesConfig.model_validate(
            self.model_dump(include=set(ObjectivesConfig.model_fields))
        )


class FinetuneConfig(_Section):
    """FLIP finetuning variants to train."""

    variants: list[Variant] = ["flip_id"]
    max_rows: int | None = Field(default=None, ge=1)
    max_valid_rows: int | None = Field(
        default=None, ge=1, description="Cap on the valid rows used for selection and reported."
    )
    max_test_rows: int | None = Field(
        default=None, ge=1, description="Cap on the test rows scored."
    )
    sample: Literal["random", "first"] = Field(
        default="random",
        description="How capped splits are cut: a seeded random sample or the first (oldest) rows.",
    )
    sample_seed: int = Field(
        default=0, description="Seed of the row samples (fixed across training seeds: paired)."
    )
    fusion_learning_rate: float | None = Field(
        default=None,
        gt=0.0,
        description="LR of the FLIP fusion scalar (a = sigmoid(scalar)); None: training's.",
    )


class MLflowConfig(_Section):
    """Tracking and registry."""

    tracking_uri: str = Field(
        default_factory=default_tracking_uri,
        description="Tracking and registry store. Explicit config (YAML, --set, a flow's "
        "tracking_uri parameter) > the MLFLOW_TRACKING_URI environment variable > "
        "sqlite:///mlflow.db.",
    )
    experiment: str = "flip-ctr"
    registered_model: str = "flip-ctr"
    stale_after_hours: float = Field(
        default=24.0,
        gt=0.0,
        description="A RUNNING run whose owner cannot be checked (other host) is marked KILLED "
        "after this long; on the same host a dead owner pid is enough.",
    )
    score_batch_size: int = Field(
        default=8192, ge=1, description="Rows per forward pass when scoring raw rows."
    )


class GateConfig(_Section):
    """Champion/challenger rule."""

    min_valid_auc_gain: float = Field(default=0.001, ge=0.0)
    max_test_logloss_increase: float = Field(default=0.002, ge=0.0)
    same_protocol_only: bool = Field(
        default=True, description="Never replace a champion trained on another protocol."
    )


class BenchmarkConfig(_Section):
    """The FLIP evidence experiment of the benchmark flow (`flip benchmark --variants ...`)."""

    plm_side: list[str] = Field(
        default_factory=list,
        description="`section.key=value` overrides of the PLM-side arms (flip, flip_plm, "
        "plm_only, id_only), e.g. a random train-row cap and a small batch.",
    )
    pretrain: list[str] = Field(
        default_factory=list,
        description="`section.key=value` overrides of the pretraining runs (FLIP and control), "
        "e.g. a PLM-sized batch; the ID model's settings must stay those of the finetunes.",
    )
    plm_side_seeds: list[int] | None = Field(
        default=None, description="Seeds of the PLM-side arms; None: the flow's seeds."
    )
    bootstrap: int = Field(default=1000, ge=10, description="User-level bootstrap draws.")
    long_tail_below: int = Field(
        default=50, ge=1, description="Long-tail items: fewer train events than this."
    )


class FlipConfig(_Section):
    """The whole pipeline configuration."""

    paths: PathsConfig = PathsConfig()
    synth: SynthConfig = SynthConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeaturesConfig = FeaturesConfig()
    plm: PLMConfig = PLMConfig()
    id_model: IDModelConfig = IDModelConfig()
    training: TrainingConfig = TrainingConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)  # reads the environment
    gate: GateConfig = GateConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()

    @model_validator(mode="after")
    def _synthetic_is_its_own_dataset(self) -> FlipConfig:
        """Real or synthetic data, not both (the spec's name is checked where it is read:
        `tasks.raw_data.prepare_raw_data` wants a `synth-*` spec for synthetic data)."""
        if self.synth.enabled and self.paths.raw_dir is not None:
            raise ValueError(
                "synth.enabled and paths.raw_dir are both set: choose real data (raw_dir) or "
                "synthetic data (synth.enabled), not both"
            )
        return self

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (paths as strings)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(
    path: Path | str | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> FlipConfig:
    """Resolve defaults, then the YAML file at `path`, then `key.sub=value` overrides (text, as
    typed on a command line), then `values`: typed values by dotted key (None: keep), e.g. a
    flow's parameters, applied as they are (no text round trip)."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
        _validate(data, source=str(path))
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(data, key, value, source=f"--set {override}")
        _validate(data, source=f"--set {override}")
    for key, value in (values or {}).items():
        if value is None:
            continue
        _set_dotted(data, key, str(value) if isinstance(value, Path) else value, source=key)
        _validate(data, source=f"{key}={value!r}")
    return FlipConfig.model_validate(data)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _validate(data: Mapping[str, Any], source: str) -> None:
    try:
        FlipConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def _describe(err: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in err["loc"])
    if not key:  # a rule across sections
        return str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    return f"key '{key}': {err['msg']} (got {err.get('input')!r})"


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: value is not valid YAML: {exc}") from exc
    return key.strip(), value


def _set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{part}' is not a section")
        node = child
    node[leaf] = value
