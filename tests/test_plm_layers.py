"""`plm.num_layers`: keep the first k layers of an encoder; saved FLIP models record it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

from flip_core.config import IDModelConfig, ObjectivesConfig
from flip_core.models.flip import FlipForCTR, FlipForPretraining, FlipModelConfig, read_config
from flip_core.models.plm import PLMEncoder, keep_first_layers
from tests.features_support import minilm_tokenizer

torch.set_num_threads(1)


def _bert(layers: int = 3) -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def _layers(encoder: Any) -> Any:
    return encoder.encoder.layer


def test_first_layers_give_the_full_models_intermediate_states() -> None:
    full = _bert(3)
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 6, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        states = full(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    cut: Any = keep_first_layers(_bert(3), 2)
    assert len(_layers(cut)) == 2 and cut.config.num_hidden_layers == 2
    with torch.no_grad():
        out = cut(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out, states[2])
    assert not torch.allclose(out, states[3])


def test_other_encoder_families_and_bad_counts() -> None:
    torch.manual_seed(0)
    distil = DistilBertModel(
        DistilBertConfig(vocab_size=60, dim=16, n_layers=4, n_heads=2, hidden_dim=32)
    )
    keep_first_layers(distil, 1)
    assert len(distil.transformer.layer) == 1 and distil.config.n_layers == 1
    with pytest.raises(ValueError, match=r"1\.\.3"):
        keep_first_layers(_bert(3), 4)
    with pytest.raises(ValueError, match=r"1\.\.3"):
        keep_first_layers(_bert(3), 0)


def test_from_name_cuts_and_saved_models_record_it(tmp_path: Path) -> None:
    tok = minilm_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "plm")
    tok.save_pretrained(tmp_path / "plm")
    plm = PLMEncoder.from_name(str(tmp_path / "plm"), num_layers=2)
    assert len(_layers(plm.encoder)) == 2
    model_cfg = FlipModelConfig(
        field_names=["a", "b"],
        vocab_sizes=[10, 12],
        id_model=IDModelConfig(embedding_dim=4, hidden_units=[8]),
        plm_name=str(tmp_path / "plm"),
        plm_num_layers=2,
        objectives=ObjectivesConfig(mtm_num_negatives=4),
    )
    FlipForPretraining(model_cfg, plm=plm).save_pretrained(tmp_path / "pre")
    saved = read_config(tmp_path / "pre")
    assert saved.plm_num_layers == 2 and saved.plm_config is not None
    assert saved.plm_config["num_hidden_layers"] == 2
    ctr = FlipForCTR.from_pretraining(tmp_path / "pre", "flip_plm")
    assert ctr.plm is not None and len(_layers(ctr.plm.encoder)) == 2
    torch.testing.assert_close(
        _layers(ctr.plm.encoder)[1].output.dense.weight,
        _layers(plm.encoder)[1].output.dense.weight,
    )
