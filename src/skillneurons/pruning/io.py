"""Saving and loading pruned models: a folder that restores the smaller network without pruning again.

A pruned-model folder holds::

    OUT/model.safetensors   the weights (safetensors; tied tensors stored once)
    OUT/config.json         the source model's config (the FFN widths in it are the unpruned ones)
    OUT/tokenizer*          the tokenizer
    OUT/pruning.json        the manifest: per-layer widths and kept indices, which FFN matrices gained a
                            bias, the FFN layout, the model class, the source model's identity, rho,
                            the skill-neuron artifact's hash, parameter counts, the weights' SHA-256

The folder is written under a temporary name next to ``OUT`` and renamed into place, so a reader never
sees a half-written model. Loading builds the model class named in the manifest from ``config.json``
(a ``transformers`` class only; nothing is unpickled, no remote code runs), resizes the FFN modules
to the widths found in the weights file (checked against the manifest), and loads the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from skillneurons import __version__
from skillneurons.artifacts import atomic_write_json, sha256_file
from skillneurons.backbones import Backbone, FFNSpec, default_device
from skillneurons.backbones.loading import _prepare_tokenizer
from skillneurons.backbones.masks import MaskLike
from skillneurons.backbones.surgery import make_linear, replace_module
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.pruning.prune import count_parameters, ffn_parameters, kept_indices

__all__ = [
    "MANIFEST_NAME",
    "WEIGHTS_NAME",
    "is_pruned_model",
    "load_pruned",
    "read_pruned_manifest",
    "save_pruned",
]

MANIFEST_NAME = "pruning.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "skillneurons-pruned-model"
FORMAT_VERSION = 1


def _version() -> str:
    return __version__


def is_pruned_model(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder written by :func:`save_pruned`."""
    return (Path(path) / MANIFEST_NAME).is_file()


def _ffn_state(backbone: Backbone) -> list[dict[str, Any]]:
    """Per layer: ``{"d_ff": n, "bias": {"up": bool, "gate": bool, "down": bool}}``."""
    out = []
    for i in range(backbone.num_layers):
        mods = {"up": backbone.up_proj(i), "gate": backbone.gate_proj(i), "down": backbone.down_proj(i)}
        out.append(
            {
                "d_ff": backbone.neuron_count(i),
                "bias": {
                    r: isinstance(getattr(m, "bias", None), torch.Tensor)
                    for r, m in mods.items()
                    if m is not None
                },
            }
        )
    return out


