"""Writes the bad-input corpus of ``tests/test_bad_inputs.py`` (the files are checked in; rerun to rebuild them).

Run: python tests/bad_inputs/make_corpus.py

Each file breaks one rule (its name says which). Files of ``cod/`` that this script does not write belong to
``tests/test_sgd.py`` and are left alone. Inputs too large to keep in git (the 1 MB passage) are made by the
tests themselves.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent

PASSAGES = [
    {"id": "p1", "title": "Nile", "text": "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean Sea."},
    {"id": "p2", "title": "Alps", "text": "The Alps are the highest and most extensive mountain range that lies entirely in Europe."},
    {"id": "p3", "title": "Tea", "text": "Tea is an aromatic beverage prepared by pouring hot or boiling water over cured leaves."},
]
SENTENCES = [
    {
        "sentence_id": "s1",
        "text": "Paris is the capital of France.",
        "entities": [
            {"title": "Paris", "mention": "Paris", "start": 0, "end": 5},
            {"title": "France", "mention": "France", "start": 24, "end": 30},
        ],
    },
    {
        "sentence_id": "s2",
        "text": "Tokyo is the largest city of Japan.",
        "entities": [{"title": "Japan", "mention": "Japan", "start": 29, "end": 34}],
    },
    {
        "sentence_id": "s3",
        "text": "The Danube flows through Germany and Austria.",
        "entities": [
            {"title": "Germany", "mention": "Germany", "start": 25, "end": 32},
            {"title": "Austria", "mention": "Austria", "start": 37, "end": 44},
        ],
    },
]


def lines(path: Path, records: list, *, raw: dict[int, bytes] | None = None) -> None:
    """JSON Lines; ``raw`` replaces line N (1-based) by the given bytes."""
    out = []
    for number, record in enumerate(records, start=1):
        if raw and number in raw:
            out.append(raw[number])
        else:
            out.append(json.dumps(record, ensure_ascii=False).encode("utf-8"))
    path.write_bytes(b"\n".join(out) + b"\n")


def sap(root: Path) -> None:
    root.mkdir(exist_ok=True)
    (root / "empty.jsonl").write_bytes(b"")
    (root / "blank_lines.jsonl").write_bytes(b"\n  \n\n")
    (root / "wrong_format.csv").write_text("id,title,text\np1,Nile,The Nile is a river.\n", encoding="utf-8")
    (root / "csv_in_jsonl.jsonl").write_text("id,title,text\np1,Nile,The Nile is a river.\n", encoding="utf-8")
    lines(root / "missing_text.jsonl", [PASSAGES[0], {"id": "p2", "title": "Alps"}, PASSAGES[2]])
    lines(root / "wrong_type_id.jsonl", [{**PASSAGES[0], "id": 17}])
    lines(root / "wrong_type_text.jsonl", [PASSAGES[0], PASSAGES[1], {**PASSAGES[2], "text": ["Tea", "is", "a", "drink"]}])
    latin1 = '{"id": "p2", "title": "Caf\u00e9", "text": "Un caf\u00e9 cr\u00e8me."}'.encode("latin-1")
    lines(root / "not_utf8.jsonl", PASSAGES, raw={2: latin1})
    lines(root / "null_text.jsonl", [PASSAGES[0], {**PASSAGES[1], "text": None}])
    lines(root / "duplicated_ids.jsonl", [PASSAGES[0], PASSAGES[1], {**PASSAGES[2], "id": "p1"}])
    lines(root / "array_line.jsonl", [list(PASSAGES[0].values())])
    lines(root / "truncated.jsonl", PASSAGES, raw={3: b'{"id": "p3", "title": "Tea", "text": "Tea is an aro'})
    pq.write_table(pa.Table.from_pylist([{"id": p["id"], "title": p["title"]} for p in PASSAGES]), root / "missing_column.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": p["id"], "text": i} for i, p in enumerate(PASSAGES)]), root / "wrong_type.parquet")
    (root / "not_parquet.parquet").write_bytes(b"PAR1 this is not a parquet file at all\x00\x01\x02")
    (root / "not_bz2.xml.bz2").write_text("<mediawiki><page><title>Nile</title></page></mediawiki>\n", encoding="utf-8")
    lines(root / "single_row.jsonl", PASSAGES[:1])
    lines(root / "smaller_than_batch.jsonl", PASSAGES)
    (root / "unknown_language.yaml").write_text(
        "# 'xx' is a well-formed code that no exemplar (and no language) has\n"
        "recipe: sap\ninput:\n  path: single_row.jsonl\nlanguages: [de, xx]\n",
        encoding="utf-8",
    )
    (root / "unknown_keys.yaml").write_text(
        "recipe: sap\ninput:\n  path: single_row.jsonl\nlanguages: [de]\nsap:\n  summary_tokens: 80   # the key is summary_max_tokens\n",
        encoding="utf-8",
    )


def entitycs(root: Path) -> None:
    root.mkdir(exist_ok=True)
    s1, s2, s3 = SENTENCES
    (root / "empty.jsonl").write_bytes(b"")
    lines(root / "missing_entities.jsonl", [{k: v for k, v in s1.items() if k != "entities"}])
    lines(root / "entities_not_list.jsonl", [s1, {**s2, "entities": "Japan"}])
    lines(root / "mention_span_mismatch.jsonl", [s1, s2, {**s3, "entities": [{**s3["entities"][0], "start": 24, "end": 31}]}])
    lines(root / "span_outside_text.jsonl", [{**s2, "entities": [{"title": "Japan", "mention": "Japan", "start": 80, "end": 85}]}])
    lines(root / "entity_missing_title.jsonl", [{**s1, "entities": [{"mention": "Paris", "start": 0, "end": 5}]}])
    latin1 = '{"sentence_id": "s2", "text": "Caf\u00e9 in Paris.", "entities": []}'.encode("latin-1")
    lines(root / "not_utf8.jsonl", SENTENCES, raw={2: latin1})
    lines(root / "null_text.jsonl", [s1, {**s2, "text": None}])
    lines(root / "duplicated_ids.jsonl", [s1, s2, {**s3, "sentence_id": "s2"}])
    (root / "wrong_format.tsv").write_text("s1\tParis is the capital of France.\n", encoding="utf-8")
    (root / "corrupt_dump.xml.bz2").write_bytes(b"BZh91AY&SY" + b"\x00" * 64)
    lines(root / "single_row.jsonl", [s1])
    (root / "unknown_language.yaml").write_text(
        "recipe: entitycs\ninput:\n  path: single_row.jsonl\nlanguages: [de, xx]\n", encoding="utf-8"
    )
    (root / "lexicon_not_parquet.parquet").write_bytes(b"not a lexicon")
    pq.write_table(pa.Table.from_pylist([{"id": "Q90", "title": "Paris"}]), root / "lexicon_missing_column.parquet")


def cod(root: Path) -> None:
    """New COD cases beside test_sgd's; ``schema.json`` there is the Weather_1 schema."""
    schema = json.loads((root / "schema.json").read_text(encoding="utf-8"))
    first = json.loads((root / "span_outside.json").read_text(encoding="utf-8"))[0]  # a valid Weather_1 dialogue
    second = json.loads(json.dumps(first).replace("bad_00001", "ok_00002").replace("Toronto", "Nairobi"))
    (root / "empty.json").write_bytes(b"")
    (root / "empty_list.json").write_text("[]\n", encoding="utf-8")
    (root / "single_dialogue.json").write_text(json.dumps([first], indent=1), encoding="utf-8")
    (root / "duplicated_ids.json").write_text(json.dumps([first, second, first], indent=1), encoding="utf-8")
    without_city = json.loads(json.dumps(schema))
    without_city[0]["slots"] = [slot for slot in without_city[0]["slots"] if slot["name"] != "city"]
    (root / "schema_without_city.json").write_text(json.dumps(without_city, indent=1), encoding="utf-8")
    (root / "schema_not_json.json").write_text("service_name: Weather_1\n", encoding="utf-8")
    (root / "unknown_language.yaml").write_text(
        "recipe: cod\ninput:\n  path: single_dialogue.json\nlanguages: [sw, xx]\n", encoding="utf-8"
    )


