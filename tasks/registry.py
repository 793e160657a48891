"""Model registry: register a version, tag it, alias it `challenger`, and gate `champion`.

A new version always gets alias `challenger` and tags (protocol, data hash, code version,
metrics). It takes `champion` only when, on the same protocol, its valid AUC beats the
champion's by at least `gate.min_valid_auc_gain` and its test logloss is no more than
`gate.max_test_logloss_increase` above the champion's. The decision and its reason go to the
version's tags and to the training run (tags + `gate.json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flip_core.config import FlipConfig, GateConfig
from tasks.pyfunc import log_pyfunc
from tasks.tracking import code_version, configure

CHAMPION = "champion"
CHALLENGER = "challenger"
VALID_AUC = "valid_auc"
TEST_LOGLOSS = "test_logloss"


@dataclass(frozen=True)
class Candidate:
    """What the gate compares: protocol and the two gate metrics."""

    protocol: str
    valid_auc: float
    test_logloss: float
    version: str | None = None


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
        f"{champion.valid_auc:.5f} (gain {gain:+.5f}, need >= {gate.min_valid_auc_gain:.5f})"
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


def candidate_from_version(version: ModelVersion) -> Candidate:
    """Read protocol and gate metrics back from a version's tags."""
    tags = version.tags
    try:
        return Candidate(
            protocol=tags["protocol"],
            valid_auc=float(tags[VALID_AUC]),
            test_logloss=float(tags[TEST_LOGLOSS]),
            version=str(version.version),
        )
    except KeyError as exc:
        raise ValueError(f"model version {version.version} lacks tag {exc.args[0]!r}") from None


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


def apply_gate(
    client: MlflowClient, name: str, version: ModelVersion, gate: GateConfig
) -> GateDecision:
    """Compare `version` with the champion; move `champion` if it wins; record why, everywhere."""
    champion_version = current_champion(client, name)
    champion = None if champion_version is None else candidate_from_version(champion_version)
    decision = gate_decision(candidate_from_version(version), champion, gate)
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


def publish_model(
    config: FlipConfig,
    run_id: str,
    model_dir: Path,
    metrics: Mapping[str, float],
    protocol: str,
    data_hash: str,
) -> Publication:
    """Log `model_dir` as a raw-row pyfunc to run `run_id`, register it, alias it, gate it.

    `metrics` must hold `valid_auc` and `test_logloss` (the gate metrics); all of them become
    version tags next to protocol, data hash and code version.
    """
    for key in (VALID_AUC, TEST_LOGLOSS):
        if key not in metrics:
            raise ValueError(f"metrics lack {key!r}, which the champion gate compares")
    client, _ = configure(config.mlflow)
    name = config.mlflow.registered_model
    prompt = {"max_length": config.features.max_length}
    uri = log_pyfunc(
        client, run_id, model_dir, batch_size=config.mlflow.score_batch_size, prompt=prompt
    )
    tags = {
        "protocol": protocol,
        "data_hash": data_hash,
        "code_version": code_version(),
        **{k: f"{float(v):.6f}" for k, v in metrics.items()},
    }
    version = existing_version(client, name, run_id) or register_version(client, name, uri, tags)
    decision = apply_gate(client, name, version, config.gate)
    return Publication(name, str(version.version), uri, decision.promote, decision.reason)
