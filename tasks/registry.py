"""Model registry: register a version, tag it, alias it `challenger`, and gate `champion`.

One registered model holds the models of one dataset, named by its dataset spec (`spec.name`):
the registered model carries the tag `dataset` (set when it is created), and registering a
model trained on another dataset fails (`RegistryDatasetError`, before any version or alias
changes), so a model of other data, e.g. the synthetic `synth-ml-1m`, never becomes
`challenger` or `champion` of a real dataset's model. Use one registered model name per dataset
(`mlflow.registered_model`).

A new version always gets alias `challenger`, tags (dataset, dataset spec hash, protocol, data
hash, code version, the model's evaluation metrics) and its model card (the version's
description, and `model_card.md` in its run). It takes `champion` only when the champion is of
the same dataset and (with `gate.same_protocol_only`) protocol, its valid AUC beats the
champion's by at least `gate.min_valid_auc_gain` and its test logloss is no more than
`gate.max_test_logloss_increase` above the champion's. Data changes every night, so both are
scored on the same current rows: given the split build (`splits_dir`), the gate rescores the
champion and the challenger on its `splits/valid.parquet` and `splits/test.parquet` and compares
those fresh metrics, not the ones stored when the champion was registered. A champion that
cannot be rescored (e.g. its vocabularies name a field the current rows lack) is compared on its
stored metrics, and the gate's reason says so and why. The decision and its reason go to the
version's tags and to the training run (tags + `gate.json`). Registry errors name the tracking
URI they came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flip_core.config import FlipConfig, GateConfig
from flip_core.data.build import dataset_spec
from flip_core.data.feature_map import FeatureMap
from flip_core.metrics import binary_auc, binary_logloss
from flip_core.model_card import ModelCardInfo, render_model_card
from flip_core.scoring import RawRowScorer, score_split_file
from tasks.pyfunc import log_pyfunc
from tasks.tracking import code_version, configure

CHAMPION = "champion"
CHALLENGER = "challenger"
VALID_AUC = "valid_auc"
TEST_LOGLOSS = "test_logloss"
DATASET = "dataset"
DATASET_SPEC_HASH = "dataset_spec_hash"
PROTOCOL = "protocol"
MODEL_CARD = "model_card.md"
RESCORED = "current rows"
# Evaluation metrics of a model (overall, warm and cold users): what version tags and the
# champion comparison show. Not steps, losses of the training objective or row counts.
_MODEL_METRIC = re.compile(r"^(valid|test)(_(warm|cold))?_(auc|logloss)$")


def model_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The evaluation metrics among `metrics` (`valid_auc`, `test_cold_logloss`, ...)."""
    return {k: float(v) for k, v in metrics.items() if _MODEL_METRIC.match(k)}


class RegistryError(RuntimeError):
    """A registry call failed; the message names the tracking URI it went to."""


class RegistryDatasetError(ValueError):
    """The registered model holds another dataset's models (a permanent error: no retry)."""


