"""Bottleneck adapters (Houlsby / Pfeiffer) (``config.py``: options, ``model.py``: method)."""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.delta.adapter.config import AdapterConfig
    from skillneurons.delta.adapter.model import Adapters, Bottleneck

__all__ = ["AdapterConfig", "Adapters", "Bottleneck"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"AdapterConfig": ".config", "Adapters": ".model", "Bottleneck": ".model"}
)
