"""Checks shared by the transfer tools on the artifacts they read as soft prompts."""

from __future__ import annotations

import os
from typing import Any

from skillneurons.artifacts import artifact_paths, load_manifest, sha256_file
from skillneurons.errors import ConfigError

__all__ = ["prompt_identity", "require_soft_prompt"]


def require_soft_prompt(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the prompt artifact ``path``; a one-line :class:`ConfigError` when it was
    tuned with another method than prompt tuning (:mod:`skillneurons.delta`: BitFit, adapters,
    LoRA), which leaves no soft prompt to transfer. Read before any tensors are loaded."""
    man = load_manifest(path, "prompt")
    method = str(man.get("method", "prompt"))
    if method != "prompt":
        raise ConfigError(f"{path} was tuned with --method {method} and has no soft prompt to transfer")
    return man


def prompt_identity(path: str | os.PathLike[str]) -> str:
    """Content identity of a prompt artifact: the sha256 of its ``.safetensors`` file (a prompt
    overwritten in place gets a new identity; a moved one keeps it)."""
    return sha256_file(artifact_paths(path)[0])
