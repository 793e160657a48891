"""Padding-free forward pass for BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT).

A batch padded to its longest row still spends every token-wise operation (the Q/K/V, output and
feed-forward projections, layer norms, dropout) on its padding: about 19% of the tokens of a
MovieLens prompt batch. Here those operations run on the real tokens only, packed into one
[N, D] matrix; only attention goes back to the padded [B, H, T, T] layout, with the key padding
masked. The weights are the wrapped Hugging Face modules' own, so in eval mode results equal the
stock forward at every real position (tested to float tolerance); padding positions come out as
zeros instead of the stock forward's unused values.

In training mode the layers' dropout (hidden states and attention probabilities) draws its keep
mask from 16-bit random lanes (`flip_core.models.layers.dropout_keep_scale`), several times cheaper
on CPU than `bernoulli_`; the rate is rounded to a multiple of 2**-15 (0.1 -> 0.100006).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from flip_core.models.layers import dropout_keep_scale

SUPPORTED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})


def supports_unpadded(encoder: nn.Module) -> bool:
    """Whether `encoder` is a plain bidirectional BERT-family encoder this module can run."""
    config: Any = getattr(encoder, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(encoder, "embeddings"):
        return False
    return all(_has_bert_layer_shape(layer) for layer in layers)


def _has_bert_layer_shape(layer: Any) -> bool:
    try:
        attn, attn_out, out = layer.attention.self, layer.attention.output, layer.output
        linears = [
            attn.query,
            attn.key,
            attn.value,
            attn_out.dense,
            layer.intermediate.dense,
            out.dense,
        ]
        norms = (attn_out.LayerNorm, out.LayerNorm)
        dropouts = (attn.dropout, attn_out.dropout, out.dropout)
    except AttributeError:
        return False
    return (
        all(isinstance(m, nn.Linear) for m in linears)
        and all(isinstance(m, nn.LayerNorm) for m in norms)
        and all(isinstance(m, nn.Dropout) for m in dropouts)
        and hasattr(attn, "num_attention_heads")
    )


def unpadded_forward(
    encoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Last hidden states [B, T, D] of `encoder` (see `supports_unpadded`); zeros at padding."""
    batch, length = input_ids.shape
    embedded = encoder.embeddings(input_ids=input_ids)  # positions as the stock forward counts them
    real = attention_mask.reshape(-1).nonzero().squeeze(1)  # packed index of every real token
    keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: attend to real keys only
    hidden = embedded.reshape(batch * length, -1).index_select(0, real)
    for layer in encoder.encoder.layer:
        context = _attention(layer.attention.self, hidden, real, keys, batch, length)
        hidden = _add_norm(layer.attention.output, context, hidden)
        hidden = _add_norm(layer.output, layer.intermediate(hidden), hidden)
    out = hidden.new_zeros(batch * length, hidden.shape[-1]).index_copy(0, real, hidden)
    return out.view(batch, length, -1)


def _attention(
    attn: Any,
    hidden: torch.Tensor,
    real: torch.Tensor,
    keys: torch.Tensor,
    batch: int,
    length: int,
) -> torch.Tensor:
    """Self-attention context [N, D] of the packed tokens `hidden` [N, D]."""
    weight = torch.cat([attn.query.weight, attn.key.weight, attn.value.weight])
    bias = torch.cat([attn.query.bias, attn.key.bias, attn.value.bias])
    qkv = F.linear(hidden, weight, bias)  # [N, 3D], one matmul for the three projections
    padded = qkv.new_zeros(batch * length, qkv.shape[-1]).index_copy(0, real, qkv)
    heads = attn.num_attention_heads
    q, k, v = padded.view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    scale = q.shape[-1] ** -0.5
    p = float(attn.dropout.p) if attn.training else 0.0
    if p > 0.0:  # explicit softmax, so its dropout can use the cheap keep mask
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)
        probs = scores.masked_fill_(~keys, float("-inf")).softmax(-1)
        context = torch.matmul(dropout(probs, p), v)
    else:
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, scale=scale)
    return context.transpose(1, 2).reshape(batch * length, -1).index_select(0, real)


def _add_norm(block: Any, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """`LayerNorm(dropout(dense(x)) + residual)` of a BERT output block."""
    p = float(block.dropout.p) if block.training else 0.0
    out: torch.Tensor = block.LayerNorm(dropout(block.dense(x), p) + residual)
    return out


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with the cheap keep mask (rate rounded to a multiple of 2**-15)."""
    if p <= 0.0:
        return x
    return x * dropout_keep_scale(x.shape, p, x.device).to(x.dtype)