def lexicon(root: Path) -> None:
    root.mkdir(exist_ok=True)
    good = {
        "id": "Q90",
        "type": "item",
        "labels": {"en": {"language": "en", "value": "Paris"}, "de": {"language": "de", "value": "Paris"}},
        "sitelinks": {"enwiki": {"site": "enwiki", "title": "Paris"}},
    }
    other = {**good, "id": "Q142", "sitelinks": {"enwiki": {"site": "enwiki", "title": "France"}},
             "labels": {"en": {"language": "en", "value": "France"}, "de": {"language": "de", "value": "Frankreich"}}}
    body = "[\n" + json.dumps(good) + ",\n" + '{"id": "Q64", "labels": {"en": {"value": "Berl' + ",\n" + json.dumps(other) + "\n]\n"
    (root / "not_json_line.json").write_text(body, encoding="utf-8")
    body = "[\n" + json.dumps(good) + ",\n" + json.dumps(["Q64", "Berlin"]) + "\n]\n"
    (root / "not_an_entity.json").write_text(body, encoding="utf-8")
    whole = gzip.compress(("[\n" + json.dumps(good) + ",\n" + json.dumps(other) + "\n]\n").encode())
    (root / "truncated.json.gz").write_bytes(whole[: len(whole) // 2])


def config(root: Path) -> None:
    """Config files that fail on their own (their input is a valid sample)."""
    root.mkdir(exist_ok=True)
    sample = "../../../data/samples/wiki_passages.jsonl"
    files = {
        "not_yaml.yaml": f"recipe: sap\ninput: {{path: {sample}\nlanguages: [de]\n",
        "not_mapping.yaml": "- recipe: sap\n- languages: [de]\n",
        "wrong_type.yaml": f"recipe: sap\ninput:\n  path: {sample}\nlanguages: [de]\nrunner:\n  batch_size: lots\n",
        "missing_input.yaml": "recipe: sap\ninput:\n  path: no_such_file.jsonl\nlanguages: [de]\n",
        "recipe_mismatch.yaml": f"recipe: cod\ninput:\n  path: {sample}\nlanguages: [de]\n",
        "bad_language_code.yaml": f"recipe: sap\ninput:\n  path: {sample}\nlanguages: [de, Klingon]\n",
        "openai_without_urls.yaml": f"recipe: sap\ninput:\n  path: {sample}\nlanguages: [de]\nengine:\n  backend: openai\n",
        "unknown_section.yaml": f"recipe: sap\ninput:\n  path: {sample}\nlanguages: [de]\nsampling:\n  temprature: 0.7\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "not_utf8.yaml").write_bytes(f"recipe: sap\ninput:\n  path: {sample}\nlanguages: [de]\n# caf\xe9\n".encode("latin-1"))


if __name__ == "__main__":
    sap(HERE / "sap")
    entitycs(HERE / "entitycs")
    cod(HERE / "cod")
    lexicon(HERE / "lexicon")
    config(HERE / "config")
    print(sum(1 for p in HERE.rglob("*") if p.is_file()), "files under", HERE)
