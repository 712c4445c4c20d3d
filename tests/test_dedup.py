"""Near-duplicate removal at publish time (``synth.filters.dedup``): the similarity rule, its independence of row order,
and what a run publishes (real EntityCS runs through the store; the shipped CLDR lexicon, no model)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.config_file import load_config
from synth.filters.dedup import Deduplicator, row_texts
from synth.paths import DATA_DIR
from synth.pipeline import RecipeRun, process_batch, run_recipe

SAMPLE = DATA_DIR / "samples" / "wiki_sentences.jsonl"

# The same question about different things: distinct rows, however alike (3-gram Jaccard 0.62 and 0.64).
TEMPLATED = [
    ("en", "a", "What is the capital of France?"),
    ("en", "b", "What is the capital of Germany?"),
    ("zh", "c", "北京大学是哪一年成立的？"),
    ("zh", "d", "清华大学是哪一年成立的？"),
]
# A pool with exact, case/punctuation and one-word near-duplicates, in three scripts.
POOL = [
    ("de", "Wer hat die Universität Heidelberg gegründet?"),
    ("de", "wer hat die Universität Heidelberg gegründet"),
    ("de", "Wann wurde die Universität Heidelberg gegründet und von wem?"),
    ("de", "Wie hoch ist der Kölner Dom?"),
    ("en", "Which award did the British television series Long Lost Family win?"),
    ("en", "Which award did the British television series Long Lost Family won?"),
    ("en", "Which award did the British television series Long Lost Family win?"),
    ("en", "Who presents Long Lost Family?"),
    ("ja", "東京タワーの高さは何メートルですか？"),
    ("ja", "東京タワーの高さは何メートルですか"),
    ("ja", "富士山の高さは何メートルですか？"),
    ("th", "กรุงเทพมหานครก่อตั้งขึ้นเมื่อปีใด"),
    ("th", "กรุงเทพมหานครก่อตั้งขึ้นเมื่อปีใด?"),
]


def dedup(rows, threshold=0.8, num_perm=64):
    return Deduplicator(threshold, num_perm).duplicates(rows)


# --- the rule -------------------------------------------------------------------------------------------------


def test_an_exact_duplicate_names_the_row_first_in_id_order():
    assert dedup([("de", "b", "Wer hat Berlin gegründet?"), ("de", "a", "Wer hat Berlin gegründet?")]) == {"b": "a"}


def test_case_punctuation_and_spacing_do_not_make_a_text_new():
    rows = [("de", "a", "Wer hat Berlin gegründet?"), ("de", "b", "  WER hat Berlin,  gegründet ")]
    assert dedup(rows) == {"b": "a"}


def test_a_near_duplicate_above_the_threshold_is_found():
    rows = [
        ("en", "a", "Which award did the British television series Long Lost Family win?"),
        ("en", "b", "Which award did the British television series Long Lost Family won?"),  # Jaccard 0.94
    ]
    assert dedup(rows) == {"b": "a"}


def test_distinct_texts_below_the_threshold_are_all_kept():
    assert dedup(TEMPLATED) == {}


ZH = "北京大学创办于1898年，初名京师大学堂，是中国近代第一所国立综合性大学，也是当时中国最高教育行政机关。"


def test_texts_without_spaces_are_compared_by_characters():
    rows = [
        ("zh", "a", ZH),
        ("zh", "b", ZH.replace("创办", "创建")),  # one character changed: 3-gram Jaccard 0.88
        ("ja", "c", "東京タワーの高さは何メートルですか？"),
        ("ja", "d", "東京タワーの高さは何メートルですか"),
        ("th", "e", "กรุงเทพมหานครก่อตั้งขึ้นเมื่อปีใด"),
        ("th", "f", "กรุงเทพมหานครก่อตั้งขึ้นเมื่อปีใด?"),
    ]
    assert dedup(rows) == {"b": "a", "d": "c", "f": "e"}


def test_the_same_text_in_two_languages_is_not_a_duplicate():
    assert dedup([("de", "a", "Berlin"), ("fr", "b", "Berlin")]) == {}


def test_a_row_is_compared_with_kept_rows_only():
    # b is a near-duplicate of a (estimated 0.88), c of b (0.91) but not of a (0.80): c is kept, as b is
    # not published for c to duplicate
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma".split()
    a = " ".join(words)
    b = " ".join(words[:-1] + ["tau"])
    c = " ".join(["rho"] + words[1:-1] + ["tau"])
    assert dedup([("x", "a", a), ("x", "b", b), ("x", "c", c)], threshold=0.85, num_perm=128) == {"b": "a"}


def test_blank_texts_are_left_alone():
    assert dedup([("de", "a", ""), ("de", "b", "?!"), ("de", "c", None), ("de", "d", " ")]) == {}


def test_a_dialogue_is_compared_by_its_utterances_joined():
    turns = pa.array(
        [[{"utterance": "Hallo."}, {"utterance": "Wie kann ich helfen?"}], [], None],
        pa.list_(pa.struct([("utterance", pa.string())])),
    )
    assert row_texts(pa.table({"turns": turns}), ["turns.utterance"]) == ["Hallo.\nWie kann ich helfen?", None, None]


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(
        st.text("0123456789abcdef", min_size=6, max_size=6), min_size=len(POOL), max_size=len(POOL), unique=True
    ),
    order=st.permutations(range(len(POOL))),
)
def test_any_order_of_the_rows_gives_the_same_split(ids, order):
    rows = [(group, row_id, text) for row_id, (group, text) in zip(ids, POOL)]
    assert dedup([rows[i] for i in order]) == dedup(sorted(rows, key=lambda row: row[1]))


# --- runs through the store ----------------------------------------------------------------------------------

REFERENCE = "The anarchists from Petrograd and Moscow fled to Ukraine."


def sentence(sentence_id: str, text: str, title: str = "Ukraine") -> dict:
    start = text.index(title)
    return {
        "sentence_id": sentence_id,
        "text": text,
        "entities": [{"title": title, "mention": title, "start": start, "end": start + len(title)}],
    }


def write_input(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def config(tmp: Path, input_path: Path, out: Path, *, batch_size: int = 16, **dedup_settings):
    overrides = {
        "input.path": str(input_path),
        "languages": ["de"],
        "entitycs.languages_per_sentence": 1,
        "output.dir": str(out),
        "runner.batch_size": batch_size,
        **{f"dedup.{key}": value for key, value in dedup_settings.items()},
    }
    return load_config(DATA_DIR / "configs" / "entitycs.yaml", overrides=overrides)


def published(out: Path) -> list[tuple]:
    """(group, id, reject_reason, duplicate_of) of every row the committed generation holds."""
    state = json.loads((out / "manifest.json").read_text())["recipes"]["entitycs"]
    rows = []
    for shard in state["shards"]:
        table = pq.read_table(out / shard["path"]).to_pylist()
        rows += [(shard["group"], r["id"], r.get("reject_reason"), r.get("duplicate_of")) for r in table]
    return sorted(rows, key=lambda row: tuple(str(value) for value in row))


def duplicated_input(tmp: Path) -> Path:
    """60 sample sentences, 20 of them again under new ids (10 exact, 10 with a word appended)."""
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:60]]
    copies = [{**r, "sentence_id": f"copy-{i}"} for i, r in enumerate(records[:20:2])]
    edited = [{**r, "sentence_id": f"edit-{i}", "text": r["text"] + " too"} for i, r in enumerate(records[1:20:2])]
    return write_input(tmp / "duplicated.jsonl", records + copies + edited)


def test_the_same_sentence_under_two_ids_is_kept_once_and_the_other_names_it(tmp_path):
    path = write_input(tmp_path / "in.jsonl", [sentence("s1", REFERENCE), sentence("s2", REFERENCE)])
    out = tmp_path / "out"
    run_recipe(config(tmp_path, path, out))
    rows = published(out)
    (kept_group, kept_id, _, _), = [row for row in rows if row[0] == "de"]
    assert [row[2:] for row in rows if row[0] == "_rejected"] == [("duplicate", kept_id)]


def test_the_run_summary_counts_duplicates_per_reason_and_language(tmp_path):
    path = write_input(tmp_path / "in.jsonl", [sentence("s1", REFERENCE), sentence("s2", REFERENCE)])
    summary = run_recipe(config(tmp_path, path, tmp_path / "out"))
    assert (summary.kept, summary.rejected, summary.reject_reasons) == ({"de": 1}, {"de": 1}, {"duplicate": 1})


def test_kept_shards_have_no_dedup_columns(tmp_path):
    path = write_input(tmp_path / "in.jsonl", [sentence("s1", REFERENCE), sentence("s2", REFERENCE)])
    out = tmp_path / "out"
    run_recipe(config(tmp_path, path, out))
    names = pq.read_schema(next((out / "entitycs" / "de").glob("*.parquet"))).names
    assert {"reject_reason", "duplicate_of"}.isdisjoint(names)


def test_with_dedup_disabled_both_copies_are_kept(tmp_path):
    path = write_input(tmp_path / "in.jsonl", [sentence("s1", REFERENCE), sentence("s2", REFERENCE)])
    summary = run_recipe(config(tmp_path, path, tmp_path / "out", enabled=False))
    assert summary.kept == {"de": 2}


@pytest.mark.parametrize(("batch_size", "seed"), [(1, 0), (5, 1), (7, 2), (33, 3)])
def test_batches_committed_in_any_order_publish_the_direct_runs_rows(tmp_path, batch_size, seed):
    path = duplicated_input(tmp_path)
    direct_out = tmp_path / "direct"
    run_recipe(config(tmp_path, path, direct_out))
    out = tmp_path / "shuffled"
    shuffled = config(tmp_path, path, out, batch_size=batch_size)
    with RecipeRun(shuffled) as run:
        batches = list(run.pending_batches())
        random.Random(seed).shuffle(batches)  # each batch is one segment: the ledger's order is shuffled too
        for batch in batches:
            run.record(process_batch(shuffled, run.out, batch))
        run.finalize()
    assert published(out) == published(direct_out)


def test_the_sample_with_copies_publishes_each_copy_as_a_duplicate_of_its_original(tmp_path):
    out = tmp_path / "out"
    run_recipe(config(tmp_path, duplicated_input(tmp_path), out))
    rows = {}  # sentence_id -> (group, id, reject_reason, duplicate_of)
    for path in (out / "entitycs").glob("*/*.parquet"):
        for r in pq.read_table(path).to_pylist():
            rows[r["sentence_id"]] = (path.parent.name, r["id"], r.get("reject_reason"), r.get("duplicate_of"))
    originals = [json.loads(line)["sentence_id"] for line in SAMPLE.read_text().splitlines()[:60]]
    pairs = {f"copy-{i}": originals[2 * i] for i in range(10)} | {f"edit-{i}": originals[2 * i + 1] for i in range(10)}
    kept = {copy: original for copy, original in pairs.items() if rows[original][0] == "de"}
    assert len(kept) >= 4 and {copy: rows[copy][2:] for copy in kept} == {
        copy: ("duplicate", rows[original][1]) for copy, original in kept.items()
    }


def near_pair(tmp: Path) -> Path:
    """Two sentences one word apart (3-gram Jaccard 0.86 after switching): duplicates at 0.8, not at 0.99."""
    return write_input(
        tmp / "in.jsonl",
        [
            sentence("s1", "In the spring of 1919 the anarchists from Petrograd and Moscow fled to Ukraine."),
            sentence("s2", "In the spring of 1919 the anarchists from Petrograd and Moscow went to Ukraine."),
        ],
    )


def test_a_changed_threshold_republishes_from_the_ledger_without_reprocessing(tmp_path):
    path, out = near_pair(tmp_path), tmp_path / "out"
    first = run_recipe(config(tmp_path, path, out, threshold=0.8))
    stricter = run_recipe(config(tmp_path, path, out, threshold=0.99))
    assert (first.reject_reasons, stricter.kept, stricter.units_generated, stricter.generation != first.generation) == (
        {"duplicate": 1}, {"de": 2}, 0, True
    )