@dataclass(frozen=True)
class Candidate:
    """What the gate compares: protocol, the two gate metrics and the dataset."""

    protocol: str
    valid_auc: float
    test_logloss: float
    version: str | None = None
    dataset: str | None = None
    scored_on: str = "stored metrics"  # or RESCORED (scored by the gate on the current rows)


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger becomes champion, and why."""

    promote: bool
    reason: str
    challenger: Candidate
    champion: Candidate | None


def gate_decision(
    challenger: Candidate, champion: Candidate | None, gate: GateConfig
) -> GateDecision:
    """Pure champion/challenger rule (see module docstring)."""

    def decide(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, challenger, champion)

    if champion is None:
        return decide(True, "no champion yet")
    if challenger.dataset is not None and champion.dataset != challenger.dataset:
        return decide(
            False,
            f"champion v{champion.version} was trained on dataset {champion.dataset!r}, "
            f"challenger on {challenger.dataset!r}: not comparable, champion kept",
        )
    if challenger.protocol != champion.protocol and gate.same_protocol_only:
        return decide(
            False,
            f"champion v{champion.version} was trained on protocol {champion.protocol!r}, "
            f"challenger on {challenger.protocol!r}: not comparable",
        )
    gain = challenger.valid_auc - champion.valid_auc
    worse = challenger.test_logloss - champion.test_logloss
    head = (
        f"valid AUC {challenger.valid_auc:.5f} vs champion v{champion.version} "
        f"{champion.valid_auc:.5f} (gain {gain:+.5f}, need >= {gate.min_valid_auc_gain:.5f}; "
        f"champion on {champion.scored_on})"
    )
    tail = (
        f"test logloss {challenger.test_logloss:.5f} vs {champion.test_logloss:.5f} "
        f"(change {worse:+.5f}, tolerance {gate.max_test_logloss_increase:.5f})"
    )
    if gain < gate.min_valid_auc_gain:
        return decide(False, f"{head}: AUC gain below margin; {tail}")
    if worse > gate.max_test_logloss_increase:
        return decide(False, f"{head}; but {tail}: logloss worse beyond tolerance")
    return decide(True, f"{head}; {tail}: promoted")


def candidate_from_version(version: ModelVersion, dataset: str | None = None) -> Candidate:
    """Read dataset, protocol and gate metrics back from a version's tags (`dataset`: for a
    version registered before datasets were tagged, the registered model's dataset)."""
    tags = version.tags
    try:
        return Candidate(
            protocol=tags[PROTOCOL],
            valid_auc=float(tags[VALID_AUC]),
            test_logloss=float(tags[TEST_LOGLOSS]),
            version=str(version.version),
            dataset=tags.get(DATASET, dataset),
        )
    except KeyError as exc:
        raise ValueError(f"model version {version.version} lacks tag {exc.args[0]!r}") from None


def bind_dataset(client: MlflowClient, name: str, dataset: str, uri: str) -> None:
    """Make sure registered model `name` holds models of `dataset` (create it, tagged, if new).

    Raises `RegistryDatasetError` when it holds another dataset's models, or when it predates
    dataset tags and has versions (an operator says which dataset those are, once).
    """
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            name, tags={DATASET: dataset}, description=f"FLIP CTR models of dataset {dataset!r}."
        )
        return
    bound = model.tags.get(DATASET)
    if bound == dataset:
        return
    if bound is not None:
        raise RegistryDatasetError(
            f"registered model {name!r} in {uri} holds models of dataset {bound!r}; this model "
            f"was trained on {dataset!r}, so it may not become its challenger or champion. Set "
            f"mlflow.registered_model to a name for {dataset!r} (e.g. {name}-{dataset})"
        )
    if client.search_model_versions(f"name = '{name}'", max_results=1):
        raise RegistryDatasetError(
            f"registered model {name!r} in {uri} has versions but no {DATASET!r} tag (made "
            f"before datasets were tracked): tag it with the dataset its versions were trained "
            f"on, e.g. MlflowClient({uri!r}).set_registered_model_tag({name!r}, 'dataset', "
            f"'ml-1m'), then rerun (see docs/operations.md)"
        )
    client.set_registered_model_tag(name, DATASET, dataset)


def register_version(
    client: MlflowClient, name: str, model_uri: str, tags: Mapping[str, str]
) -> ModelVersion:
    """Register `model_uri` as a new version of `name` with `tags`; alias it `challenger`."""
    version = mlflow.register_model(
        model_uri, name, tags={k: str(v) for k, v in tags.items()}, await_registration_for=300
    )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return client.get_model_version(name, version.version)


def existing_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version already registered from run `run_id` (a retried publish reuses it)."""
    try:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding alias `champion`, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def comparable(challenger: Candidate, champion: Candidate, gate: GateConfig) -> bool:
    """Whether the gate compares metrics at all (same dataset; same protocol if required)."""
    if challenger.dataset is not None and champion.dataset != challenger.dataset:
        return False
    return challenger.protocol == champion.protocol or not gate.same_protocol_only


def split_metrics_of(scorer: RawRowScorer, splits_dir: Path) -> tuple[float, float]:
    """(valid AUC, test logloss) of a model on a split build's current valid and test rows."""
    y_valid, p_valid = score_split_file(scorer, splits_dir / "splits" / "valid.parquet")
    y_test, p_test = score_split_file(scorer, splits_dir / "splits" / "test.parquet")
    return binary_auc(y_valid, p_valid), binary_logloss(y_test, p_test)


