"""EntityCS recipe: switching policy, spans, sampling, rejects, input errors and the optional LLM passes."""

import bz2
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synth.config import EngineConfig
from synth.recipes.entitycs.config import EntityCSConfig
from synth.errors import ConfigError, InputError
from synth.recipes.entitycs.cldr import CLDR_LANGUAGES
from synth.recipes.entitycs.lexicon import LEXICON_SCHEMA
from synth.filters.lid import LanguageIdentifier
from synth.llm.base import Result, Usage
from synth.paths import DATA_DIR
from synth.recipes.entitycs.recipe import EntityCSRecipe, parse_label

SAMPLE = DATA_DIR / "samples" / "wiki_sentences.jsonl"


def make_recipe(path, languages, lid=None, engine=None, seed=0, **options) -> EntityCSRecipe:
    config = EntityCSConfig(input={"path": str(path)}, languages=languages, sampling={"seed": seed}, entitycs=options)
    recipe = EntityCSRecipe(config, engine, lid)
    recipe.validate()
    return recipe


def run(recipe: EntityCSRecipe, usage: Usage | None = None) -> list[dict]:
    rows = recipe.process(list(recipe.read_records()), usage or Usage())
    pa.Table.from_pylist(rows, schema=recipe.schema())  # every row fits the declared schema
    return rows


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def sentence(sentence_id: str, text: str, *titles_and_mentions: tuple[str, str]) -> dict:
    entities = []
    for title, mention in titles_and_mentions:
        start = text.index(mention)
        entities.append({"title": title, "mention": mention, "start": start, "end": start + len(mention)})
    return {"sentence_id": sentence_id, "text": text, "entities": entities}


def write_lexicon(path: Path, entries: dict[str, dict[str, str]]) -> Path:
    rows = [
        {
            "entity_id": f"Q{i}",
            "en_title": title,
            "aliases": [],
            "labels": [{"lang": lang, "label": label, "label_source": "wikidata"} for lang, label in labels.items()],
        }
        for i, (title, labels) in enumerate(entries.items(), start=1)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=LEXICON_SCHEMA), path)
    return path


@pytest.mark.parametrize("markers", ["lang", "entity", "none"])
def test_spans_slice_back_to_labels(markers):
    recipe = make_recipe(SAMPLE, ["de", "hi", "ja", "ar", "ru", "zh"], markers=markers)
    rows = [row for row in run(recipe) if row["reject_reason"] is None]
    assert len(rows) > 100
    for row in rows:
        cs = row["cs_sentence"]
        for entity in row["entities"]:
            assert cs[entity["start"] : entity["end"]] == entity["label"]
            if markers == "lang":
                assert cs[entity["start"] - len(row["lang"]) - 2 : entity["start"]] == f"<{row['lang']}>"
                assert cs[entity["end"] : entity["end"] + len(row["lang"]) + 3] == f"</{row['lang']}>"
        if markers == "none":
            assert f"<{row['lang']}>" not in cs and "<e>" not in cs


def test_switching_example():
    recipe = make_recipe(SAMPLE, ["de"], markers="lang")
    rows = {row["sentence_id"]: row for row in run(recipe)}
    row = rows["358-s3"]  # Algeria: "... bordered to the northeast by Tunisia, to the east by Libya, ..."
    assert row["lang"] == "de" and row["reject_reason"] is None
    assert row["cs_sentence"].startswith(
        "Algeria is bordered to the northeast by <de>Tunesien</de>, to the east by <de>Libyen</de>"
    )
    assert row["entities"][0] == {
        "entity_id": "cldr:territory:TN",
        "mention": "Tunisia",
        "label": "Tunesien",
        "label_source": "cldr",
        "start": 44,
        "end": 52,
        "original_label": None,
    }


