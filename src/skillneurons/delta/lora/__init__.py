"""LoRA through PEFT (``config.py``: options, ``model.py``: method)."""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.delta.lora.config import LoraConfig
    from skillneurons.delta.lora.model import LoRA, lora_layers_active

__all__ = ["LoRA", "LoraConfig", "lora_layers_active"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"LoraConfig": ".config", "LoRA": ".model", "lora_layers_active": ".model"}
)
