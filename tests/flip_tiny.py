"""Tiny FLIP fixtures built in code: word-level BERT/RoBERTa tokenizers, tiny encoders, and
fixed batches that follow the batch contract (whole-field MLM masks, field-id MTM masks)."""

from __future__ import annotations

from typing import Literal

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, PreTrainedTokenizerFast, RobertaConfig

from flip_core.config import IDModelConfig, ObjectivesConfig
from flip_core.models.flip import FlipModelConfig
from flip_core.models.plm import PLMEncoder

Kind = Literal["bert", "roberta"]
FIELDS = ["user", "age", "movie", "genre"]
VOCAB_SIZES = [40, 8, 30, 6]  # ids 0..2 reserved (PAD, MASK, OOV)
SPECIALS = {
    # BERT pads with 0; RoBERTa pads with 1 (and its positions start after padding_idx).
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}


def make_tokenizer(kind: Kind) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: one token per field name, value, 'is' and '.'."""
    words = [*SPECIALS[kind], "is", ".", *FIELDS]
    words += [f"{f}{v}" for f, n in zip(FIELDS, VOCAB_SIZES, strict=True) for v in range(n)]
    unk = SPECIALS[kind][1] if kind == "bert" else "<unk>"
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    s = SPECIALS[kind]
    cls, sep = (s[2], s[3]) if kind == "bert" else (s[0], s[2])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, words.index(cls)), (sep, words.index(sep))]
    )
    if kind == "bert":
        names = {"pad_token": s[0], "unk_token": s[1], "cls_token": s[2], "sep_token": s[3]}
        names["mask_token"] = s[4]
    else:
        names = {"bos_token": s[0], "pad_token": s[1], "eos_token": s[2], "unk_token": s[3]}
        names |= {"mask_token": s[4], "cls_token": s[0], "sep_token": s[2]}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **names)


def tiny_plm(kind: Kind, tokenizer: PreTrainedTokenizerFast, pooling: str = "cls") -> PLMEncoder:
    """A 2-layer, 32-wide encoder over `tokenizer`'s vocabulary."""
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if kind == "bert":
        cfg: BertConfig | RobertaConfig = BertConfig(max_position_embeddings=64, **common)
    else:
        cfg = RobertaConfig(max_position_embeddings=66, type_vocab_size=1, **common)
    return PLMEncoder.from_config(cfg, pooling)  # type: ignore[arg-type]


def tiny_config(**overrides: object) -> FlipModelConfig:
    """FlipModelConfig over the tiny fields with a small DCNv2 (no dropout, for determinism);
    `overrides` may name model keys or objective keys (e.g. `icl=False`)."""
    objectives: dict[str, object] = {
        "mtm_hidden_dim": 16,
        "mtm_num_negatives": 8,
        "mtm_full_softmax_max_vocab": 10,  # user/movie use the sampled loss, age/genre full
        "icl_dim": 16,
    }
    base: dict[str, object] = {
        "field_names": FIELDS,
        "vocab_sizes": VOCAB_SIZES,
        "id_backbone": "dcnv2",
        "id_model": IDModelConfig(embedding_dim=8, hidden_units=[32], dropout=0.0),
    }
    for key, value in overrides.items():
        (objectives if key in ObjectivesConfig.model_fields else base)[key] = value
    return FlipModelConfig(**base, objectives=ObjectivesConfig.model_validate(objectives))


def make_rows(n: int, seed: int = 0) -> torch.Tensor:
    """[n, F] field ids (real ids start at 3); age and genre depend on user and movie."""
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(3, VOCAB_SIZES[0], (n,), generator=g)
    movie = torch.randint(3, VOCAB_SIZES[2], (n,), generator=g)
    age = 3 + user % (VOCAB_SIZES[1] - 3)
    genre = 3 + movie % (VOCAB_SIZES[3] - 3)
    return torch.stack([user, age, movie, genre], dim=1)


def value_words(field: int, value: int) -> list[str]:
    """Words of one field value; movie values take 1-3 words so rows differ in length."""
    repeat = 1 + value % 3 if FIELDS[field] == "movie" else 1
    return [f"{FIELDS[field]}{value}"] * repeat


def encode_rows(
    tokenizer: PreTrainedTokenizerFast, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [B, T] (padded with the tokenizer's pad id), attention mask, spans [B, F, 2]."""
    seqs, spans = [], []
    for row in rows.tolist():
        words: list[str] = []
        row_spans = []
        for f, v in enumerate(row):
            words += [FIELDS[f], "is"]
            value = value_words(f, v)
            row_spans.append([len(words) + 1, len(words) + 1 + len(value)])  # +1: CLS/<s>
            words += [*value, "."]
        enc = tokenizer(" ".join(words))["input_ids"]
        seqs.append(torch.tensor(enc))
        spans.append(row_spans)
    pad = int(tokenizer.pad_token_id)
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(seqs):
        mask[i, : len(seq)] = 1
    return ids, mask, torch.tensor(spans)


def make_batch(
    tokenizer: PreTrainedTokenizerFast,
    rows: torch.Tensor,
    seed: int = 0,
    disjoint: bool = False,
) -> dict[str, torch.Tensor]:
    """Render rows as '<field> is <value> .' prompts and mask one field for MLM and one for MTM
    (`disjoint`: never the same field, as single-pass pretraining needs)."""
    input_ids, attention, spans = encode_rows(tokenizer, rows)
    n, f = rows.shape
    g = torch.Generator().manual_seed(seed)
    mlm_field = torch.randint(0, f, (n,), generator=g)
    mtm_field = torch.randint(0, f, (n,), generator=g)
    if disjoint:
        mtm_field = (mlm_field + torch.randint(1, f, (n,), generator=g)) % f
    idx = torch.arange(n)
    mlm_input = input_ids.clone()
    mlm_labels = torch.full_like(input_ids, -100)
    for i in range(n):
        a, b = spans[i, mlm_field[i]].tolist()
        mlm_input[i, a:b] = int(tokenizer.mask_token_id)
        mlm_labels[i, a:b] = input_ids[i, a:b]
    mtm_ids = rows.clone()
    mtm_ids[idx, mtm_field] = 1
    mtm_labels = torch.full_like(rows, -100)
    mtm_labels[idx, mtm_field] = rows[idx, mtm_field]
    return {
        "field_ids": rows,
        "labels": (rows[:, 0] % 2 == rows[:, 2] % 2).float(),
        "input_ids": input_ids,
        "attention_mask": attention,
        "field_spans": spans,
        "mlm_input_ids": mlm_input,
        "mlm_labels": mlm_labels,
        "mtm_field_ids": mtm_ids,
        "mtm_labels": mtm_labels,
    }