def test_candidate_languages_need_labels_for_every_entity(tmp_path):
    lexicon = write_lexicon(
        tmp_path / "lex.parquet",
        {
            "Japan": {"de": "Japan", "fr": "Japon", "hi": "जापान"},
            "Germany": {"de": "Deutschland"},
            "Kyoto": {"ja": "京都"},
            "Mumbai": {"hi": "Mumbai"},  # Latin label for Hindi: fails the script check
        },
    )
    records = [
        sentence("a", "Japan and Germany signed it.", ("Japan", "Japan"), ("Germany", "Germany")),
        sentence("b", "Japan trades with Atlantis.", ("Japan", "Japan"), ("Atlantis", "Atlantis")),
        sentence("c", "Atlantis is a myth.", ("Atlantis", "Atlantis")),
        sentence("d", "Germany and Kyoto differ.", ("Germany", "Germany"), ("Kyoto", "Kyoto")),
        sentence("e", "Japan and Mumbai are far apart.", ("Japan", "Japan"), ("Mumbai", "Mumbai")),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    recipe = make_recipe(path, ["de", "fr", "hi", "ja"], lexicon=str(lexicon), languages_per_sentence=10)
    rows = run(recipe)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["sentence_id"], []).append(row)
    assert [r["lang"] for r in by_id["a"]] == ["de"]
    assert by_id["a"][0]["cs_sentence"] == "<de>Japan</de> and <de>Deutschland</de> signed it."
    # an entity the lexicon does not know stays English and does not restrict the languages
    assert [r["lang"] for r in by_id["b"]] == ["de", "fr", "hi"]
    assert by_id["b"][2]["cs_sentence"] == "<hi>जापान</hi> trades with Atlantis."
    assert [(r["lang"], r["reject_reason"]) for r in by_id["c"]] == [("und", "no_lexicon_entity")]
    assert [(r["lang"], r["reject_reason"]) for r in by_id["d"]] == [("und", "no_candidate_language")]
    assert [(r["lang"], r["reject_reason"]) for r in by_id["e"]] == [("und", "no_candidate_language")]


def test_skipped_sentences_are_counted_not_dropped():
    recipe = make_recipe(SAMPLE, ["de", "ja"])
    records = list(recipe.read_records())
    rows = recipe.process(records, Usage())
    assert {row["sentence_id"] for row in rows} == {record["sentence_id"] for record in records}
    rejected = [row for row in rows if row["reject_reason"]]
    assert rejected and all(row["lang"] == "und" and row["cs_sentence"] is None for row in rejected)
    assert {row["reject_reason"] for row in rejected} <= {"no_lexicon_entity", "no_candidate_language"}


def test_sampling_is_seeded_and_independent_of_batches():
    recipe = make_recipe(SAMPLE, list(CLDR_LANGUAGES), languages_per_sentence=3, seed=7)
    records = list(recipe.read_records())
    whole = recipe.process(records, Usage())
    pieces = []
    for start in range(0, len(records), 7):  # other batch boundaries, reversed batch order
        pieces = recipe.process(records[start : start + 7], Usage()) + pieces
    key = lambda row: (row["sentence_id"], row["lang"])
    assert sorted(whole, key=key) == sorted(pieces, key=key)
    assert len({row["id"] for row in whole}) == len(whole)
    chosen = {r["sentence_id"]: r["lang"] for r in whole if not r["reject_reason"]}
    other_seed = make_recipe(SAMPLE, list(CLDR_LANGUAGES), languages_per_sentence=3, seed=8)
    assert {r["sentence_id"]: r["lang"] for r in run(other_seed) if not r["reject_reason"]} != chosen
    per_sentence: dict[str, int] = {}
    for row in whole:
        if not row["reject_reason"]:
            per_sentence[row["sentence_id"]] = per_sentence.get(row["sentence_id"], 0) + 1
    assert max(per_sentence.values()) == 3


def test_twenty_languages_on_the_shipped_sample():
    recipe = make_recipe(SAMPLE, list(CLDR_LANGUAGES), languages_per_sentence=5)
    kept = [row for row in run(recipe) if not row["reject_reason"]]
    assert len({row["lang"] for row in kept}) >= 20
    assert len({row["sentence_id"] for row in kept}) >= 150