def version_scorer(name: str, version: ModelVersion, batch_size: int = 8192) -> RawRowScorer:
    """The `RawRowScorer` inside registered version `version` of `name` (its pyfunc)."""
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    scorer = getattr(loaded.unwrap_python_model(), "scorer", None)
    if not isinstance(scorer, RawRowScorer):
        raise TypeError(f"version {version.version} is not a flip-ctr raw-row model")
    scorer.batch_size = batch_size
    return scorer


def rescore(
    name: str,
    challenger: tuple[ModelVersion, Candidate],
    champion: tuple[ModelVersion, Candidate],
    splits_dir: Path,
    batch_size: int = 8192,
) -> tuple[Candidate, Candidate, str]:
    """Both models scored on the same current valid/test rows; on failure, the stored metrics
    and a note saying why (the gate's reason carries it)."""
    scored = []
    for role, (version, candidate) in (("champion", champion), ("challenger", challenger)):
        try:
            auc, logloss = split_metrics_of(version_scorer(name, version, batch_size), splits_dir)
        except Exception as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return (
                challenger[1],
                champion[1],
                f"{role} v{version.version} could not be rescored on the current rows of "
                f"{splits_dir} ({type(exc).__name__}: {why}), so both were compared on their "
                "stored metrics",
            )
        scored.append(replace(candidate, valid_auc=auc, test_logloss=logloss, scored_on=RESCORED))
    fresh_champion, fresh_challenger = scored
    note = (
        f"both rescored on the current rows of {splits_dir} (champion's stored valid AUC "
        f"{champion[1].valid_auc:.5f}, test logloss {champion[1].test_logloss:.5f})"
    )
    return fresh_challenger, fresh_champion, note


def apply_gate(
    client: MlflowClient,
    name: str,
    version: ModelVersion,
    gate: GateConfig,
    splits_dir: Path | None = None,
    batch_size: int = 8192,
) -> GateDecision:
    """Compare `version` with the champion (both rescored on `splits_dir`'s current valid/test
    rows when given); move `champion` if it wins; record why, everywhere."""
    champion_version = current_champion(client, name)
    bound = client.get_registered_model(name).tags.get(DATASET)
    champion = None if champion_version is None else candidate_from_version(champion_version, bound)
    challenger = candidate_from_version(version)
    note = ""
    if (
        champion_version is not None
        and champion is not None
        and splits_dir is not None
        and champion_version.version != version.version
        and comparable(challenger, champion, gate)
    ):
        challenger, champion, note = rescore(
            name, (version, challenger), (champion_version, champion), splits_dir, batch_size
        )
    decision = gate_decision(challenger, champion, gate)
    if note:
        decision = replace(decision, reason=f"{decision.reason} [{note}]")
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    verdict = "promoted" if decision.promote else "rejected"
    client.set_model_version_tag(name, version.version, "gate.decision", verdict)
    client.set_model_version_tag(name, version.version, "gate.reason", decision.reason)
    if version.run_id:
        client.set_tag(version.run_id, "gate.decision", verdict)
        client.set_tag(version.run_id, "gate.reason", decision.reason)
        client.set_tag(version.run_id, "registry.version", f"{name}/{version.version}")
        client.log_dict(version.run_id, decision_dict(decision), "gate.json")
    return decision


def decision_dict(decision: GateDecision) -> dict[str, object]:
    """JSON-ready form of a gate decision."""
    return asdict(decision)


@dataclass(frozen=True)
class Publication:
    """A registered version and what the gate made of it."""

    name: str
    version: str
    model_uri: str
    champion: bool
    reason: str
    # the gate metrics of the champion and the challenger rescored on the current rows (None when
    # the gate compared stored metrics, or there was no champion)
    rescored_champion: dict[str, float] | None = None
    rescored_challenger: dict[str, float] | None = None


