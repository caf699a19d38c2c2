"""Reading tasks: ONE loader, :func:`load_reading_task`, for every source of multi-passage examples.

=====================================  ========================================================
spec                                   what
=====================================  ========================================================
``bbc_cloze``                          the built-in offline cloze task from BBC News
                                       (:mod:`skillneurons.reading.cloze`), built once into the
                                       data cache
``jsonl:PATH`` / ``PATH.jsonl``        a JSONL file in the project's schema (docs/reading.md),
                                       split by source article; or a folder of ``train.jsonl``,
                                       ``dev.jsonl`` (or ``validation.jsonl``), ``test.jsonl``
``hf:kyunghyuncho/search_qa``          SearchQA (config ``train_test_val``), extractive
``hf:sagnikrayc/quasar``               Quasar-T (config ``quasar-t``), extractive
``hf:community-datasets/qangaroo``     WikiHop (config ``wikihop``), multiple choice
=====================================  ========================================================

Every example is checked (:meth:`ReadingExample.problem`); examples whose answer does not occur in
their (first ``passages``) passages are skipped and counted, as are, for ``hf:`` data, examples with
no passages or no answer; any other problem is a one-line :class:`DataError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skillneurons.data.hub import open_hub_dataset
from skillneurons.errors import DataError
from skillneurons.reading import cloze
from skillneurons.reading.data_config import CLOZE_TASK, ReadDataConfig
from skillneurons.reading.examples import (
    PROBLEMS,
    SPLITS,
    ReadingExample,
    ReadingSplits,
    read_jsonl,
    split_by_group,
)

__all__ = [
    "HUB_READERS",
    "SPLITS",
    "ReadingSplits",
    "check_examples",
    "examples_from_rows",
    "load_reading_task",
    "split_by_group",
]


# ----------------------------------------------------------------------------------------------
# checks and splits
# ----------------------------------------------------------------------------------------------
def check_examples(
    examples: Iterable[ReadingExample],
    where: str,
    *,
    passages: int | None = None,
    skip: Sequence[str] = ("answer_not_in_passages",),
    skipped: Counter[str] | None = None,
) -> list[ReadingExample]:
    """The examples cut to their first ``passages`` passages and checked: a problem in ``skip`` is
    counted in ``skipped`` and the example left out; any other is a one-line DataError naming
    ``where``. Ids must be unique and every example of one kind."""
    out: list[ReadingExample] = []
    seen: set[str] = set()
    for ex in examples:
        if passages is not None and len(ex.passages) > passages:
            ex = replace(ex, passages=ex.passages[:passages])
        problem = ex.problem()
        if problem is not None:
            if problem in skip:
                if skipped is not None:
                    skipped[problem] += 1
                continue
            raise DataError(f"{where}: example '{ex.id}' {PROBLEMS[problem]}")
        if ex.id in seen:
            raise DataError(f"{where}: the id '{ex.id}' occurs twice: give every example a unique id")
        if out and ex.kind() != out[0].kind():
            raise DataError(
                f"{where}: example '{ex.id}' is {ex.kind()} but '{out[0].id}' is {out[0].kind()}: one task "
                "holds one kind (candidates on every example, or on none)"
            )
        seen.add(ex.id)
        out.append(ex)
    return out


def _limited(rows: Sequence[Any], limit: int) -> Sequence[Any]:
    return rows if not limit or len(rows) <= limit else rows[:limit]


# ----------------------------------------------------------------------------------------------
# JSONL in the project's schema
# ----------------------------------------------------------------------------------------------
def _jsonl_folder(folder: Path, cfg: ReadDataConfig) -> dict[str, list[ReadingExample] | None]:
    names = {"train": ("train.jsonl",), "dev": ("dev.jsonl", "validation.jsonl"), "test": ("test.jsonl",)}
    out: dict[str, list[ReadingExample] | None] = {}
    for split, files in names.items():
        path = next((folder / f for f in files if (folder / f).is_file()), None)
        out[split] = None if path is None else read_jsonl(path, cfg.encoding)
    if out["train"] is None:
        raise DataError(f"{folder} has no train.jsonl: a reading-task folder holds train/dev/test.jsonl")
    return out


def _load_jsonl(path_text: str, cfg: ReadDataConfig) -> ReadingSplits:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist: pass a JSONL file or a folder of train/dev/test.jsonl")
    parts = _jsonl_folder(path, cfg) if path.is_dir() else {"train": read_jsonl(path, cfg.encoding)}
    skipped: Counter[str] = Counter()
    checked = {
        s: check_examples(ex, f"{path} ({s})", passages=cfg.passages, skipped=skipped)
        for s, ex in parts.items()
        if ex is not None
    }
    train, dev, test = (tuple(_limited(x, cfg.limit)) for x in _complete_splits(checked, cfg))
    return ReadingSplits(path.stem, f"jsonl:{path}", train, dev, test, dict(skipped))


def _complete_splits(
    parts: Mapping[str, list[ReadingExample]], cfg: ReadDataConfig
) -> tuple[list[ReadingExample], list[ReadingExample], list[ReadingExample]]:
    """Missing dev / test splits are cut from train by source article (seeded)."""
    train = parts["train"]
    if not train:
        raise DataError("the training split holds no usable example: check the data and the skip counts")
    dev, test = parts.get("dev"), parts.get("test")
    if dev is not None and test is not None:
        return train, dev, test
    dev_f = 0.0 if dev is not None else cfg.dev_fraction
    test_f = 0.0 if test is not None else cfg.test_fraction
    tr, d, t = split_by_group(train, seed=cfg.seed, dev_fraction=dev_f, test_fraction=test_f)
    return tr, (dev if dev is not None else d), (test if test is not None else t)


# ----------------------------------------------------------------------------------------------
# hf: datasets; each reader maps one row (a dict) to a ReadingExample
# ----------------------------------------------------------------------------------------------
def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [v for v in value if isinstance(v, str) and v.strip()]


def _search_qa(row: Mapping[str, Any], index: int, split: str) -> ReadingExample:
    """SearchQA: ``question``, ``answer``, ``search_results`` (snippets in search-engine rank)."""
    results = row.get("search_results") or {}
    if isinstance(results, Mapping):
        snippets = _strings(results.get("snippets"))
    else:  # a list of {"snippets": ...} records
        snippets = [s for r in results if isinstance(r, Mapping) for s in _strings(r.get("snippets"))]
    return ReadingExample(
        id=f"{split}-{index}",
        question=str(row.get("question") or ""),
        passages=tuple(snippets),
        answers=tuple(_strings(row.get("answer"))),
        source=str(row.get("show_number") or ""),
    )


_QUASAR_CONTEXTS = ("context_long", "long_contexts", "context_short", "short_contexts", "contexts", "context")


def _ranked_contexts(value: Any) -> list[str]:
    """Quasar pseudo-documents in any of the shapes they come in: text, a list of texts, a list of
    ``[confidence, text]`` pairs or of ``{"confidence", "content"}`` records, or a record of lists;
    ranked by confidence (highest first) when there is one."""
    if isinstance(value, str):
        return _strings(value)
    if isinstance(value, Mapping):  # datasets' Sequence of records: a record of lists
        texts = value.get("content") or value.get("text") or []
        conf = value.get("confidence") or [0.0] * len(texts)
        pairs = list(zip(conf, texts))
    else:
        pairs = []
        for item in value or []:
            if isinstance(item, str):
                pairs.append((0.0, item))
            elif isinstance(item, Mapping):
                pairs.append((item.get("confidence") or 0.0, item.get("content") or item.get("text") or ""))
            elif isinstance(item, Sequence) and len(item) == 2:
                pairs.append((item[0], item[1]))
    ranked = sorted(enumerate(pairs), key=lambda ip: (-float(ip[1][0] or 0.0), ip[0]))
    return [t for _, (_, t) in ranked if isinstance(t, str) and t.strip()]


def _quasar(row: Mapping[str, Any], index: int, split: str) -> ReadingExample:
    """Quasar-T: ``uid``, ``question``, ``answer`` and its retrieved pseudo-documents."""
    column = next((c for c in _QUASAR_CONTEXTS if row.get(c)), None)
    return ReadingExample(
        id=str(row.get("uid") or f"{split}-{index}"),
        question=str(row.get("question") or ""),
        passages=tuple(_ranked_contexts(row.get(column)) if column else ()),
        answers=tuple(_strings(row.get("answer"))),
    )


def _wikihop(row: Mapping[str, Any], index: int, split: str) -> ReadingExample:
    """WikiHop: ``query`` ("relation subject"), ``supports`` (documents), ``candidates``, ``answer``."""
    relation, _, subject = str(row.get("query") or "").partition(" ")
    question = f"{relation.replace('_', ' ')} {subject}".strip()
    return ReadingExample(
        id=str(row.get("id") or f"{split}-{index}"),
        question=question,
        passages=tuple(_strings(row.get("supports"))),
        answers=tuple(_strings(row.get("answer"))),
        candidates=tuple(_strings(row.get("candidates"))),
    )


@dataclass(frozen=True)
class HubReader:
    default_config: str
    row: Callable[[Mapping[str, Any], int, str], ReadingExample]
    splits: Mapping[str, str]  # our split -> the dataset's split (missing ones are cut from train)


HUB_READERS: dict[str, HubReader] = {
    "kyunghyuncho/search_qa": HubReader(
        "train_test_val", _search_qa, {"train": "train", "dev": "validation", "test": "test"}
    ),
    "sagnikrayc/quasar": HubReader(
        "quasar-t", _quasar, {"train": "train", "dev": "validation", "test": "test"}
    ),
    # the WikiHop test set is hidden: its validation split is our test, dev is cut from train
    "community-datasets/qangaroo": HubReader("wikihop", _wikihop, {"train": "train", "test": "validation"}),
}


def examples_from_rows(dataset: str, rows: Iterable[Mapping[str, Any]], split: str) -> list[ReadingExample]:
    """The seam of the ``hf:`` loaders: rows (an already-loaded ``datasets.Dataset`` or a list of dicts
    in the dataset's schema) as ReadingExamples, unchecked."""
    reader = HUB_READERS.get(dataset)
    if reader is None:
        raise DataError(f"no reading-task reader for hf:{dataset}: choose from {', '.join(HUB_READERS)}")
    return [reader.row(r, i, split) for i, r in enumerate(rows)]


def _hub_name(rest: str) -> tuple[str, str]:
    parts = rest.replace(":", "/").strip("/").split("/")
    name, cfg = "/".join(parts[:2]), "/".join(parts[2:])
    if name not in HUB_READERS:
        raise DataError(
            f"hf:{rest} is not a known reading task: choose from "
            f"{', '.join('hf:' + n for n in HUB_READERS)} (optionally /CONFIG)"
        )
    return name, cfg or HUB_READERS[name].default_config


def hub_splits(dataset: str, loaded: Mapping[str, Any], cfg: ReadDataConfig, what: str) -> ReadingSplits:
    """ReadingSplits from an already-loaded dataset dict (``{split: rows}``), checked and completed."""
    reader = HUB_READERS[dataset]
    skipped: Counter[str] = Counter()
    parts: dict[str, list[ReadingExample]] = {}
    for ours, theirs in reader.splits.items():
        if theirs not in loaded:
            if ours == "train":
                raise DataError(f"{what} has no '{theirs}' split (splits: {', '.join(loaded)})")
            continue
        rows = loaded[theirs]
        if cfg.limit and len(rows) > cfg.limit:
            rows = rows.select(range(cfg.limit)) if hasattr(rows, "select") else rows[: cfg.limit]
        parts[ours] = check_examples(
            examples_from_rows(dataset, rows, theirs),
            f"{what} ({theirs})",
            passages=cfg.passages,
            skip=("answer_not_in_passages", "no_passages", "no_answer"),
            skipped=skipped,
        )
    train, dev, test = _complete_splits(parts, cfg)
    return ReadingSplits(dataset, what, tuple(train), tuple(dev), tuple(test), dict(skipped))


def _load_hub(rest: str, cfg: ReadDataConfig) -> ReadingSplits:
    dataset, config = _hub_name(rest)
    loaded = open_hub_dataset(dataset, config)
    return hub_splits(dataset, loaded, cfg, f"hf:{dataset}/{config}")


# ----------------------------------------------------------------------------------------------
# the one entry point
# ----------------------------------------------------------------------------------------------
def load_reading_task(spec: str, config: ReadDataConfig | None = None) -> ReadingSplits:
    """The reading task ``spec`` (see the module docstring), read with ``config``'s options
    (defaults: :class:`ReadDataConfig`). The built-in ``bbc_cloze`` task is built on first use."""
    cfg = config or ReadDataConfig(task=spec)
    spec = spec.strip()
    if spec == CLOZE_TASK:
        return cloze.load_bbc_cloze(cfg)
    if spec.startswith("hf:"):
        return _load_hub(spec[3:], cfg)
    if spec.startswith("jsonl:"):
        return _load_jsonl(spec[6:], cfg)
    if spec.endswith(".jsonl") or Path(spec).is_dir():
        return _load_jsonl(spec, cfg)
    raise DataError(
        f"unknown reading task '{spec}': pass {CLOZE_TASK}, jsonl:PATH or one of "
        f"{', '.join('hf:' + n for n in HUB_READERS)}"
    )