def test_lid_fields_with_the_real_identifier():
    lid = LanguageIdentifier(EntityCSConfig(input={"path": str(SAMPLE)}, languages=["de"]).lid)
    recipe = make_recipe(SAMPLE, ["ru", "ja"], lid=lid)
    kept = [row for row in run(recipe) if not row["reject_reason"]]
    checked = [row for row in kept if row["lid_lang"] is not None]
    assert checked and all(len(" ".join(e["label"] for e in row["entities"])) >= 20 for row in checked)
    assert sum(row["lid_lang"] == row["lang"] for row in checked) / len(checked) > 0.8
    short = [row for row in kept if len(" ".join(e["label"] for e in row["entities"])) < 20]
    assert short and all(row["lid_lang"] is None and row["lid_score"] is None for row in short)


def test_bad_input_names_file_line_and_field(tmp_path):
    good = sentence("a", "Japan is an island.", ("Japan", "Japan"))
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(good) + "\n\n{not json\n", encoding="utf-8")
    recipe = make_recipe(path, ["de"])
    with pytest.raises(InputError, match=r"in\.jsonl, row 3: not valid JSON"):
        list(recipe.read_records())
    write_jsonl(path, [good, {"sentence_id": "b", "entities": []}])
    with pytest.raises(InputError, match=r"in\.jsonl, row 2, field 'text': missing required field"):
        list(recipe.read_records())
    bad_span = dict(good, entities=[dict(good["entities"][0], start=1)])
    write_jsonl(path, [good, good, bad_span])
    with pytest.raises(InputError, match=r"row 3, field 'entities\[0\]\.start'"):
        list(recipe.read_records())
    write_jsonl(path, [dict(good, entities=[{"title": "Japan", "start": 0, "end": 5}])])
    with pytest.raises(InputError, match=r"row 1, field 'entities\[0\]\.mention'"):
        list(recipe.read_records())


def test_reads_a_dump_directly(tmp_path):
    xml = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><page><title>Osaka</title><ns>0</ns><id>7</id>'
        "<revision><text>'''Osaka''' is a city in [[Japan]], west of [[Tokyo]]. It has a port.</text></revision>"
        "</page></mediawiki>"
    )
    dump = tmp_path / "tiny.xml.bz2"
    dump.write_bytes(bz2.compress(xml.encode()))
    recipe = make_recipe(dump, ["ja"])
    records = list(recipe.read_records())
    assert [r["source_id"] for r in records] == ["7-s0"]
    [row] = recipe.process(records, Usage())
    assert row["cs_sentence"] == "Osaka is a city in <ja>日本</ja>, west of <ja>東京</ja>."


def test_validation(tmp_path):
    with pytest.raises(ConfigError, match=r"no labels in tlh; it has: af, am, ar"):
        make_recipe(SAMPLE, ["de", "tlh"])
    with pytest.raises(ConfigError, match="'en' is the language of the input"):
        make_recipe(SAMPLE, ["en", "de"])
    with pytest.raises(ConfigError, match="input.path"):
        make_recipe(write_jsonl(tmp_path / "x.csv", []), ["de"])


def test_engine_only_when_an_llm_pass_is_on():
    plain = make_recipe(SAMPLE, ["de"])
    assert plain.needs_engine(plain.config) is False and plain.prompt_version == "entitycs/v1"
    fallback = make_recipe(SAMPLE, ["de"], llm_label_fallback=True)
    assert fallback.needs_engine(fallback.config) is True
    assert fallback.prompt_version == "entitycs/v1+entitycs/label_fallback.v1@v1"
    repair = make_recipe(SAMPLE, ["de"], llm_inflection_repair=True)
    assert repair.needs_engine(repair.config) and repair.prompt_version.endswith("+entitycs/inflection_repair.v1@v1")


