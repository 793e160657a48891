"""FLIP models: joint masked language / masked tabular pretraining and CTR finetuning.

- `FlipModelConfig`: the architecture and objective settings, saved as config.json.
- `FlipForPretraining`: ID model + PLM with the MLM, MTM and ICL heads; every objective has a
  switch and a weight; `single_pass=True` runs the PLM once per step (MTM and ICL read the
  MLM-masked text; the collate must then mask disjoint fields) instead of twice.
- `FlipForCTR`: the finetuning variants `flip_id` (ID model alone; saved without PLM weights),
  `flip_plm` (PLM + linear head) and `flip` (both, final = a * id + (1 - a) * plm with
  a = sigmoid(learned scalar); loss = BCE(final) + BCE(id) + BCE(plm)).

Both save to a directory: config.json + model.safetensors (+ feature_map.json, tokenizer files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from transformers import PreTrainedTokenizerBase

from flip_core.config import VARIANTS, FlipConfig, IDModelConfig, ObjectivesConfig, Variant
from flip_core.data.collate import IGNORE_INDEX
from flip_core.data.feature_map import MASK_ID
from flip_core.models.heads import HeadResult, ICLHead, MLMHead, MTMHead
from flip_core.models.id import IDModel, build_id_model
from flip_core.models.plm import PLMEncoder, Pooling
from flip_core.models.saving import load_weights, read_model_config, write_model_dir


class FlipModelConfig(BaseModel):
    """Architecture + objectives of a FLIP model (distinct from the pipeline's `FlipConfig`)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_objectives(cls, data: Any) -> Any:
        """A config.json saved before `objectives` was nested keeps its objective keys at the
        top level: move them in, so older saved models still load."""
        if isinstance(data, dict):
            flat = {k: data[k] for k in ObjectivesConfig.model_fields if k in data}
            if flat:
                rest = {k: v for k, v in data.items() if k not in flat}
                return {**rest, "objectives": {**dict(rest.get("objectives") or {}), **flat}}
        return data

    kind: Literal["pretraining", "ctr"] = "pretraining"
    field_names: list[str]
    vocab_sizes: list[int]
    id_backbone: str = "dcnv2"
    id_model: IDModelConfig = IDModelConfig()
    plm_name: str = "minilm-l6"
    plm_config: dict[str, Any] | None = Field(
        default=None, description="The encoder's transformers config (to_dict); None = no PLM."
    )
    pooling: Pooling = "cls"
    plm_num_layers: int | None = Field(
        default=None, description="First k encoder layers kept (plm.num_layers); None = all."
    )
    objectives: ObjectivesConfig = ObjectivesConfig()
    tie_mlm_decoder: bool = True
    # finetuning
    variant: Variant = "flip"

    @classmethod
    def from_flip_config(
        cls, cfg: FlipConfig, field_names: list[str], vocab_sizes: list[int]
    ) -> FlipModelConfig:
        """Model settings from the pipeline config (plm, id_model and pretrain sections)."""
        return cls(
            field_names=list(field_names),
            vocab_sizes=list(vocab_sizes),
            id_backbone=cfg.id_model.backbone,
            id_model=cfg.id_model,
            plm_name=cfg.plm.name,
            pooling=cfg.plm.pooling,
            plm_num_layers=cfg.plm.num_layers,
            objectives=cfg.pretrain.objectives(),
        )


# ---------------------------------------------------------------- outputs


@dataclass
class FlipPretrainingOutput:
    """Total loss, each objective's loss and top-1 reconstruction accuracy (None when off)."""

    loss: torch.Tensor
    mlm_loss: torch.Tensor | None = None
    mtm_loss: torch.Tensor | None = None
    icl_loss: torch.Tensor | None = None
    mlm_accuracy: torch.Tensor | None = None
    mtm_accuracy: torch.Tensor | None = None
    icl_accuracy: torch.Tensor | None = None

    def metrics(self) -> dict[str, float]:
        """Every set loss/accuracy as floats (for logging)."""
        return {
            k: float(v.detach())
            for k, v in vars(self).items()
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }


@dataclass
class FlipCTROutput:
    """Click logits [B] (the variant's final score), per-branch logits, and the loss."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    id_logits: torch.Tensor | None = None
    plm_logits: torch.Tensor | None = None


# ---------------------------------------------------------------- shared base


class FlipPreTrainedModel(nn.Module):
    """Save/load as a directory; owns the ID model and (optionally) the PLM encoder."""

    config: FlipModelConfig
    id_model: IDModel | None
    plm: PLMEncoder | None

    def save_pretrained(
        self,
        directory: Path | str,
        feature_map: Path | str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> Path:
        """Write config.json + model.safetensors (+ feature_map.json, tokenizer files)."""
        out = write_model_dir(self, directory, self.config.model_dump_json(indent=2), feature_map)
        if tokenizer is not None and self.plm is not None:
            tokenizer.save_pretrained(str(out))
        return out

    @classmethod
    def from_pretrained(cls, directory: Path | str, map_location: str = "cpu") -> Self:
        """Rebuild from config.json (no hub access) and load model.safetensors."""
        config = read_config(directory)
        model = cls(config)
        load_weights(model, directory, map_location)
        return model


def read_config(directory: Path | str) -> FlipModelConfig:
    """The `FlipModelConfig` saved in a model directory (clear error when it is not one)."""
    return FlipModelConfig.model_validate(read_model_config(directory, "FLIP model"))


def _build_id(config: FlipModelConfig) -> IDModel:
    return build_id_model(config.id_backbone, config.vocab_sizes, config.id_model)


def _build_plm(config: FlipModelConfig) -> PLMEncoder:
    if config.plm_config is None:
        raise ValueError("this FLIP config has no plm_config; use with_plm() or from_name")
    return PLMEncoder.from_config(config.plm_config, config.pooling)


def with_plm(config: FlipModelConfig, plm: PLMEncoder) -> FlipModelConfig:
    """A copy of `config` that records `plm`'s architecture (so the model can be rebuilt)."""
    plm_config = json.loads(plm.config.to_json_string(use_diff=False))  # JSON-normalised keys
    plm_config["pad_token_id"] = plm.pad_token_id
    return config.model_copy(update={"plm_config": plm_config})


# ---------------------------------------------------------------- pretraining


class FlipForPretraining(FlipPreTrainedModel):
    """ID model + PLM aligned by MLM, MTM and ICL (each switchable, each weighted)."""

    def __init__(
        self,
        config: FlipModelConfig,
        id_model: IDModel | None = None,
        plm: PLMEncoder | None = None,
    ) -> None:
        super().__init__()
        objectives = config.objectives
        if not (objectives.mlm or objectives.mtm or objectives.icl):
            raise ValueError("at least one of mlm, mtm, icl must be enabled")
        if plm is not None:
            config = with_plm(config, plm)
        self.config = config.model_copy(update={"kind": "pretraining"})
        self.id_model = id_model if id_model is not None else _build_id(config)
        self.plm = plm if plm is not None else _build_plm(config)
        row_dim, text_dim = self.id_model.repr_dim, self.plm.hidden_size
        self.mlm_head = MLMHead(text_dim, row_dim, self.plm.vocab_size) if objectives.mlm else None
        if self.mlm_head is not None and config.tie_mlm_decoder:
            self.mlm_head.decoder.weight = self.plm.input_embeddings().weight
        self.mtm_head = (
            MTMHead(
                row_dim,
                text_dim,
                config.vocab_sizes,
                objectives.mtm_hidden_dim,
                objectives.mtm_loss,
                objectives.mtm_num_negatives,
                objectives.mtm_full_softmax_max_vocab,
            )
            if objectives.mtm
            else None
        )
        self.icl_head = (
            ICLHead(
                row_dim,
                text_dim,
                objectives.icl_dim,
                objectives.icl_temperature,
                objectives.icl_learn_temperature,
            )
            if objectives.icl
            else None
        )

    def set_noise_counts(self, counts: list[list[int]]) -> None:
        """Per-field train counts (one list per field) as the MTM noise distributions."""
        if self.mtm_head is not None:
            for f, field_counts in enumerate(counts):
                self.mtm_head.set_noise_counts(f, field_counts)

    def forward(
        self,
        field_ids: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        mtm_field_ids: torch.Tensor | None = None,
        mtm_labels: torch.Tensor | None = None,
        **_: Any,
    ) -> FlipPretrainingOutput:
        """Sum of the enabled objectives on one batch (see the batch contract)."""
        assert self.id_model is not None and self.plm is not None
        c = self.config.objectives
        row = self.id_model(field_ids).row_repr if (c.mlm or c.icl) else None
        masked_text = None
        if c.mlm:
            assert mlm_input_ids is not None, "mlm needs mlm_input_ids"
            masked_text = self.plm(mlm_input_ids, attention_mask)
        clean_text = masked_text if c.single_pass and masked_text is not None else None
        if clean_text is None and (c.mtm or c.icl):
            clean_text = self.plm(input_ids, attention_mask)

        out = FlipPretrainingOutput(loss=torch.zeros((), device=field_ids.device))
        if self.mlm_head is not None and masked_text is not None and row is not None:
            assert mlm_labels is not None, "mlm needs mlm_labels"
            res = self.mlm_head(masked_text.hidden_states, row, mlm_labels)
            out.loss = out.loss + c.mlm_weight * res.loss
            out.mlm_loss, out.mlm_accuracy = _detached(res)
        if self.mtm_head is not None and clean_text is not None:
            assert mtm_field_ids is not None and mtm_labels is not None, "mtm needs mtm_* keys"
            masked_row = self.id_model(mtm_field_ids).row_repr
            res = self.mtm_head(masked_row, clean_text.hidden_states, attention_mask, mtm_labels)
            out.loss = out.loss + c.mtm_weight * res.loss
            out.mtm_loss, out.mtm_accuracy = _detached(res)
        if self.icl_head is not None and clean_text is not None and row is not None:
            res = self.icl_head(row, clean_text.pooled)
            out.loss = out.loss + c.icl_weight * res.loss
            out.icl_loss, out.icl_accuracy = _detached(res)
        return out


def make_masks_disjoint(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move MTM masks off the fields whose text MLM masked (single-pass pretraining).

    A row's MTM field that MLM also masked is restored; a row left without an MTM field gets
    its first field that MLM did not touch (if any). Returns a new dict.
    """
    spans, mlm = batch["field_spans"], batch["mlm_labels"] != IGNORE_INDEX
    pos = torch.arange(mlm.shape[1], device=mlm.device)
    inside = (pos >= spans[..., :1]) & (pos < spans[..., 1:])  # [B, F, T]
    text_masked = (inside & mlm.unsqueeze(1)).any(-1)  # [B, F]
    field_ids = batch["field_ids"]
    chosen = (batch["mtm_labels"] != IGNORE_INDEX) & ~text_masked
    free = ~text_masked
    first_free = free & (free.long().cumsum(1) == 1)
    chosen = torch.where(chosen.any(1, keepdim=True), chosen, first_free)
    return {
        **batch,
        "mtm_field_ids": torch.where(chosen, torch.full_like(field_ids, MASK_ID), field_ids),
        "mtm_labels": torch.where(chosen, field_ids, torch.full_like(field_ids, IGNORE_INDEX)),
    }


def _detached(res: HeadResult) -> tuple[torch.Tensor, torch.Tensor]:
    return res.loss.detach(), res.accuracy.detach()


# ---------------------------------------------------------------- finetuning


class FlipForCTR(FlipPreTrainedModel):
    """Click model in one of the variants `flip_id`, `flip_plm` or `flip`."""

    def __init__(
        self,
        config: FlipModelConfig,
        id_model: IDModel | None = None,
        plm: PLMEncoder | None = None,
    ) -> None:
        super().__init__()
        variant = config.variant
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        needs_id, needs_plm = variant != "flip_plm", variant != "flip_id"
        if plm is not None and needs_plm:
            config = with_plm(config, plm)
        if not needs_plm:
            config = config.model_copy(update={"plm_config": None})
        self.config = config.model_copy(update={"kind": "ctr"})
        self.id_model = (
            (id_model if id_model is not None else _build_id(config)) if needs_id else None
        )
        self.plm = (plm if plm is not None else _build_plm(config)) if needs_plm else None
        self.plm_head = nn.Linear(self.plm.hidden_size, 1) if self.plm is not None else None
        self.mix_logit = nn.Parameter(torch.zeros(())) if variant == "flip" else None

    @property
    def variant(self) -> Variant:
        """Which finetuning variant this model is."""
        return self.config.variant

    @property
    def mix_weight(self) -> torch.Tensor | None:
        """a = sigmoid(learned scalar): the ID branch's share of the final logit (`flip` only)."""
        return None if self.mix_logit is None else torch.sigmoid(self.mix_logit)

    @classmethod
    def from_pretraining(
        cls,
        directory: Path | str,
        variant: Variant,
        map_location: str = "cpu",
    ) -> FlipForCTR:
        """Initialise `variant` from a saved `FlipForPretraining` directory (heads dropped)."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        pre = FlipForPretraining.from_pretrained(directory, map_location)
        config = pre.config.model_copy(update={"variant": variant})
        return cls(config, id_model=pre.id_model, plm=pre.plm)

    def forward(
        self,
        field_ids: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> FlipCTROutput:
        """Click logits; `labels` [B] (0/1) add the variant's loss."""
        id_logits = plm_logits = None
        if self.id_model is not None:
            assert field_ids is not None, f"{self.variant} needs field_ids"
            id_logits = self.id_model(field_ids).logits
        if self.plm is not None and self.plm_head is not None:
            assert input_ids is not None, f"{self.variant} needs input_ids"
            pooled = self.plm(input_ids, attention_mask).pooled
            plm_logits = self.plm_head(pooled).squeeze(-1)
        if id_logits is not None and plm_logits is not None:
            a = torch.sigmoid(self.mix_logit) if self.mix_logit is not None else 0.5
            logits = a * id_logits + (1 - a) * plm_logits
        else:
            logits = id_logits if id_logits is not None else plm_logits
        assert logits is not None
        out = FlipCTROutput(logits=logits, id_logits=id_logits, plm_logits=plm_logits)
        if labels is not None:
            y = labels.float()
            parts = [t for t in (logits, id_logits, plm_logits) if t is not None]
            if len(parts) == 2:  # single-branch variant: final == branch, count it once
                parts = parts[:1]
            out.loss = sum(
                (F.binary_cross_entropy_with_logits(p.float(), y) for p in parts),
                torch.zeros((), device=y.device),
            )
        return out
