"""Artifacts: ``NAME.safetensors`` + ``NAME.json`` manifest, written atomically, hash-checked on load.

The manifest records what the tensors are (model, task, split, seed, version, shapes) and the SHA-256
of the tensor file, so a corrupted or swapped file is detected. Nothing is ever unpickled.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillneurons import __version__
from skillneurons.errors import ArtifactError
from skillneurons.files import atomic_write_bytes, atomic_write_json, read_json, sha256_file

if TYPE_CHECKING:
    import torch

# torch and safetensors are imported where tensors are read or written: opening a manifest (and so
# a command's input checks) loads neither

__all__ = [
    "FORMAT_VERSION",
    "artifact_paths",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_artifact",
    "load_manifest",
    "read_tensors",
    "save_artifact",
    "sha256_file",
]

FORMAT_VERSION = 1


def artifact_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(tensor_file, manifest_file)`` for an artifact path given with or without a suffix."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_artifact(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    kind: str,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``tensors`` and a manifest describing them; returns the tensor file's path.

    ``kind`` names what the artifact is (``"prompt"``, ``"predictivity"``, ...). The tensor file is
    written first, then the manifest (with the tensor file's hash): a reader that finds a manifest
    always finds the matching tensors.
    """
    tfile, mfile = artifact_paths(path)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    digest = _write_tensors(tfile, clean, kind)
    full = {
        "format": "skillneurons-artifact",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "skillneurons_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **dict(manifest or {}),
        "shapes": {k: list(v.shape) for k, v in clean.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in clean.items()},
        "tensor_file": tfile.name,
        "sha256": digest,
    }
    atomic_write_json(mfile, full)
    return tfile


def _write_tensors(tfile: Path, tensors: dict[str, torch.Tensor], kind: str) -> str:
    """Write a safetensors file atomically (safetensors writes straight to a temporary file in the same
    folder, so large tensors are never held twice in memory); returns its SHA-256. The file gets the
    usual permissions (``0666`` less the umask), as :func:`skillneurons.files.atomic_write_bytes` does."""
    tfile.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tfile.parent, prefix=f".{tfile.name}.", suffix=".tmp")
    os.close(fd)
    from safetensors.torch import save_file

    try:
        save_file(tensors, tmp, metadata={"kind": kind})
        digest = sha256_file(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, tfile)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest


def load_manifest(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read an artifact's manifest (no tensors, no hash check); with ``kind``, check what it holds."""
    _, mfile = artifact_paths(path)
    if not mfile.is_file():
        raise ArtifactError(
            f"no artifact manifest at {mfile}: pass the path of an artifact saved by skillneurons"
        )
    manifest = read_json(mfile, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != "skillneurons-artifact":
        raise ArtifactError(
            f"{mfile} is not a skillneurons manifest: pass the path of an artifact saved by skillneurons"
        )
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(
            f"{mfile} holds a '{manifest.get('kind')}' artifact, not a '{kind}': pass a {kind} artifact"
        )
    return manifest


def load_artifact(
    path: str | os.PathLike[str], kind: str | None = None, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(tensors, manifest)``; checks the kind and the tensor file's SHA-256."""
    tfile, mfile = artifact_paths(path)
    manifest = load_manifest(path, kind)
    if not tfile.is_file():
        raise ArtifactError(f"tensor file {tfile} is missing next to its manifest: copy both files together")
    if sha256_file(tfile) != manifest.get("sha256"):
        raise ArtifactError(
            f"{tfile} does not match the hash in its manifest: "
            "the file is corrupted or was replaced; re-create it"
        )
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(
            f"{mfile} was written by a newer skillneurons (format {manifest['format_version']}): "
            "upgrade skillneurons"
        )
    return read_tensors(tfile, device), manifest


def read_tensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``; a file that is not one (truncated, a pickle, another
    format) or cannot be read is a one-line :class:`ArtifactError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    try:
        return load_file(str(p), device=str(device))
    except SafetensorError as e:
        raise ArtifactError(
            f"{p} is not a readable safetensors file ({e}): the file is truncated or in another format "
            "(skillneurons never reads pickles); re-create it"
        ) from None
    except OSError as e:
        raise ArtifactError(f"cannot read {p}: {e.strerror or e}") from None