class FakeEngine:
    """Answers from a table keyed by the prompt's last lines: only for testing prompt building and parsing."""

    model_name = "fake"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        results = []
        for request in requests:
            key = next((k for k in self.answers if request.prompt.rstrip().endswith(k)), None)
            results.append(Result(request.id, text=self.answers.get(key, ""), prompt_tokens=10, completion_tokens=3))
        return results

    def close(self):
        pass


def test_llm_label_fallback_prompt_and_parsing(tmp_path):
    lexicon = write_lexicon(
        tmp_path / "lex.parquet",
        {"Japan": {"de": "Japan", "hi": "जापान"}, "Germany": {"de": "Deutschland", "hi": "जर्मनी"}, "Kyoto": {}},
    )
    records = [
        sentence("a", "Kyoto is in Japan.", ("Kyoto", "Kyoto"), ("Japan", "Japan")),
        sentence("b", "Kyoto is old.", ("Kyoto", "Kyoto")),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    engine = FakeEngine({"English: Kyoto\nGerman:": ' "Kyoto"\nEnglish: Osaka', "English: Kyoto\nHindi:": "Kyoto"})
    recipe = make_recipe(path, ["de", "hi"], engine=engine, lexicon=str(lexicon), llm_label_fallback=True)
    usage = Usage()
    rows = run(recipe, usage)
    prompt = engine.requests[0].prompt
    assert prompt.startswith("Names of countries, cities, languages, people and other entities as German Wikipedia")
    assert "English: Japan\nGerman: Japan" in prompt and "English: Germany\nGerman: Deutschland" in prompt
    assert prompt.endswith("English: Kyoto\nGerman:")
    assert engine.requests[0].sampling.stop == ("\n",)
    assert len(engine.requests) == 2  # one request per (entity, language), shared by both sentences
    assert usage.calls == 2 and usage.per_step == {"label_fallback": 2}
    by_key = {(r["sentence_id"], r["lang"]): r for r in rows}
    german = by_key[("a", "de")]
    assert german["cs_sentence"] == "<de>Kyoto</de> is in <de>Japan</de>."
    assert [e["label_source"] for e in german["entities"]] == ["llm", "wikidata"]
    # a Latin answer for Hindi fails the script check: that language's row is rejected, with the reason
    assert by_key[("a", "hi")]["reject_reason"] == "llm_label_script_mismatch"
    assert by_key[("b", "hi")]["reject_reason"] == "llm_label_script_mismatch"
    run(recipe, usage)  # a second batch reuses the answers
    assert usage.calls == 2


class FailsOnceEngine:
    """Fails every request of its first ``generate`` call, then answers ``answer``."""

    model_name = "fails-once"

    def __init__(self, answer: str):
        self.answer = answer
        self.calls: list[list] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        if len(self.calls) == 1:
            return [Result(request.id, error="boom") for request in requests]
        return [Result(request.id, text=f" {self.answer}\n", finish_reason="stop") for request in requests]


def _kyoto_fallback(tmp_path, engine) -> EntityCSRecipe:
    lexicon = write_lexicon(tmp_path / "lex.parquet", {"Japan": {"de": "Japan"}, "Kyoto": {}})
    path = write_jsonl(tmp_path / "in.jsonl", [sentence("a", "Kyoto is in Japan.", ("Kyoto", "Kyoto"), ("Japan", "Japan"))])
    return make_recipe(path, ["de"], engine=engine, lexicon=str(lexicon), llm_label_fallback=True)


def test_a_failed_llm_label_is_rejected_as_engine_error(tmp_path):
    recipe = _kyoto_fallback(tmp_path, FailsOnceEngine("Kioto"))
    [row] = run(recipe)
    assert row["reject_reason"] == "llm_label_engine_error"


def test_a_failed_llm_label_is_asked_again_by_the_next_batch(tmp_path):
    engine = FailsOnceEngine("Kioto")
    recipe = _kyoto_fallback(tmp_path, engine)
    run(recipe)
    [row] = run(recipe)
    assert (len(engine.calls), row["reject_reason"], row["cs_sentence"]) == (2, None, "<de>Kioto</de> is in <de>Japan</de>.")


def test_llm_inflection_repair(tmp_path):
    records = [sentence("a", "Many Spaniards live in Germany.", ("Spain", "Spaniards"), ("Germany", "Germany"))]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    engine = FakeEngine({"Marked words: Spaniards\nName: Spanien\nSame form:": "Spanier"})
    recipe = make_recipe(path, ["de"], engine=engine, llm_inflection_repair=True)
    usage = Usage()
    [row] = run(recipe, usage)
    assert len(engine.requests) == 1  # "Germany" is the name itself: nothing to repair
    prompt = engine.requests[0].prompt
    assert prompt.startswith("In each English sentence the marked words name an entity.")
    assert "Language: German\nSentence: Thousands of [[Italians]] emigrated to Argentina." in prompt  # exemplar
    assert prompt.endswith(
        "Language: German\nSentence: Many [[Spaniards]] live in Germany.\n"
        "Marked words: Spaniards\nName: Spanien\nSame form:"
    )
    assert row["cs_sentence"] == "Many <de>Spanier</de> live in <de>Deutschland</de>."
    spaniards = row["entities"][0]
    assert (spaniards["label"], spaniards["original_label"], spaniards["label_source"]) == (
        "Spanier",
        "Spanien",
        "cldr",
    )
    assert row["cs_sentence"][spaniards["start"] : spaniards["end"]] == "Spanier"
    assert usage.per_step == {"inflection_repair": 1}


@pytest.mark.parametrize(
    ("text", "title", "mention", "answer", "label"),
    [
        ("Most Russians speak Russian.", "Russia", "Russians", "Russians", "Россия"),  # Latin script for ru
        ("Many Italians came.", "Italy", "Italians", "немцы", "Италия"),  # an exemplar's answer echoed
    ],
)
def test_refused_repair_keeps_the_label(tmp_path, text, title, mention, answer, label):
    path = write_jsonl(tmp_path / "in.jsonl", [sentence("a", text, (title, mention))])
    engine = FakeEngine({"Same form:": answer})
    recipe = make_recipe(path, ["ru"], engine=engine, llm_inflection_repair=True)
    [row] = run(recipe)
    assert len(engine.requests) == 1
    assert row["entities"][0]["label"] == label and row["entities"][0]["original_label"] is None


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (" Deutschland\nEnglish: France", "Deutschland"),
        ("German: Deutschland", "Deutschland"),
        ('"東京"', "東京"),
        ("[[Kyoto]]", "Kyoto"),
        ("\n\n", ""),
    ],
)
def test_parse_label(text, label):
    assert parse_label(text, "German") == label


