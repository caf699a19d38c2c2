"""Saving and loading trained prompts, and PEFT prompt-tuning adapter export/import.

A prompt artifact is ``NAME.safetensors`` (``prompt`` ``[P, hidden]`` plus the head's trainable
tensors as ``head.*``) and ``NAME.json`` (backbone identity, layout, head config, task, split,
seed, metrics). Loading checks that the backbone matches what the prompt was trained on. Models
tuned with another method (:mod:`skillneurons.delta`) use the same format with ``method``,
``method_options`` and ``delta.*`` tensors; :func:`load_prompt` rebuilds them transparently.

A similarity head's label anchors (the backbone's encodings of the class descriptions) are part of
the trained head: they are saved as ``head_anchors`` (manifest ``"head_anchors": "saved"``) and used
as saved when the prompt is loaded, also on another model of the same geometry (a pruned one).
Prompts saved before have none: their anchors are encoded by the backbone they are loaded on (the
returned manifest says ``"head_anchors": "encoded"``), with a warning when that is not the model
the prompt was trained on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from skillneurons.artifacts import atomic_write_json, load_artifact, read_tensors, save_artifact
from skillneurons.backbones import Backbone
from skillneurons.errors import ArtifactError, ConfigError, NonFiniteError
from skillneurons.files import read_json
from skillneurons.prompts.heads import Head, SimilarityHead, head_from_config
from skillneurons.prompts.methods import TUNING_METHODS
from skillneurons.prompts.model import PromptModel
from skillneurons.prompts.soft_prompt import SoftPrompt

log = logging.getLogger(__name__)

#: the tensor holding a similarity head's label anchors in a prompt artifact
ANCHORS_KEY = "head_anchors"


def save_prompt(path: str | os.PathLike[str], model: PromptModel, **manifest: Any) -> Path:
    """Save a prompt model's trainable state with a manifest; returns the tensor file path."""
    tensors = {"prompt": model.prompt.weight.detach()}
    tensors.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    meta = {
        "backbone": model.backbone.identity(),
        "layout": model.layout,
        "max_length": model.max_length,
        "template": model.template,
        "head": model.head.config(),
        "prompt_length": model.prompt.length,
        **manifest,
    }
    if isinstance(model.head, SimilarityHead):  # the anchors are part of the trained head
        tensors[ANCHORS_KEY] = model.head.anchors.detach()
        meta[ANCHORS_KEY] = "saved"
    delta: Any = model
    if hasattr(delta, "artifact_tensors"):  # a delta-tuned model (skillneurons.delta): method and its tensors
        tensors.update(delta.artifact_tensors())
        meta.update(delta.artifact_manifest())
    return save_artifact(path, tensors, kind="prompt", manifest=meta)


def check_backbone(saved: dict[str, Any], backbone: Backbone, what: str = "prompt") -> None:
    """ArtifactError unless ``backbone`` has the geometry an artifact was made for."""
    cur = backbone.identity()
    for key in ("hidden_size", "num_layers", "vocab_size", "model_type"):
        if key in saved and saved[key] != cur[key]:
            raise ArtifactError(
                f"this {what} was made for {saved.get('name')} ({key} {saved[key]}) but the backbone is "
                f"{cur['name']} ({key} {cur[key]}): load it with --model {saved.get('name')}, "
                "or project it across models"
            )


def check_finite(tensors: dict[str, torch.Tensor], where: str | os.PathLike[str]) -> None:
    """NonFiniteError when a floating-point tensor of a prompt holds NaN or infinite values."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFiniteError(
            f"{where} holds NaN or infinite values (in {', '.join(sorted(bad))}): it is not a usable prompt; "
            "tune it again (a run that diverges stops with an error and keeps its last finite checkpoint)"
        )


def read_prompt_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and manifest of a saved prompt (hash-checked, every tensor finite)."""
    tensors, manifest = load_artifact(path, kind="prompt")
    check_finite(tensors, path)
    return tensors, manifest


def load_prompt(path: str | os.PathLike[str], backbone: Backbone) -> tuple[PromptModel, dict[str, Any]]:
    """Rebuild a :class:`PromptModel` on ``backbone`` from a saved prompt; returns ``(model, manifest)``."""
    tensors, manifest = read_prompt_tensors(path)
    check_backbone(manifest.get("backbone", {}), backbone)
    head = head_from_config(manifest["head"], backbone)
    head_state = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    if head_state:
        head.load_state_dict(head_state)
    _restore_anchors(head, tensors, manifest, backbone, path)
    method = str(manifest.get("method", "prompt"))
    if method != "prompt":  # BitFit / adapter / LoRA: the method's plugin rebuilds it
        rebuild = TUNING_METHODS.get(method).rebuild
        assert rebuild is not None, method
        return rebuild(backbone, head, tensors, manifest), manifest
    model = PromptModel(
        backbone,
        SoftPrompt(tensors["prompt"]),
        head,
        layout=manifest["layout"],
        max_length=int(manifest.get("max_length", 128)),
        template=manifest.get("template"),
    )
    return model, manifest