def save_pruned(
    backbone: Backbone,
    out_dir: str | os.PathLike[str],
    keep_mask: MaskLike,
    *,
    source: Backbone | dict[str, Any] | None = None,
    overwrite: bool = True,
    **manifest: Any,
) -> Path:
    """Write a pruned backbone (from :func:`~skillneurons.pruning.prune_backbone`) to ``out_dir``.

    Args:
        backbone: the pruned backbone.
        out_dir: the folder to write (replaced atomically if it holds an earlier pruned model).
        keep_mask: the keep mask it was pruned with ([L, N] bool or per layer); checked against its widths.
        source: the unpruned backbone (or its :meth:`~Backbone.identity`), recorded in the manifest.
        overwrite: replace an existing pruned-model folder at ``out_dir``.
        manifest: extra JSON-able fields (``rho``, ``first_layer``, ``skill_neurons`` ...).

    Returns:
        The folder.
    """
    out = Path(out_dir)
    kept = kept_indices(keep_mask)
    widths = backbone.d_ff
    if [len(k) for k in kept] != widths:
        raise ConfigError(
            f"the keep mask keeps {[len(k) for k in kept]} neurons per layer but the pruned model has widths "
            f"{widths}: "
            "pass the mask the model was pruned with"
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_pruned_model(out))):
        raise ConfigError(f"{out} exists and is not a pruned-model folder: choose another --out")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already holds a pruned model: choose another --out or pass overwrite=True")
    src = source.identity() if isinstance(source, Backbone) else dict(source or {})
    n_src = manifest.pop("source_parameters", None)
    if isinstance(source, Backbone):
        n_src = count_parameters(source)
        manifest.setdefault("source_ffn_parameters", ffn_parameters(source))
    model = backbone.model
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        weights = tmp / WEIGHTS_NAME
        save_model(model, str(weights), metadata={"format": "pt", "kind": "skillneurons-pruned-model"})
        model.config.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        n_params = count_parameters(backbone)
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "pruned_model",
            "skillneurons_version": _version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "name": backbone.name,
            "model_class": type(model).__name__,
            "backbone_kind": backbone.kind,
            "spec": {**asdict(backbone.spec), "lm_head": list(backbone.spec.lm_head)},
            "layers_path": backbone.layers_path,
            "dtype": str(backbone.dtype).removeprefix("torch."),
            "source": src,
            **manifest,
            "d_ff": widths,
            "d_ff_source": src.get("d_ff"),
            "pruned_layers": [i for i, k in enumerate(kept) if src.get("d_ff") and len(k) < src["d_ff"][i]],
            "layers": _ffn_state(backbone),
            "parameters": {
                "pruned": n_params,
                "source": n_src,
                "fraction": (n_params / n_src) if n_src else None,
                "ffn_pruned": ffn_parameters(backbone),
            },
            "kept": kept,
            "files": {WEIGHTS_NAME: sha256_file(weights)},
        }
        atomic_write_json(tmp / MANIFEST_NAME, full)
        umask = os.umask(0o022)
        os.umask(umask)
        for f in tmp.iterdir():  # mkdtemp/mkstemp make private files: give the folder the usual modes
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_pruned_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a pruned-model folder (no weights read)."""
    mfile = Path(path) / MANIFEST_NAME
    if not mfile.is_file():
        raise ArtifactError(
            f"{path} is not a pruned-model folder (no {MANIFEST_NAME}): pass the --out of `skillneurons "
            "prune`"
        )
    try:
        man = json.loads(mfile.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mfile} is not valid JSON ({e}): the file is corrupted; prune again") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ArtifactError(
            f"{mfile} is not a skillneurons pruned-model manifest: pass the --out of `skillneurons prune`"
        )
    if int(man.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(
            f"{mfile} was written by a newer skillneurons (format {man['format_version']}): upgrade "
            "skillneurons"
        )
    return man


def _model_class(name: Any) -> type[PreTrainedModel]:
    import transformers

    cls = getattr(transformers, str(name), None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(cls, type) or not issubclass(cls, PreTrainedModel):
        raise ArtifactError(
            f"the pruned model's class {name!r} is not a transformers model class: the manifest is "
            "corrupted, or "
            "was written with another transformers version; prune again"
        )
    return cls


def _parse_dtype(name: Any) -> torch.dtype:
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise ArtifactError(f"unknown dtype {name!r} in the pruned-model manifest: prune again")
    return dt


def load_pruned(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    check_hash: bool = True,
) -> Backbone:
    """Load a folder written by :func:`save_pruned` as a frozen :class:`Backbone` (named ``path``).

    Args:
        path: the pruned-model folder.
        device: where to put it (default: CUDA when available, else CPU).
        check_hash: verify the weights file against the SHA-256 in the manifest.
    """
    d = Path(path)
    man = read_pruned_manifest(d)
    weights = d / WEIGHTS_NAME
    if not weights.is_file():
        raise ArtifactError(f"{weights} is missing next to its manifest: copy the whole pruned-model folder")
    if check_hash and sha256_file(weights) != man.get("files", {}).get(WEIGHTS_NAME):
        raise ArtifactError(
            f"{weights} does not match the hash in {MANIFEST_NAME}: the file is corrupted or was replaced; "
            "prune again"
        )
    try:
        spec_fields = dict(man["spec"])
        spec_fields["lm_head"] = tuple(spec_fields.get("lm_head") or ())
        spec = FFNSpec(**spec_fields)
        kind = man["backbone_kind"]
        widths = [int(w) for w in man["d_ff"]]
        cls = _model_class(man["model_class"])
        dtype = _parse_dtype(man.get("dtype", "float32"))
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(
            f"{d / MANIFEST_NAME} lacks or garbles {e}: the manifest is incomplete; prune again"
        ) from None
    try:
        config = AutoConfig.from_pretrained(d)
        tokenizer = AutoTokenizer.from_pretrained(d)
    except (OSError, ValueError) as e:
        raise ArtifactError(
            f"{d} has no readable config/tokenizer ({str(e).splitlines()[0][:160]}): copy the whole folder"
        ) from None
    model = cls(config)
    model.to(dtype)  # type: ignore[arg-type]
    model.eval()
    bb = Backbone(
        model=model, tokenizer=_prepare_tokenizer(tokenizer, kind), name=str(path), kind=kind, spec=spec
    )
    if bb.num_layers != len(widths):
        raise ArtifactError(
            f"{d} records {len(widths)} layers but its config builds {bb.num_layers}: prune again"
        )
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ArtifactError(
            f"{weights} is not a readable safetensors file ({e}): the pruned model is corrupted; prune again"
        ) from None
    for i in range(bb.num_layers):
        roles = {"up": spec.up, "down": spec.down, **({"gate": spec.gate} if spec.gate else {})}
        for role, rel in roles.items():
            key = f"{bb.layers_path}.{i}.{rel}"
            wshape = shapes.get(f"{key}.weight")
            if wshape is None or len(wshape) != 2:
                raise ArtifactError(
                    f"{weights} has no 2-D tensor '{key}.weight': the pruned model is incomplete; prune again"
                )
            # nn.Linear weights are [out, in]; Conv1D weights are [in, out]
            in_f, out_f = (wshape[0], wshape[1]) if spec.linear_kind == "conv1d" else (wshape[1], wshape[0])
            width = in_f if role == "down" else out_f
            if width != widths[i]:
                raise ArtifactError(
                    f"{weights} gives layer {i} {width} neurons but {MANIFEST_NAME} records {widths[i]}: the "
                    "files do not "
                    "belong together; prune again"
                )
            has_bias = f"{key}.bias" in shapes
            old = bb.blocks[i].get_submodule(rel)
            ow = old.weight
            assert isinstance(ow, torch.Tensor)
            if list(ow.shape) != wshape or isinstance(getattr(old, "bias", None), torch.Tensor) != has_bias:
                replace_module(bb.blocks[i], rel, make_linear(spec.linear_kind, in_f, out_f, has_bias, ow))
    try:
        load_model(model, weights, strict=True)
    except RuntimeError as e:
        raise ArtifactError(
            f"{weights} does not fit the model its manifest describes ({str(e).splitlines()[0][:200]}): "
            "prune again"
        ) from None
    model.to(torch.device(device) if device is not None else default_device())  # type: ignore[arg-type]
    return bb.freeze()