def publish_model(
    config: FlipConfig,
    run_id: str,
    model_dir: Path,
    metrics: Mapping[str, float],
    protocol: str,
    data_hash: str,
    dataset: str | None = None,
    variant: str = "model",
    splits_dir: Path | None = None,
) -> Publication:
    """Log `model_dir` as a raw-row pyfunc to run `run_id`, register it, alias it, gate it.

    `metrics` must hold `valid_auc` and `test_logloss` (the gate metrics); its evaluation
    metrics (`model_metrics`) become version tags next to dataset (default: the dataset spec's
    name, `paths.dataset`), the spec's content hash, protocol, data hash and code version.
    `splits_dir`: the split build the model was evaluated on; the gate rescores both models on
    its current valid/test rows. The model card is the version's description and the run's
    `model_card.md`. Any MLflow error is raised as `RegistryError` naming the URI.
    """
    for key in (VALID_AUC, TEST_LOGLOSS):
        if key not in metrics:
            raise ValueError(f"metrics lack {key!r}, which the champion gate compares")
    uri = config.mlflow.tracking_uri
    try:
        return _publish(
            config, run_id, model_dir, metrics, protocol, data_hash, dataset, variant, splits_dir
        )
    except MlflowException as exc:
        first = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        raise RegistryError(f"MLflow registry at {uri}: {first}") from exc


def _publish(
    config: FlipConfig,
    run_id: str,
    model_dir: Path,
    metrics: Mapping[str, float],
    protocol: str,
    data_hash: str,
    dataset: str | None,
    variant: str,
    splits_dir: Path | None,
) -> Publication:
    client, _ = configure(config.mlflow)
    name = config.mlflow.registered_model
    spec = dataset_spec(config)
    dataset = dataset or spec.name
    bind_dataset(client, name, dataset, config.mlflow.tracking_uri)
    prompt = {"max_length": config.features.max_length}
    model_uri = log_pyfunc(
        client, run_id, model_dir, batch_size=config.mlflow.score_batch_size, prompt=prompt
    )
    evaluation = model_metrics(metrics)
    tags = {
        DATASET: dataset,
        DATASET_SPEC_HASH: spec.content_hash() if spec.name == dataset else "unknown",
        PROTOCOL: protocol,
        "data_hash": data_hash,
        "code_version": code_version(),
        "variant": variant,
        **{k: f"{v:.6f}" for k, v in evaluation.items()},
    }
    version = existing_version(client, name, run_id) or register_version(
        client, name, model_uri, tags
    )
    card = model_card(config, name, str(version.version), variant, tags, evaluation, model_dir)
    client.log_text(run_id, card, MODEL_CARD)
    client.update_model_version(name, version.version, description=card)
    decision = apply_gate(
        client, name, version, config.gate, splits_dir, config.mlflow.score_batch_size
    )
    return Publication(
        name,
        str(version.version),
        model_uri,
        decision.promote,
        decision.reason,
        *_rescored(decision),
    )


def _rescored(
    decision: GateDecision,
) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    champion, challenger = decision.champion, decision.challenger
    if champion is None or champion.scored_on != RESCORED:
        return None, None
    return (
        {VALID_AUC: champion.valid_auc, TEST_LOGLOSS: champion.test_logloss},
        {VALID_AUC: challenger.valid_auc, TEST_LOGLOSS: challenger.test_logloss},
    )


def model_card(
    config: FlipConfig,
    name: str,
    version: str,
    variant: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    model_dir: Path | None = None,
) -> str:
    """The model card of a registered version (markdown); its inputs from the model's
    `feature_map.json` (the dataset spec's input columns) when `model_dir` has one."""
    inputs: list[str] = []
    if model_dir is not None and (model_dir / "feature_map.json").is_file():
        inputs = list(FeatureMap.load(model_dir).columns)
    info = ModelCardInfo(
        name=f"{name} v{version}",
        variant=variant,
        protocol=tags[PROTOCOL],
        data_hash=tags["data_hash"],
        code_version=tags["code_version"],
        metrics=metrics,
        dataset=tags[DATASET],
        inputs=inputs,
        settings={
            "dataset spec hash": tags[DATASET_SPEC_HASH],
            "plm": config.plm.name,
            "id_model.backbone": config.id_model.backbone,
            "training.epochs": config.training.epochs,
            "training.seed": config.training.seed,
        },
        notes=(
            ["Trained on synthetic data (a demonstration, never a production model)."]
            if config.synth.enabled
            else []
        ),
    )
    return render_model_card(info)