@pytest.mark.slow
def test_label_fallback_with_the_real_engine(tmp_path):
    from synth.llm import get_engine

    lexicon = write_lexicon(
        tmp_path / "lex.parquet",
        {
            "Japan": {"de": "Japan", "fr": "Japon"},
            "Germany": {"de": "Deutschland", "fr": "Allemagne"},
            "France": {"de": "Frankreich", "fr": "France"},
            "Italy": {},
        },
    )
    path = write_jsonl(
        tmp_path / "in.jsonl", [sentence("a", "Italy borders France.", ("Italy", "Italy"), ("France", "France"))]
    )
    config = EntityCSConfig(
        input={"path": str(path)},
        languages=["de", "fr"],
        entitycs={"lexicon": str(lexicon), "llm_label_fallback": True},
    )
    recipe = EntityCSRecipe(config, get_engine(EngineConfig()), None)
    recipe.validate()
    usage = Usage()
    rows = recipe.process(list(recipe.read_records()), usage)
    assert usage.calls == 2 and usage.failed_calls == 0
    assert len(rows) == 2
    for row in rows:
        if row["reject_reason"] is None:
            italy = row["entities"][0]
            assert italy["label_source"] == "llm" and italy["label"]
            assert row["cs_sentence"][italy["start"] : italy["end"]] == italy["label"]
        else:
            assert row["reject_reason"].startswith("llm_label_")
