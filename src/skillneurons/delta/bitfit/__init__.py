"""BitFit: tune only the bias terms of the frozen backbone (``config.py``: options, ``model.py``: method)."""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.delta.bitfit.config import BitFitConfig
    from skillneurons.delta.bitfit.model import BitFit, bias_modules

__all__ = ["BitFit", "BitFitConfig", "bias_modules"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"BitFitConfig": ".config", "BitFit": ".model", "bias_modules": ".model"}
)
