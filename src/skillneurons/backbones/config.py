"""How a backbone is loaded: the options every command that loads a model shares. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from skillneurons.options import option

if TYPE_CHECKING:
    from skillneurons.backbones.loading import Backbone

__all__ = ["BackboneOptions"]


@dataclass
class BackboneOptions:
    """Loading options of a backbone (the model itself is named by each command's ``--model``)."""

    dtype: str | None = option(
        None,
        "weights dtype (default float32; bfloat16 halves memory for large models)",
        choices=("float32", "bfloat16", "float16"),
    )
    device_map: str | None = option(
        None, "transformers device_map, e.g. 'auto' to spread a large model over the GPUs"
    )
    ffn: str | None = option(
        None,
        "FFN layout of an unknown architecture: 'layers=PATH,down=PATH,up=PATH[,gate=PATH]'",
        metavar="SPEC",
    )
    trust_remote_code: bool = option(False, "run the model repository's own code (off by default)")

    def load(self, name: str) -> Backbone:
        """Load ``name`` (Hub id, folder, ``.gguf``, offline alias) with these options; with ``ffn``, the
        layout is registered for the model's ``model_type`` first."""
        from skillneurons.backbones.loading import load_with_options  # torch: on use only (config)

        return load_with_options(name, self)
