"""ID-based CTR backbones behind one interface (`IDModel`), by name."""

from flip_core.models.id.base import IDModel, IDModelOutput
from flip_core.models.id.registry import build_id_model, known_id_models

__all__ = ["IDModel", "IDModelOutput", "build_id_model", "known_id_models"]
