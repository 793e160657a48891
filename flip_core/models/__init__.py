"""Models: ID-based CTR backbones (`flip_core.models.id`), shared layers, PLM and FLIP models."""

from flip_core.models.id import IDModel, IDModelOutput, build_id_model, known_id_models

__all__ = ["IDModel", "IDModelOutput", "build_id_model", "known_id_models"]
