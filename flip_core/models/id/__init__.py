"""ID-based CTR backbones behind one interface (`IDModel`) and a name registry."""

from flip_core.models.id.base import IDModel, IDModelOutput
from flip_core.models.id.registry import build_id_model, known_id_models, register_id_model

__all__ = ["IDModel", "IDModelOutput", "build_id_model", "known_id_models", "register_id_model"]
