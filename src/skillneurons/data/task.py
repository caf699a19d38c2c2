"""Labelled text-classification tasks, deterministic stratified splits, de-duplication.

A :class:`Task` is an immutable list of examples (one text, or a pair of texts) with integer class
labels, the class names and the natural-language label words used by verbalizers. A
:class:`TaskSplits` holds train/dev/test *indices* into a task; it is derived from a seed only,
stratified by label, and can be written next to results and checked against the data later.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skillneurons.errors import DataError
from skillneurons.files import atomic_write_json

SplitName = Literal["train", "dev", "test"]
SPLIT_NAMES: tuple[SplitName, SplitName, SplitName] = ("train", "dev", "test")
SPLITS_FORMAT = "skillneurons-splits"
SPLITS_FORMAT_VERSION = 1
_TEXT_HASH_CHARS = 16


def normalize_text(text: str) -> str:
    """Case-folded text with every run of whitespace collapsed to one space (used to find duplicates)."""
    return " ".join(text.casefold().split())


def example_key(text: str, text_b: str | None = None) -> str:
    """Normalised identity of one example, ``text`` and ``text_b`` kept apart (``\\x1f`` separator)."""
    key = normalize_text(text)
    return key if text_b is None else key + "\x1f" + normalize_text(text_b)


def example_hash(text: str, text_b: str | None = None) -> str:
    """Short SHA-256 (16 hex chars) of one example's exact text(s); used to check split files."""
    payload = text if text_b is None else text + "\x1f" + text_b
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:_TEXT_HASH_CHARS]


@dataclass(frozen=True)
class DedupStats:
    """What :func:`deduplicate` removed: counts of examples."""

    total: int  # examples before
    kept: int  # examples after
    duplicates: int  # extra copies of an example with the same label (first copy kept)
    conflicting: int  # examples dropped because the same text occurs with different labels

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "kept": self.kept,
            "duplicates_removed": self.duplicates,
            "conflicting_removed": self.conflicting,
        }


def deduplicate(
    texts: Sequence[str], texts_b: Sequence[str] | None, labels: Sequence[int]
) -> tuple[list[int], DedupStats]:
    """Indices to keep so that no normalised example occurs twice.

    Examples are compared after :func:`normalize_text` (case and whitespace). The first copy of an
    example is kept; an example whose copies carry different labels is dropped entirely (it is
    label noise, and keeping either copy would leak its twin across splits). Order is preserved.
    """
    keys = [example_key(t, None if texts_b is None else texts_b[i]) for i, t in enumerate(texts)]
    label_sets: dict[str, set[int]] = {}
    for k, y in zip(keys, labels):
        label_sets.setdefault(k, set()).add(int(y))
    seen: set[str] = set()
    keep: list[int] = []
    duplicates = conflicting = 0
    for i, k in enumerate(keys):
        if len(label_sets[k]) > 1:
            conflicting += 1
        elif k in seen:
            duplicates += 1
        else:
            seen.add(k)
            keep.append(i)
    return keep, DedupStats(len(keys), len(keep), duplicates, conflicting)


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Split the integer ``total`` proportionally to ``weights`` (Hamilton's method; ties to the
    earlier part)."""
    wsum = float(sum(weights))
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    raw = [total * w / wsum for w in weights]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda j: (-(raw[j] - counts[j]), j))
    for j in order[: total - sum(counts)]:
        counts[j] += 1
    return counts


def _allocate_class(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of the train/dev/test parts of one class of ``n`` examples.

    Proportional (largest remainder); every part with a non-zero fraction gets at least one example
    when the class has enough, taken from the largest part, so every class reaches dev and test.
    """
    counts = _largest_remainder(n, fractions)
    active = [j for j, f in enumerate(fractions) if f > 0]
    if n >= len(active):
        for j in active:
            if counts[j] == 0:
                donor = max(range(len(counts)), key=lambda k: counts[k])
                counts[donor] -= 1
                counts[j] += 1
    return counts


