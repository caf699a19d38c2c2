"""Reading-comprehension data: the example type and its checks, JSONL, the hf: readers on fixture rows,
and the BBC News cloze construction (on a small synthetic corpus; one real-data test)."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from skillneurons.data.builtin import Article
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading import cloze
from skillneurons.reading.cloze import (
    PLACEHOLDER,
    build_bbc_cloze,
    build_cloze,
    entity_candidates,
    entity_spans,
    load_bbc_cloze,
    name_stats,
    shares_ngram,
    split_sentences,
    with_entity_candidates,
)
from skillneurons.reading.data import check_examples, examples_from_rows, hub_splits, load_reading_task
from skillneurons.reading.data_config import ReadDataConfig
from skillneurons.reading.examples import (
    ReadingExample,
    find_answer_spans,
    normalized_words,
    read_jsonl,
    split_by_group,
    tokenize,
    write_jsonl,
)
from skillneurons.reading.run import most_frequent_entity, window_overlap_entity

FIXTURES = Path(__file__).parent / "fixtures" / "reading"


def _ex(i: int, answer: str = "Paris", source: str = "", passages: tuple[str, ...] = ()) -> ReadingExample:
    return ReadingExample(
        id=f"q{i}",
        question=f"Which city is question {i} about?",
        passages=passages or (f"Passage {i} mentions {answer} twice: {answer}.", "Another passage."),
        answers=(answer,),
        source=source,
    )


# ---- the example type -----------------------------------------------------------------------------
def test_find_answer_spans_normalised_and_inclusive() -> None:
    toks = tokenize("He met the Tony Blair, then Tony blair's aide; not Tony.")
    assert find_answer_spans(toks, tokenize("tony Blair")) == [(3, 4), (7, 8)]
    assert find_answer_spans(toks, tokenize("The Tony Blair")) == [(3, 4), (7, 8)]  # article ignored
    assert find_answer_spans(toks, tokenize("Gordon")) == []
    assert find_answer_spans(toks, tokenize("the")) == []  # normalises to nothing: no span


@pytest.mark.parametrize(
    ("example", "message"),
    [
        (ReadingExample("q", " ", ("text",), ("x",)), "empty question"),
        (ReadingExample("q", "who?", (), ("x",)), "no .non-empty. passages"),
        (ReadingExample("q", "who?", ("", " "), ("x",)), "no .non-empty. passages"),
        (ReadingExample("q", "who?", ("Paris is big",), ()), "no answer text"),
        (ReadingExample("q", "who?", ("Paris is big",), ("London",)), "no answer that occurs"),
        (ReadingExample("q", "who?", ("Paris",), ("Rome",), ("Paris", "Oslo")), "not among its candidates"),
    ],
)
def test_validate_one_line_errors(example: ReadingExample, message: str) -> None:
    with pytest.raises(DataError, match=message) as e:
        example.validate()
    assert "\n" not in str(e.value)


def test_kinds() -> None:
    assert _ex(0).validate().kind() == "extractive"
    mc = ReadingExample("q", "who?", ("Oslo is cold",), ("paris",), ("Paris", "Oslo"))
    assert mc.validate().kind() == "choice"  # the answer need not be in the passages


def test_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    exs = [_ex(i, source=f"a{i % 2}") for i in range(4)]
    path = write_jsonl(tmp_path / "x.jsonl", exs)
    assert read_jsonl(path) == exs
    rec = json.loads(path.read_text().splitlines()[0])
    assert set(rec) == {"id", "question", "passages", "answers", "candidates", "source"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataError, match="line 5 is not valid JSON"):
        read_jsonl(bad)
    bad.write_text('{"id": "q", "question": "q?", "passages": "not a list"}\n')
    with pytest.raises(DataError, match="'passages' must be a list of strings"):
        read_jsonl(bad)
    bad.write_text('{"question": "q?", "passages": ["p"]}\n')
    with pytest.raises(DataError, match="'id' is missing"):
        read_jsonl(bad)
    bad.write_text("\n")
    with pytest.raises(DataError, match="holds no examples"):
        read_jsonl(bad)


def test_check_examples_skips_and_counts_answerless_and_refuses_the_rest() -> None:
    skipped: Counter[str] = Counter()
    long = _ex(1, passages=("Nothing here.", "Still nothing.", "Paris at last."))
    kept = check_examples(
        [_ex(0), long, _ex(2, answer="Rome", passages=("Only Paris here.",))],
        "t",
        passages=2,
        skipped=skipped,
    )
    # q1's answer is in its third passage only, cut by passages=2; q2 names an answer its passages lack
    assert [e.id for e in kept] == ["q0"] and skipped == {"answer_not_in_passages": 2}
    with pytest.raises(DataError, match="t: example 'q' has an empty question"):
        check_examples([ReadingExample("q", "", ("p",), ("p",))], "t")
    with pytest.raises(DataError, match="occurs twice"):
        check_examples([_ex(0), _ex(0)], "t")
    mc = ReadingExample("m", "who?", ("Oslo",), ("Oslo",), ("Oslo", "Rome"))
    with pytest.raises(DataError, match="one task holds one kind"):
        check_examples([_ex(0), mc], "t")


def test_split_by_group_keeps_groups_together_and_is_seeded() -> None:
    exs = [_ex(i, source=f"art{i // 3}") for i in range(60)]
    train, dev, test = split_by_group(exs, seed=1, dev_fraction=0.1, test_fraction=0.1)
    groups = [{e.source for e in part} for part in (train, dev, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert (len(groups[1]), len(groups[2])) == (2, 2) and len(train) + len(dev) + len(test) == 60
    assert (train, dev, test) == split_by_group(exs, seed=1, dev_fraction=0.1, test_fraction=0.1)
    assert split_by_group(exs, seed=2, dev_fraction=0.1, test_fraction=0.1)[2] != test


def test_load_reading_task_jsonl_file_and_folder(tmp_path: Path) -> None:
    exs = [_ex(i, source=f"art{i // 2}") for i in range(40)] + [
        _ex(99, answer="Rome", passages=("Only Paris here.",))
    ]
    write_jsonl(tmp_path / "all.jsonl", exs)
    s = load_reading_task(f"jsonl:{tmp_path / 'all.jsonl'}")
    assert s.sizes() == {"train": 32, "dev": 4, "test": 4} and s.skipped == {"answer_not_in_passages": 1}
    assert not {e.source for e in s.train} & {e.source for e in s.test}
    folder = tmp_path / "task"
    write_jsonl(folder / "train.jsonl", exs[:30])
    write_jsonl(folder / "validation.jsonl", exs[30:35])
    s = load_reading_task(str(folder), ReadDataConfig(task=str(folder), test_fraction=0.2, limit=7))
    assert len(s.dev) == 5 and len(s.train) == 7 and len(s.test) == 6  # 3 of 15 articles, 2 each
    assert s.kind() == "extractive"
    with pytest.raises(DataError, match=r"has no train\.jsonl"):
        load_reading_task(str(tmp_path / "task" / ".."))
    with pytest.raises(DataError, match="unknown reading task 'nope'"):
        load_reading_task("nope")
    with pytest.raises(DataError, match="is not a known reading task"):
        load_reading_task("hf:someone/squad")


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="leave no training data"):
        ReadDataConfig(dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match="--max-words 3 is below --min-words 8"):
        ReadDataConfig(max_words=3)
    with pytest.raises(ConfigError, match="--passages"):
        ReadDataConfig(passages=0)


# ---- hf: readers on fixture rows in each dataset's schema --------------------------------------------
def _rows(name: str) -> list[dict[str, object]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_search_qa_rows() -> None:
    rows = _rows("search_qa")
    [first, *_] = examples_from_rows("kyunghyuncho/search_qa", rows, "train")
    assert first.question.startswith("This Polish astronomer") and first.answers == ("Copernicus",)
    assert len(first.passages) == 2 and first.passages[0].startswith("Nicolaus Copernicus")  # None dropped
    s = hub_splits(
        "kyunghyuncho/search_qa",
        {"train": rows, "validation": rows[:2], "test": rows[1:2]},
        ReadDataConfig(task="hf:kyunghyuncho/search_qa"),
        "hf:kyunghyuncho/search_qa",
    )
    assert s.sizes() == {"train": 2, "dev": 2, "test": 1}
    assert s.skipped == {"answer_not_in_passages": 1, "no_passages": 1}
    assert s.train[1].answers == ("the Nile",) and s.kind() == "extractive"


def test_quasar_rows_ranked_by_confidence_from_a_datasets_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    rows = _rows("quasar")
    exs = examples_from_rows("sagnikrayc/quasar", rows, "train")
    assert exs[0].id == "s0q11" and "Sarajevo" in exs[0].passages[0]  # the 0.9-confidence one first
    assert exs[1].passages[0].startswith("Lisbon")
    loaded = {"train": datasets.Dataset.from_list(rows[:1]), "validation": rows[1:], "test": rows[1:2]}
    s = hub_splits("sagnikrayc/quasar", loaded, ReadDataConfig(passages=1), "hf:sagnikrayc/quasar")
    assert [e.id for e in s.train] == ["s0q11"] and len(s.train[0].passages) == 1
    assert [e.id for e in s.dev] == ["s0q12"] and s.skipped == {"answer_not_in_passages": 1}


def test_wikihop_rows_and_dev_cut_from_train() -> None:
    rows = _rows("wikihop")
    exs = examples_from_rows("community-datasets/qangaroo", rows, "train")
    assert exs[0].question == "country of citizenship gavrilo princip"
    assert exs[0].kind() == "choice" and exs[0].answers == ("austria-hungary",)
    cfg = ReadDataConfig(dev_fraction=0.34, test_fraction=0.0)
    s = hub_splits("community-datasets/qangaroo", {"train": rows[:3], "validation": rows[3:]}, cfg, "wh")
    assert s.sizes() == {"train": 2, "dev": 1, "test": 1} and s.kind() == "choice"
    with pytest.raises(DataError, match="no 'train' split"):
        hub_splits("community-datasets/qangaroo", {"validation": rows}, cfg, "wh")


# ---- the cloze construction -------------------------------------------------------------------------
_PEOPLE = ["Maria Santos", "Oskar Lindqvist", "Tessa Orwell", "Ravi Menon", "Julia Brandt", "Hugo Farrell"]
_PLACES = ["Lisbon", "Dunmore", "Kestrel Bay", "Ravensworth", "Port Alden", "Marlow"]
_FIRMS = ["Acme Holdings", "Dunmore Bank", "Kestrel United", "Northwind Energy", "Halcyon Media"]
_NOUNS = ["profits", "shares", "exports", "prices", "sales", "wages", "rents", "fares"]
_VERBS = ["said", "warned", "claimed", "told reporters", "announced", "confirmed"]


def _sentence(rng: random.Random) -> str:
    who, firm, where = rng.choice(_PEOPLE), rng.choice(_FIRMS), rng.choice(_PLACES)
    noun, verb, n = rng.choice(_NOUNS), rng.choice(_VERBS), rng.randint(2, 40)
    forms = [
        f"On Tuesday {who} {verb} that {noun} at {firm} in {where} would rise by {n}% next year.",
        f"The {noun} of {firm} fell by {n}% in {where}, {who} {verb} on the radio.",
        f"Analysts in {where} expect {firm} to cut {noun} by {n}% before {who} leaves.",
        f"British officials {verb} the {noun} in {where} were {n}% higher than {firm} had hoped.",
    ]
    return rng.choice(forms)


def _corpus(n_articles: int = 14, seed: int = 0) -> list[Article]:
    rng = random.Random(seed)
    arts = []
    for a in range(n_articles):
        paras = tuple(" ".join(_sentence(rng) for _ in range(3)) + f" Report {a}-{p}." for p in range(4))
        arts.append(Article(f"news/{a:03d}", "business", f"Title {a}", paras))
    # a later article quotes a sentence of article 0 verbatim: the leakage guard must drop that paragraph
    quoted = arts[0].paragraphs[0].split(". ")[0] + "."
    arts.append(Article("news/copy", "business", "Copy", (f"As reported earlier: {quoted} More news.",)))
    return arts


def test_split_sentences_and_entities() -> None:
    assert split_sentences('He left. "Then she came." Mr Blair said 3.5% was fine!') == [
        "He left.",
        '"Then she came."',
        "Mr Blair said 3.5% was fine!",
    ]
    text = [
        "However the British government said Mr Tony Blair met British Airways in Paris on Monday.",
        "Later, Blair and the Bank of England met in Paris and British Airways agreed.",
        "The Italian minister joined the Americans and Blair in March.",
    ]
    toks = [tokenize(t) for t in text]
    stats = name_stats(toks)
    spans = [[" ".join(t[i:j]) for i, j in entity_spans(t, stats)] for t in toks]
    # "However" starts the sentence and is no name; "British" before a lower-case noun is a demonym;
    # "Mr" is stripped; "Monday"/"March" are dropped; "Italian", "Americans" are demonyms
    assert spans[0] == ["Tony Blair", "British Airways", "Paris"]
    assert spans[1] == ["Blair", "Bank of England", "Paris", "British Airways"]
    assert spans[2] == ["Blair"]


def test_entity_candidates_most_frequent_first_without_the_question_words() -> None:
    ex = ReadingExample(
        "a",
        "Blair said @placeholder agreed.",
        (
            "Later, Blair and the Bank of England met in Paris and British Airways agreed.",
            "The minister joined Blair in Paris. Paris was calm.",
        ),
        ("Paris",),
    )
    (cands,) = entity_candidates([ex])
    assert cands[0] == "Paris" and "Blair" not in cands  # 3 mentions; a question word is no candidate
    assert set(cands) == {"Paris", "Bank of England", "British Airways"}
    assert cands.index("Bank of England") < cands.index("British Airways")  # a tie: first seen first
    (mc,) = with_entity_candidates([ex])
    assert mc.kind() == "choice" and mc.candidates == cands and mc.answers == ex.answers
    base = most_frequent_entity([ex, replace(ex, id="b", answers=("British Airways",))])
    assert base["n"] == 2 and base["em"] == 0.5  # the baseline guesses the first candidate


def test_window_overlap_baseline_prefers_the_candidate_near_the_question_words() -> None:
    ex = ReadingExample(
        "a",
        "@placeholder opened a new factory in Leeds making electric buses.",
        (
            "It rained in Paris. We saw Paris. They love Paris.",  # the most frequent, far from the question
            "The firm Volvo opened its factory for electric buses.",
        ),
        ("Volvo",),
    )
    assert most_frequent_entity([ex])["em"] == 0.0  # frequency says Paris
    assert window_overlap_entity([ex], window=5)["em"] == 1.0  # opened, factory, electric, buses
    with pytest.raises(ConfigError, match="window 0"):
        window_overlap_entity([ex], window=0)


def test_candidates_option_is_the_cloze_tasks() -> None:
    with pytest.raises(ConfigError, match="--candidates entities is the cloze task's entity rule"):
        ReadDataConfig(task="jsonl:x.jsonl", candidates="entities")
    with pytest.raises(ConfigError, match="--candidates"):
        ReadDataConfig(candidates="words")


def test_shares_ngram() -> None:
    a = normalized_words("one two three four five six seven eight nine")
    assert shares_ngram(a, normalized_words("x two three four five six seven eight nine y"), 8)
    assert not shares_ngram(a, normalized_words("x two three four five six seven eight y"), 8)
    assert not shares_ngram(a, normalized_words("one two three"), 8)


@pytest.fixture(scope="module")
def built() -> tuple[list[Article], dict[str, list[ReadingExample]], dict[str, object]]:
    arts = _corpus()
    splits, stats = build_cloze(arts, ReadDataConfig(passages=3))
    return arts, splits, stats


def test_cloze_questions_answers_and_passages(built) -> None:  # type: ignore[no-untyped-def]
    arts, splits, stats = built
    examples = [e for s in splits.values() for e in s]
    assert len(examples) == stats["questions"] > 20
    by_id = {a.id: a for a in arts}
    for e in examples:
        assert e.question.count(PLACEHOLDER) == 1 and len(e.passages) == 3
        assert e.validate() is e  # the answer occurs in its passages
        source = by_id[e.source]
        # BM25 never returns a paragraph of the source article
        assert not set(e.passages) & set(source.paragraphs)
        original = normalized_words(e.question.replace(PLACEHOLDER, e.answers[0]))
        assert not any(shares_ngram(original, normalized_words(p), 8) for p in e.passages)
    assert stats["mean_answer_occurrences"] >= 1 and stats["articles"] == len(arts)


def test_cloze_leakage_guard_drops_the_quoting_paragraph(built) -> None:  # type: ignore[no-untyped-def]
    arts, splits, stats = built
    copy = arts[-1].paragraphs[0]
    quoted = arts[0].paragraphs[0].split(". ")[0] + "."
    leaked = [
        e for s in splits.values() for e in s if e.question.replace(PLACEHOLDER, e.answers[0]) == quoted
    ]
    assert stats["passages_dropped_leak"] >= 1
    for e in leaked:
        assert copy not in e.passages
    # without the guard (a run longer than any sentence), the quoting paragraph is retrieved
    splits2, _ = build_cloze(arts, ReadDataConfig(passages=3, leak_ngram=100))
    found = [
        e for s in splits2.values() for e in s if e.question.replace(PLACEHOLDER, e.answers[0]) == quoted
    ]
    assert leaked and found
    assert any(copy in e.passages for e in found)


def test_cloze_split_by_article(built) -> None:  # type: ignore[no-untyped-def]
    _, splits, _ = built
    sources = [{e.source for e in splits[s]} for s in ("train", "dev", "test")]
    assert sources[1] and sources[2]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])


def test_cloze_is_deterministic_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arts = _corpus()
    monkeypatch.setattr(cloze, "bbc_articles", lambda: arts)
    cfg = ReadDataConfig(passages=3)
    m1 = build_bbc_cloze(cfg, folder=tmp_path / "a")
    m2 = build_bbc_cloze(cfg, folder=tmp_path / "b")
    for s in ("train", "dev", "test"):
        assert (tmp_path / "a" / f"{s}.jsonl").read_bytes() == (tmp_path / "b" / f"{s}.jsonl").read_bytes()
    assert m1["files"] == m2["files"] and m1["sizes"]["train"] > 0
    before = (tmp_path / "a" / "manifest.json").stat().st_mtime_ns
    assert build_bbc_cloze(cfg, folder=tmp_path / "a")["files"] == m1["files"]  # cached: not rebuilt
    assert (tmp_path / "a" / "manifest.json").stat().st_mtime_ns == before
    other = build_bbc_cloze(ReadDataConfig(passages=3, seed=5), folder=tmp_path / "a")  # new options
    assert other["options"]["seed"] == 5 and other["files"] != m1["files"]
    s = load_bbc_cloze(ReadDataConfig(passages=3, seed=5), folder=tmp_path / "a")
    assert s.sizes() == other["sizes"] and s.info["version"] == cloze.CLOZE_VERSION
    (tmp_path / "a" / "dev.jsonl").write_text("")
    with pytest.raises(DataError, match="does not match its manifest"):
        load_bbc_cloze(ReadDataConfig(passages=3, seed=5), folder=tmp_path / "a")


def test_read_data_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from skillneurons.cli import main

    arts = _corpus()
    monkeypatch.setattr(cloze, "bbc_articles", lambda: arts)
    monkeypatch.setenv("SKILLNEURONS_HOME", str(tmp_path))
    assert main(["read", "data", "build", "--passages", "3"]) == 0
    out = capsys.readouterr().out
    assert "bbc_cloze v1:" in out and "splits (by source article)" in out
    assert (tmp_path / "data" / "bbc_cloze" / "manifest.json").is_file()
    assert main(["read", "data", "show", "--passages", "3", "-q"]) == 0
    assert "mean answer occurrences" in capsys.readouterr().out
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [_ex(i, source=f"a{i}") for i in range(10)])
    assert main(["read", "data", "show", "--task", f"jsonl:{path}"]) == 0
    assert "splits: train 8, dev 1, test 1" in capsys.readouterr().out
    assert main(["read", "data", "build", "--task", f"jsonl:{path}"]) == 2
    assert main(["read", "data", "show", "--passages", "0"]) == 2
    assert "--passages" in capsys.readouterr().err


@pytest.mark.real_model
@pytest.mark.slow
def test_real_bbc_cloze(tmp_path: Path) -> None:
    """The real task (about 20 s on one core): the prototype's figures, split by article."""
    m = build_bbc_cloze(ReadDataConfig(), folder=tmp_path)
    st = m["statistics"]
    assert st["articles"] >= 2100 and 9000 <= st["questions"] <= 13000
    assert (
        3.0 <= st["mean_answer_occurrences"] <= 4.5 and 700 <= st["mean_words_per_question_passages"] <= 1100
    )
    s = load_bbc_cloze(ReadDataConfig(), folder=tmp_path)
    sources = [{e.source for e in s.split(x)} for x in ("train", "dev", "test")]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    sample = random.Random(0).sample(list(s.test), 200)
    assert all(e.validate() is e and e.source not in {p for p in e.passages} for e in sample)
