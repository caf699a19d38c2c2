"""Hugging Face datasets (``hf:DATASET[/CONFIG]``), read through the ``datasets`` library."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from skillneurons.data.builtin import BUILTINS
from skillneurons.data.columns import default_name, resolve_columns, task_from_columns
from skillneurons.data.task import Task
from skillneurons.errors import DataError

__all__ = ["hub_reachable", "load_hub", "open_hub_dataset"]

#: seconds the one probe of the Hub may take before it counts as unreachable
PROBE_TIMEOUT = 3.0
_probe: bool | None = None  # the probe's answer, once per process


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face Hub answers (one TCP connection to its endpoint, at most ``timeout``
    seconds, probed once per process); False at once in offline mode (``HF_HUB_OFFLINE=1``)."""
    global _probe
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if _probe is None:
        url = urllib.parse.urlparse(constants.ENDPOINT)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
            _probe = True
        except OSError:
            _probe = False
    return _probe


def _go_offline() -> None:
    """Switch the Hub libraries to offline mode (cached datasets still load; nothing retries for 25 s)."""
    import datasets
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True


def _hub_candidates(rest: str) -> list[tuple[str, str | None]]:
    """``(dataset, config)`` readings of ``DATASET[/CONFIG]`` / ``DATASET:CONFIG``, most likely first."""
    if ":" in rest:
        ds, _, cfg = rest.partition(":")
        return [(ds, cfg or None)]
    parts = [p for p in rest.split("/") if p]
    if len(parts) == 1:
        return [(parts[0], None)]
    if len(parts) == 2:  # "owner/name" or "name/config": try both
        return [("/".join(parts), None), (parts[0], parts[1])]
    return [("/".join(parts[:2]), "/".join(parts[2:]))]


def _hub_error(e: BaseException, ds: str, cfg: str | None, split: str | None) -> DataError:
    msg = " ".join(str(e).split())[:200] or type(e).__name__
    names = f"{type(e).__name__} {msg}"
    offline_markers = (
        "Couldn't reach",
        "OfflineModeIsEnabled",
        "LocalEntryNotFound",
        "Name or service",
        "Connection",
    )
    if isinstance(e, ConnectionError) or any(m in names for m in offline_markers):
        return DataError(
            f"cannot reach the Hugging Face Hub to load '{ds}' ({msg}): connect to the internet (or use a "
            "cached copy), "
            f"or use an offline built-in task ({', '.join(BUILTINS)}) or a local data file"
        )
    if "Config name is missing" in msg or "BuilderConfig" in msg:
        return DataError(f"dataset '{ds}' needs a configuration ({msg}): pass hf:{ds}/CONFIG")
    if "Unknown split" in msg or (split is not None and "split" in msg.lower()):
        return DataError(
            f"split '{split}' of hf:{ds} is not available ({msg}): pass --split with an existing split"
        )
    return DataError(
        f"cannot load hf:{ds}{'' if cfg is None else '/' + cfg} ({type(e).__name__}: {msg}): check the "
        "dataset name and configuration"
    )


def open_hub_dataset(ds: str, cfg: str | None) -> Any:
    """``datasets.load_dataset(ds, cfg)`` (all its splits) with the same offline-safe probe and one-line
    errors as ``hf:`` tasks. A dataset that still ships a loading script, which ``datasets`` >= 4 no
    longer runs, is read from the Hub's Parquet conversion (revision ``refs/convert/parquet``)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise DataError("the 'datasets' package is needed for hf: tasks: pip install datasets") from e
    if not hub_reachable():
        _go_offline()
    try:
        try:
            return datasets.load_dataset(ds, cfg)
        except Exception as e:
            if "script" not in str(e).lower():
                raise
            return datasets.load_dataset(ds, cfg, revision="refs/convert/parquet")
    except Exception as e:  # datasets/huggingface_hub raise many types; all mean "cannot load this"
        raise _hub_error(e, ds, cfg, None) from e


def load_hub(
    rest: str,
    *,
    split: str | None,
    text_column: str | None,
    text_b_column: str | None,
    label_column: str | None,
    label_names: Sequence[str] | None,
    label_words: Mapping[str, Sequence[str]] | None,
    dedup: bool,
) -> Task:
    if not rest.strip("/: "):
        raise DataError("no dataset named after hf: : pass hf:DATASET[/CONFIG], e.g. hf:glue/sst2")
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise DataError("the 'datasets' package is needed for hf: tasks: pip install datasets") from e

    if not hub_reachable():
        _go_offline()  # one probe, then a cached copy or a one-line error, never minutes of retries
    candidates = _hub_candidates(rest)
    loaded: Any = None
    chosen: tuple[str, str | None] | None = None
    errors: list[tuple[BaseException, str, str | None]] = []
    for ds, cfg in candidates:
        try:
            loaded = datasets.load_dataset(ds, cfg, split=split) if split else datasets.load_dataset(ds, cfg)
            chosen = (ds, cfg)
            break
        except Exception as e:  # datasets/huggingface_hub raise many types; all mean "cannot load this"
            errors.append((e, ds, cfg))
            if not _is_not_found(e):
                break  # offline, bad config, bad split: another reading of the name will not help
    if chosen is None:
        err, ds, cfg = errors[-1] if not _is_not_found(errors[-1][0]) else errors[0]
        raise _hub_error(err, ds, cfg, split) from err
    ds_name, cfg = chosen
    if split is None:
        if isinstance(loaded, Mapping) or hasattr(loaded, "keys"):
            splits = list(loaded.keys())
            split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
            if split is None:
                raise DataError(
                    f"hf:{ds_name} has no 'train' split (splits: {', '.join(splits)}): pass --split with one "
                    "of them"
                )
            loaded = loaded[split]
    features = getattr(loaded, "features", None) or {}
    columns = list(loaded.column_names)
    tcol, bcol, lcol = resolve_columns(columns, text_column, text_b_column, label_column, f"hf:{ds_name}")
    class_names = None
    feat = features.get(lcol) if hasattr(features, "get") else None
    if feat is not None and type(feat).__name__ == "ClassLabel":
        class_names = list(feat.names)
    table = loaded.select_columns([c for c in (tcol, bcol, lcol) if c is not None]).to_dict()
    label = ds_name + ("" if cfg is None else "/" + cfg)
    return task_from_columns(
        table,
        name=default_name(label.replace("/", "-")),
        source=f"hf:{label} split={split}",
        what=f"hf:{label} ({split})",
        text_column=tcol,
        text_b_column=bcol,
        label_column=lcol,
        label_names=label_names,
        label_words=label_words,
        class_label_names=class_names,
        dedup=dedup,
    )


def _is_not_found(e: BaseException) -> bool:
    """True for 'no such dataset' errors, which let the next reading of ``DATASET/CONFIG`` be tried."""
    return type(e).__name__ in (
        "DatasetNotFoundError",
        "FileNotFoundError",
        "FileNotFoundDatasetsError",
        "RepositoryNotFoundError",
    )