def _restore_anchors(
    head: Head,
    tensors: dict[str, torch.Tensor],
    manifest: dict[str, Any],
    backbone: Backbone,
    path: str | os.PathLike[str],
) -> None:
    """Put a similarity head's saved anchors back; mark (and, on another model, warn about) a prompt
    saved before anchors were saved, whose anchors are encoded by ``backbone``."""
    if not isinstance(head, SimilarityHead):
        return
    if ANCHORS_KEY in tensors:
        head.set_anchors(tensors[ANCHORS_KEY])
        manifest[ANCHORS_KEY] = "saved"
        return
    manifest[ANCHORS_KEY] = "encoded"
    trained_on = manifest.get("backbone", {})
    if {k: trained_on.get(k) for k in ("name", "d_ff")} != {
        k: backbone.identity()[k] for k in ("name", "d_ff")
    }:
        log.warning(
            "%s has no saved similarity-head anchors (saved by an older version): its label anchors are "
            "encoded by %s, not by %s it was trained on, so its figures are not its own head's "
            "(skillneurons prune takes them from the unpruned model; a prompt tuned now saves them)",
            path,
            backbone.name,
            trained_on.get("name", "the model"),
        )


# ---- PEFT interoperability -----------------------------------------------------------------

_PEFT_WEIGHTS = "adapter_model.safetensors"


def export_peft(
    model: PromptModel, directory: str | os.PathLike[str], base_model_name: str | None = None
) -> Path:
    """Write the prompt as a PEFT ``PROMPT_TUNING`` adapter directory (``adapter_config.json`` +
    ``adapter_model.safetensors`` with ``prompt_embeddings``), loadable with
    ``peft.PeftModel.from_pretrained(base, directory)``. Only the ``prompt_first`` layout is PEFT's."""
    from peft import PromptTuningConfig, TaskType

    if getattr(model, "delta", None) is not None:
        raise ConfigError(
            f"this model was tuned with --method {getattr(model, 'method', '?')} and holds no soft prompt: "
            "only prompt-tuned models can be exported as a PEFT prompt-tuning adapter"
        )
    if model.layout != "prompt_first":
        raise ConfigError(
            "PEFT prompt tuning prepends the prompt with no read slot in front: only prompts trained with "
            "--layout prompt_first can be exported"
        )
    bb = model.backbone
    cfg = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM if bb.is_causal else TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=model.prompt.length,
        token_dim=bb.hidden_size,
        num_transformer_submodules=1,
        num_attention_heads=getattr(bb.config, "num_attention_heads", None),
        num_layers=bb.num_layers,
        base_model_name_or_path=base_model_name or bb.loadable_name,  # never an offline alias
    )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{_PEFT_WEIGHTS}.tmp"
    save_file({"prompt_embeddings": model.prompt.weight.detach().cpu().contiguous()}, str(tmp))
    os.replace(tmp, out / _PEFT_WEIGHTS)
    atomic_write_json(out / "adapter_config.json", cfg.to_dict())
    return out


def import_peft(directory: str | os.PathLike[str]) -> tuple[SoftPrompt, dict[str, Any]]:
    """Read a PEFT prompt-tuning adapter directory; returns ``(prompt, adapter_config)``."""
    d = Path(directory)
    cfg_file, weights = d / "adapter_config.json", d / _PEFT_WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise ArtifactError(
            f"{d} is not a PEFT adapter directory (needs adapter_config.json and {_PEFT_WEIGHTS})"
        )
    cfg = read_json(cfg_file, "PEFT adapter config")
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{cfg_file} is not a PEFT adapter config (a JSON object): re-export the adapter")
    if cfg.get("peft_type") != "PROMPT_TUNING":
        raise ArtifactError(
            f"{d} holds a {cfg.get('peft_type')} adapter, not PROMPT_TUNING: pass a prompt-tuning adapter"
        )
    state = read_tensors(weights)
    key = next((k for k in state if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise ArtifactError(f"{weights} has no prompt_embeddings tensor: it is not a prompt-tuning adapter")
    w: torch.Tensor = state[key]
    check_finite({key: w}, weights)
    return SoftPrompt(w), cfg