def stratified_sample(labels: Sequence[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a stratified random sample of ``size`` examples (class shares kept).

    Every class present gets at least one example when ``size`` allows it.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if size >= n:
        return np.arange(n)
    classes = sorted(set(y.tolist()))
    by_class = [np.flatnonzero(y == c) for c in classes]
    quota = _largest_remainder(size, [len(ix) for ix in by_class])
    if size >= len(classes):
        for j in range(len(quota)):
            if quota[j] == 0:
                donor = max(range(len(quota)), key=lambda k: quota[k])
                quota[donor] -= 1
                quota[j] += 1
    picked = [rng.choice(ix, size=q, replace=False) for ix, q in zip(by_class, quota) if q > 0]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if (
        len(fr) != 3
        or any(not math.isfinite(f) or f < 0 for f in fr)
        or abs(sum(fr) - 1.0) > 1e-6
        or fr[0] <= 0
    ):
        raise DataError(
            f"split fractions {tuple(fractions)} are invalid: give three non-negative numbers for "
            "train, dev and test that sum to 1, with train > 0 (e.g. 0.8 0.1 0.1)"
        )
    return fr[0], fr[1], fr[2]


@dataclass(frozen=True)
class Task:
    """A labelled text-classification task (single texts, or text pairs when ``texts_b`` is set).

    Sequences given as lists are stored as tuples. ``labels`` are class indices into
    ``label_names``; ``label_words[c]`` are the verbalizer words of class ``c`` (the first is the
    canonical one). Pair tasks keep their two segments apart: the tokenizer encodes them as a real
    pair, they are never concatenated into one string. ``load_spec`` is how
    :func:`~skillneurons.data.load_task` read it (its keyword arguments, the file path absolute), so a
    run can record its data and load it again; it is not part of the task's identity.
    """

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    label_words: tuple[tuple[str, ...], ...] = ()
    texts_b: tuple[str, ...] | None = None
    source: str = ""
    load_spec: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        texts = tuple(self.texts)
        labels = tuple(int(y) for y in self.labels)
        names = tuple(str(n) for n in self.label_names)
        words = (
            tuple(tuple(w) if not isinstance(w, str) else (w,) for w in self.label_words)
            if self.label_words
            else tuple((n,) for n in names)
        )
        texts_b = None if self.texts_b is None else tuple(self.texts_b)
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "label_names", names)
        object.__setattr__(self, "label_words", words)
        object.__setattr__(self, "texts_b", texts_b)
        where = f"task '{self.name}'"
        if not names:
            raise DataError(f"{where} has no label names: give at least two classes")
        if len(set(names)) != len(names):
            raise DataError(f"{where} has repeated label names {list(names)}: give each class once")
        if len(labels) != len(texts):
            raise DataError(
                f"{where} has {len(texts)} texts but {len(labels)} labels: give one label per text"
            )
        if texts_b is not None and len(texts_b) != len(texts):
            raise DataError(
                f"{where} has {len(texts)} first texts but {len(texts_b)} second texts: give one pair per "
                "example"
            )
        if len(words) != len(names) or any(
            len(w) == 0 or not all(isinstance(x, str) and x for x in w) for w in words
        ):
            raise DataError(
                f"{where} needs at least one non-empty label word per class ({len(names)} classes, "
                f"got {len(words)} word lists): give label words for every class"
            )
        bad_text = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad_text is None and texts_b is not None:
            bad_text = next((i for i, t in enumerate(texts_b) if not isinstance(t, str)), None)
        if bad_text is not None:
            raise DataError(f"{where}: example {bad_text} is not a string: texts must be str")
        k = len(names)
        bad = next((i for i, y in enumerate(labels) if not 0 <= y < k), None)
        if bad is not None:
            raise DataError(
                f"{where}: label {labels[bad]} of example {bad} is outside 0..{k - 1}: labels are class "
                "indices into label_names"
            )

    # -- basic properties -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (``len(label_names)``)."""
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """True for pair tasks (NLI, paraphrase): each example has ``texts[i]`` and ``texts_b[i]``."""
        return self.texts_b is not None

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> tuple[int, ...]:
        """Number of examples per class index."""
        counts = [0] * self.num_classes
        for y in self.labels:
            counts[y] += 1
        return tuple(counts)

    def require_classes(self, purpose: str) -> Task:
        """This task, or a one-line error when fewer than two classes have examples: ``purpose``
        (training, ranking) needs two; evaluating does not (one class is a valid test set)."""
        present = sorted(set(self.labels))
        if len(present) < 2:
            only = repr(self.label_names[present[0]]) if present else "none"
            raise DataError(
                f"task '{self.name}' has examples of one class only ({only}): {purpose} needs at least two "
                "(one class is enough to evaluate); check --label-column and the data"
            )
        return self

    def with_classes(self, names: Sequence[str]) -> Task:
        """The same examples with the classes ``names``, in that order, matched by name: every class of
        this task must be one of ``names`` (a one-line error otherwise). Label words are kept by name."""
        names = tuple(str(n) for n in names)
        if names == self.label_names:
            return self
        unknown = [n for n in self.label_names if n not in names]
        if unknown:
            raise DataError(
                f"task '{self.name}' has the classes {', '.join(unknown)}, which are not among "
                f"{', '.join(names)}: map them with --label-names"
            )
        index = {n: j for j, n in enumerate(names)}
        words = dict(zip(self.label_names, self.label_words))
        return Task(
            name=self.name,
            texts=self.texts,
            labels=tuple(index[self.label_names[y]] for y in self.labels),
            label_names=names,
            label_words=tuple(words.get(n, (n,)) for n in names),
            texts_b=self.texts_b,
            source=self.source,
        )

    def example(self, i: int) -> tuple[str, str | None, int]:
        """``(text, text_b or None, label)`` of example ``i``."""
        return self.texts[i], None if self.texts_b is None else self.texts_b[i], self.labels[i]

    # -- derived tasks ----------------------------------------------------------------------------
    def subset(self, indices: Sequence[int] | Iterable[int]) -> Task:
        """The task restricted to ``indices`` (in that order); names, label words and source are kept."""
        idx = [int(i) for i in indices]
        n = len(self.texts)
        bad = next((i for i in idx if not -n <= i < n), None)
        if bad is not None:
            raise DataError(
                f"index {bad} is out of range for task '{self.name}' with {n} examples: use indices "
                f"0..{n - 1}"
            )
        return Task(
            name=self.name,
            texts=tuple(self.texts[i] for i in idx),
            labels=tuple(self.labels[i] for i in idx),
            label_names=self.label_names,
            label_words=self.label_words,
            texts_b=None if self.texts_b is None else tuple(self.texts_b[i] for i in idx),
            source=self.source,
        )

    def deduplicated(self) -> tuple[Task, DedupStats]:
        """The task without duplicate examples (see :func:`deduplicate`) and what was removed."""
        keep, stats = deduplicate(self.texts, self.texts_b, self.labels)
        return (self if stats.kept == stats.total else self.subset(keep)), stats

    # -- identity ---------------------------------------------------------------------------------
    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(b"skillneurons-task-v1\n")
        payload = {
            "texts": list(self.texts),
            "texts_b": None if self.texts_b is None else list(self.texts_b),
            "labels": list(self.labels),
            "label_names": list(self.label_names),
        }
        h.update(
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        )
        return h.hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 (hex) over texts, second texts, labels and label names; stable across runs and machines."""
        return self._fingerprint

    def example_hashes(self) -> tuple[str, ...]:
        """Short SHA-256 of every example's exact text(s) (see :func:`example_hash`)."""
        tb = self.texts_b
        return tuple(example_hash(t, None if tb is None else tb[i]) for i, t in enumerate(self.texts))

    # -- splits -----------------------------------------------------------------------------------
    def split(
        self,
        seed: int,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        max_examples: int | None = None,
    ) -> TaskSplits:
        """Deterministic train/dev/test split, stratified by label, from ``seed`` only.

        ``numpy.random.default_rng(seed)`` draws, in this order: the stratified subsample of
        ``max_examples`` examples (if given and smaller than the task), then one permutation per class
        (class 0 first). Each class is cut proportionally to ``fractions`` (largest remainder), every
        non-empty part receiving at least one example of every class that has enough. Index lists are
        returned sorted: training code must shuffle.
        """
        fr = _check_fractions(fractions)
        n = len(self)
        if max_examples is not None and (isinstance(max_examples, bool) or int(max_examples) < 1):
            raise DataError(
                f"max_examples={max_examples} is invalid: give a positive number of examples, or none for all"
            )
        rng = np.random.default_rng(int(seed))
        y = np.asarray(self.labels, dtype=np.int64)
        pool = np.arange(n)
        if max_examples is not None and int(max_examples) < n:
            pool = stratified_sample(self.labels, int(max_examples), rng)
        parts: list[list[int]] = [[], [], []]
        for c in range(self.num_classes):
            idx = pool[y[pool] == c]
            if len(idx) == 0:
                continue
            idx = rng.permutation(idx)
            counts = _allocate_class(len(idx), fr)
            start = 0
            for j, size in enumerate(counts):
                parts[j].extend(int(i) for i in idx[start : start + size])
                start += size
        for j, name in enumerate(SPLIT_NAMES):
            if fr[j] > 0 and not parts[j]:
                raise DataError(
                    f"task '{self.name}' has too few examples ({len(pool)}) for a non-empty {name} split "
                    f"with fractions {fr}: use more examples or set the {name} fraction to 0"
                )
        return TaskSplits(
            task=self,
            seed=int(seed),
            fractions=fr,
            train=tuple(sorted(parts[0])),
            dev=tuple(sorted(parts[1])),
            test=tuple(sorted(parts[2])),
            max_examples=None if max_examples is None else int(max_examples),
        )


@dataclass(frozen=True)
class TaskSplits:
    """Train/dev/test indices into ``task``, made by :meth:`Task.split` or read from a split file."""

    task: Task = field(repr=False)
    seed: int
    fractions: tuple[float, float, float]
    train: tuple[int, ...]
    dev: tuple[int, ...]
    test: tuple[int, ...]
    max_examples: int | None = None

    def indices(self, name: SplitName) -> tuple[int, ...]:
        """Index tuple of part ``name``."""
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split part '{name}': use one of {', '.join(SPLIT_NAMES)}")
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]

    def part(self, name: SplitName) -> Task:
        """The examples of part ``name`` as a :class:`Task` (same name, label names and words)."""
        return self.task.subset(self.indices(name))

    def sizes(self) -> dict[str, int]:
        """Number of examples per part."""
        return {name: len(self.indices(name)) for name in SPLIT_NAMES}

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record: seed, fractions, task name + fingerprint, index lists and per-example
        text hashes."""
        hashes = self.task.example_hashes()
        return {
            "format": SPLITS_FORMAT,
            "format_version": SPLITS_FORMAT_VERSION,
            "task": self.task.name,
            "task_fingerprint": self.task.fingerprint(),
            "task_source": self.task.source,
            "num_examples": len(self.task),
            "label_names": list(self.task.label_names),
            "seed": self.seed,
            "fractions": list(self.fractions),
            "max_examples": self.max_examples,
            "sizes": self.sizes(),
            "train": list(self.train),
            "dev": list(self.dev),
            "test": list(self.test),
            "text_sha256": {name: [hashes[i] for i in self.indices(name)] for name in SPLIT_NAMES},
        }

    @classmethod
    def from_json(cls, task: Task, obj: Any, where: str = "split file") -> TaskSplits:
        """Rebuild splits of ``task`` from :meth:`to_json` output; checks that they were made for this
        data."""
        if not isinstance(obj, dict) or obj.get("format") != SPLITS_FORMAT:
            raise DataError(
                f"{where} is not a skillneurons split file: pass a file written by TaskSplits.save"
            )
        if int(obj.get("format_version", 0)) > SPLITS_FORMAT_VERSION:
            raise DataError(
                f"{where} was written by a newer skillneurons (format {obj.get('format_version')}): upgrade "
                "skillneurons"
            )
        fp = obj.get("task_fingerprint")
        if fp != task.fingerprint():
            raise DataError(
                f"{where} was made for other data (task '{obj.get('task')}', {obj.get('num_examples')} "
                f"examples, fingerprint {str(fp)[:12]}) than the loaded task '{task.name}' ({len(task)} "
                f"examples, fingerprint {task.fingerprint()[:12]}): load the same data, or make a new split"
            )
        n = len(task)
        parts: dict[str, tuple[int, ...]] = {}
        try:
            for name in SPLIT_NAMES:
                idx = tuple(int(i) for i in obj[name])
                if any(not 0 <= i < n for i in idx):
                    raise ValueError(f"an index of '{name}' is outside 0..{n - 1}")
                parts[name] = idx
            seed = int(obj["seed"])
            fractions = _check_fractions(obj["fractions"])
            max_examples = obj.get("max_examples")
            max_examples = None if max_examples is None else int(max_examples)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where} is malformed ({e}): re-create it with TaskSplits.save") from e
        total = sum(len(p) for p in parts.values())
        if len(set().union(*parts.values())) != total:
            raise DataError(f"{where} puts some examples in two parts: re-create it with TaskSplits.save")
        stored = obj.get("text_sha256")
        if isinstance(stored, dict):
            hashes = task.example_hashes()
            for name in SPLIT_NAMES:
                if [hashes[i] for i in parts[name]] != list(stored.get(name, [])):
                    raise DataError(
                        f"{where}: the text hashes of the {name} part do not match the data at its indices "
                        "(the file was edited or corrupted): re-create it with TaskSplits.save"
                    )
        return cls(task, seed, fractions, parts["train"], parts["dev"], parts["test"], max_examples)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, task: Task, path: str | Path) -> TaskSplits:
        """Read a split file written by :meth:`save` and check it against ``task``."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"split file {p} not found: pass the path of a file written by TaskSplits.save")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"split file {p} is not valid JSON ({e}): it is corrupted; re-create it") from e
        return cls.from_json(task, obj, where=f"split file {p}")


def check_disjoint(a: Task, b: Task, what_a: str = "training", what_b: str = "dev") -> None:
    """Raise :class:`DataError` if an example of ``b`` also occurs in ``a`` (case/whitespace-insensitive).

    Used to guarantee that neurons are ranked, and prompts selected, on examples never trained on.
    """
    seen = {example_key(t, None if a.texts_b is None else a.texts_b[i]) for i, t in enumerate(a.texts)}
    shared = [
        i
        for i, t in enumerate(b.texts)
        if example_key(t, None if b.texts_b is None else b.texts_b[i]) in seen
    ]
    if shared:
        sample = " ".join(b.texts[shared[0]].split())[:60]
        raise DataError(
            f"{len(shared)} of the {len(b)} {what_b} examples also occur in the {what_a} examples "
            f"(e.g. {sample!r}): remove the duplicates from the data (load_task de-duplicates by default) "
            "or use disjoint splits"
        )
