"""The delta-tuned classifier: a :class:`~skillneurons.prompts.PromptModel` with no soft prompt (P=0)
whose backbone runs with a :class:`~skillneurons.delta.methods.DeltaMethod` attached.

Everything else is the prompt model's: input layout (``slot_first`` reads at a ``<mask>`` slot in
front of the text, ``prompt_first`` at the end), heads, encoding, the trainer, evaluation, neuron
collection and perturbation. With P=0 the "prompt positions" of a delta model are its read slot
(or read token) only; perturbation experiments on delta models use all positions, as the paper did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.delta.build import build_method
from skillneurons.delta.methods import DeltaMethod
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.prompts.heads import Head
from skillneurons.prompts.methods import options_to_config
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.prompts.soft_prompt import SoftPrompt

__all__ = ["DeltaModel", "NoPrompt", "delta_from_artifact", "delta_model"]


class NoPrompt(SoftPrompt):
    """A soft prompt of length 0 (``weight: [0, hidden]``, not trainable)."""

    def __init__(self, hidden_size: int) -> None:
        nn.Module.__init__(self)
        self.weight = nn.Parameter(torch.zeros(0, int(hidden_size)), requires_grad=False)


class DeltaModel(PromptModel):
    """``logits = head(hidden_at_read(backbone_with_delta([slot] + text)))``.

    Trainable state: ``delta`` (the method's tensors) and the head's; ``prompt`` is empty. The
    method is attached to the backbone only during this model's own forward passes.
    """

    def __init__(
        self,
        backbone: Backbone,
        method: DeltaMethod,
        head: Head,
        *,
        layout: str = "auto",
        max_length: int = 128,
        template: str | None = None,
    ) -> None:
        super().__init__(
            backbone,
            NoPrompt(backbone.hidden_size),
            head,
            layout=layout,
            max_length=max_length,
            template=template,
        )
        if method.backbone is not backbone:
            raise ConfigError("the delta method was built on another backbone than the model's")
        self.delta = method

    @property
    def method(self) -> str:
        return self.delta.name

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        with self.delta.attached():
            return super().hidden_states(batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        with self.delta.attached():  # the head may run backbone modules too (LM head)
            return super().forward(batch)

    def release(self) -> None:
        """Remove the method from the shared backbone's module tree (LoRA); see
        :meth:`DeltaMethod.release`."""
        self.delta.release()

    # ---- artifact hooks (used by skillneurons.prompts.save_prompt) ---------------------------
    def artifact_tensors(self) -> dict[str, torch.Tensor]:
        return {f"delta.{k}": v.detach() for k, v in self.delta.state_dict().items()}

    def artifact_manifest(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "method_options": self.delta.options(),
            "trainable_parameters": sum(p.numel() for p in self.parameters() if p.requires_grad),
        }


def delta_model(
    model: PromptModel, method: str = "prompt", options: Mapping[str, Any] | Any = None
) -> PromptModel:
    """``model`` itself for ``method="prompt"``; otherwise a :class:`DeltaModel` with ``model``'s head,
    layout, length and template, no soft prompt, and the method ``method`` built with ``options`` (its
    config, e.g. a :class:`~skillneurons.delta.LoraConfig`, or the config's fields as a mapping)."""
    if method == "prompt":
        options_to_config(None, options, "prompt")  # refuses options
        return model
    m = build_method(method, model.backbone, options)
    return DeltaModel(
        model.backbone,
        m,
        model.head,
        layout=model.layout,
        max_length=model.max_length,
        template=model.template,
    ).to(model.backbone.device)


def delta_from_artifact(
    backbone: Backbone, head: Head, tensors: Mapping[str, torch.Tensor], manifest: Mapping[str, Any]
) -> DeltaModel:
    """Rebuild a saved delta model: the method from the manifest, then its tensors."""
    method = build_method(str(manifest["method"]), backbone, manifest.get("method_options") or {})
    model = DeltaModel(
        backbone,
        method,
        head,
        layout=manifest["layout"],
        max_length=int(manifest.get("max_length", 128)),
        template=manifest.get("template"),
    )
    state = {k.removeprefix("delta."): v for k, v in tensors.items() if k.startswith("delta.")}
    try:
        method.load_state_dict(state)
    except RuntimeError as e:
        method.release()
        raise ArtifactError(
            f"the saved {manifest['method']} tensors do not fit the method rebuilt from the manifest "
            f"({str(e).splitlines()[0][:200]}): the artifact is damaged or from another version"
        ) from None
    return model.to(backbone.device)
