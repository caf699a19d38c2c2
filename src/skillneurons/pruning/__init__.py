"""Skill-neuron pruning (REFERENCE.md section 5): keep the skill neurons of layers [l0, L), fold every
removed neuron's baseline into the down-projection bias, and save/load the physically smaller model.

Typical use::

    from skillneurons.backbones import load_backbone
    from skillneurons.neurons.find import SkillNeurons
    from skillneurons.pruning import load_pruned, prune_backbone, save_pruned, skill_keep_mask

    bb = load_backbone("minilm")
    neurons = SkillNeurons.load("runs/mr/neurons/skill_neurons")
    keep = skill_keep_mask(neurons.mask(0.02), first_layer=1)      # [L, N] bool
    small = prune_backbone(bb, keep, neurons.token_mean)            # a smaller copy
    save_pruned(small, "runs/mr/pruned-2", keep, source=bb, rho=0.02)
    again = load_pruned("runs/mr/pruned-2")                         # a Backbone
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.pruning.config import PruneConfig
    from skillneurons.pruning.io import (
        MANIFEST_NAME,
        WEIGHTS_NAME,
        is_pruned_model,
        load_pruned,
        read_pruned_manifest,
        save_pruned,
    )
    from skillneurons.pruning.prune import (
        MaskLike,
        count_parameters,
        default_first_layer,
        ffn_parameters,
        kept_indices,
        prune_backbone,
        skill_keep_mask,
    )
    from skillneurons.pruning.results import ParameterCount, PruneResult
    from skillneurons.pruning.run import prune_model

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PruneConfig": ".config",
        "ParameterCount": ".results",
        "PruneResult": ".results",
        "MANIFEST_NAME": ".io",
        "WEIGHTS_NAME": ".io",
        "is_pruned_model": ".io",
        "load_pruned": ".io",
        "read_pruned_manifest": ".io",
        "save_pruned": ".io",
        "MaskLike": ".prune",
        "count_parameters": ".prune",
        "default_first_layer": ".prune",
        "ffn_parameters": ".prune",
        "kept_indices": ".prune",
        "prune_backbone": ".prune",
        "skill_keep_mask": ".prune",
        "prune_model": ".run",
    },
)

__all__ = [
    "MANIFEST_NAME",
    "WEIGHTS_NAME",
    "MaskLike",
    "ParameterCount",
    "PruneConfig",
    "PruneResult",
    "count_parameters",
    "default_first_layer",
    "ffn_parameters",
    "is_pruned_model",
    "kept_indices",
    "load_pruned",
    "prune_backbone",
    "prune_model",
    "read_pruned_manifest",
    "save_pruned",
    "skill_keep_mask",
]
