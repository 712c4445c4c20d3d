"""SAP prompt assembly against the shipped SWIM-IR exemplar CSVs, and query parsing/rejection."""

import csv

import pytest

from synth.recipes.sap.config import SapConfig
from synth.errors import ConfigError, InputError
from synth.llm.base import Result
from synth.recipes.sap.recipe import (
    EXEMPLAR_DIR,
    SapRecipe,
    cross_lingual_exemplars,
    language_names,
    monolingual_exemplars,
    supported_languages,
)


def _recipe(tmp_path, **overrides) -> SapRecipe:
    (tmp_path / "p.jsonl").write_text('{"id": "p1", "title": "T", "text": "Paris is the capital of France."}\n')
    data = {"input": {"path": str(tmp_path / "p.jsonl")}, "languages": ["de", "hi", "sw", "zh"], **overrides}
    return SapRecipe(SapConfig.model_validate(data), None, None)


def _monolingual_records(tmp_path, *lines: str) -> list[dict]:
    """The records a monolingual ``languages: [de]`` recipe reads from these JSON Lines."""
    (tmp_path / "mono.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    config = SapConfig.model_validate(
        {"input": {"path": str(tmp_path / "mono.jsonl")}, "languages": ["de"], "sap": {"mode": "monolingual"}}
    )
    return list(SapRecipe(config, None, None).read_records())


def _csv_questions(filename: str, column_prefix: str) -> list[str]:
    with (EXEMPLAR_DIR / filename).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header_at = next(i for i, r in enumerate(rows) if r and r[0] == "Article")
    col = next(i for i, name in enumerate(rows[header_at]) if name.startswith(column_prefix))
    return [r[col].strip() for r in rows[header_at + 1 :] if r and r[0].strip()]


def test_cross_lingual_exemplars_match_csv():
    table = cross_lingual_exemplars()
    assert _csv_questions("XOR-Retrieve-prompts.csv", "German") == [e.question for e in table["de"]]
    assert _csv_questions("xtreme-up-prompts.csv", "Tamil") == [e.question for e in table["ta"]]
    supported = supported_languages("cross-lingual")
    assert len(supported) >= 30 and "en" not in supported
    assert all(len(table[lang]) == 5 for lang in supported)
    # Columns with placeholder cells only ("-") are not offered.
    assert "mwr" not in supported and "brx" not in supported


def test_monolingual_exemplars_are_three_with_summaries():
    table = monolingual_exemplars()
    assert set(table) >= {"ar", "hi", "de", "sw", "zh", "en"}
    assert all(len(examples) == 3 and all(e.summary for e in examples) for examples in table.values())


def test_summary_prompt_is_five_shot_and_prefix_is_shared(tmp_path):
    recipe = _recipe(tmp_path)
    first = recipe.summary_request({"source_id": "a", "text": "Alpha text.", "lang": "en", "title": ""})
    second = recipe.summary_request({"source_id": "b", "text": "Beta text.", "lang": "en", "title": ""})
    prefix = recipe.summary_prefix("en")
    assert first.prompt.startswith(prefix) and second.prompt.startswith(prefix)
    assert prefix.count("Summary: ") == 5
    for example in cross_lingual_exemplars()["de"]:
        assert example.passage in prefix and example.summary in prefix
    assert first.prompt.endswith("Article: Alpha text.\nSummary:")
    assert first.sampling.stop == ("\n",) and first.sampling.seed != second.sampling.seed


def test_query_prompt_uses_target_language_exemplars(tmp_path):
    recipe = _recipe(tmp_path)
    record = {"source_id": "a", "text": "Alpha text.", "lang": "en", "title": ""}
    request = recipe.query_request(record, "Alpha summary.", "hi")
    for example in cross_lingual_exemplars()["hi"]:
        assert f"Question in Hindi: {example.question}" in request.prompt
    assert request.prompt.endswith("Article: Alpha text.\nSummary: Alpha summary.\nQuestion in Hindi:")
    other = recipe.query_request({**record, "source_id": "b", "text": "Beta."}, "B.", "hi")
    assert other.prompt.startswith(recipe.query_prefix("hi"))


def test_unsupported_language_is_refused_with_the_list(tmp_path):
    recipe = _recipe(tmp_path, languages=["de", "it"])
    with pytest.raises(ConfigError) as info:
        recipe.validate()
    assert "it" in str(info.value) and "de" in str(info.value) and "zero_shot" in str(info.value)
    zero = _recipe(tmp_path, languages=["it"], sap={"zero_shot": True})
    zero.validate()
    assert "query_zeroshot" in zero.prompt_version


@pytest.mark.parametrize(
    "text, finish, reason",
    [
        ("", "stop", "empty"),
        ("   \n", "stop", "empty"),
        ("word " * 60, "length", "too_long"),
        ("Paris is the capital of France", "stop", "copy"),
        ("Which award did the British television series Long Lost Family won?", "stop", "exemplar_copy"),
        ("Was ist die Hauptstadt von Frankreich?", "stop", None),
    ],
)
def test_parse_query_reasons(tmp_path, text, finish, reason):
    recipe = _recipe(tmp_path)
    record = {"source_id": "p1", "text": "Paris is the capital of France.", "lang": "en", "title": "T"}
    query, got = recipe.parse_query(Result("r", text=text, finish_reason=finish), record)
    assert got == reason
    if reason is None:
        assert query == text.strip()


def test_engine_error_is_a_reason(tmp_path):
    recipe = _recipe(tmp_path)
    query, reason = recipe.parse_query(Result("r", error="boom"), {"text": ""})
    assert (query, reason) == ("", "engine_error")


def _italian_zero_shot(tmp_path) -> SapRecipe:
    assert "it" not in monolingual_exemplars()
    recipe = _recipe(tmp_path, languages=["it"], sap={"mode": "monolingual", "zero_shot": True})
    recipe.validate()
    return recipe


ITALIAN = {"source_id": "a", "text": "Roma è la capitale d'Italia.", "lang": "it", "title": ""}


def test_monolingual_zero_shot_summary_uses_the_english_exemplars(tmp_path):
    summary = _italian_zero_shot(tmp_path).summary_request(ITALIAN)
    # The same template and prefix as cross-lingual mode: the 5 English XOR-Retrieve exemplars.
    assert summary.prompt == _recipe(tmp_path).summary_request(ITALIAN).prompt


def test_monolingual_zero_shot_query_uses_the_zero_shot_template(tmp_path):
    query = _italian_zero_shot(tmp_path).query_request(ITALIAN, "Rome is the capital of Italy.", "it")
    zero_shot_prompt = (
        "Read the article and its summary, then write one question in {language} that the article answers.\n\n"
        "Article: Roma è la capitale d'Italia.\nSummary: Rome is the capital of Italy.\nQuestion in {language}:"
    )
    assert query.prompt == zero_shot_prompt.format(language=language_names().get("it", "it"))


def test_monolingual_summary_prefix_of_a_language_with_exemplars_is_unchanged(tmp_path):
    recipe = _recipe(tmp_path, languages=["de", "it"], sap={"mode": "monolingual", "zero_shot": True})
    prefix = recipe.summary_prefix("de")
    assert prefix == "".join(f"Article: {e.passage}\nSummary: {e.summary}\n\n" for e in monolingual_exemplars()["de"])


def test_monolingual_without_zero_shot_refuses_a_language_without_exemplars(tmp_path):
    recipe = _recipe(tmp_path, languages=["it"], sap={"mode": "monolingual"})
    with pytest.raises(ConfigError) as info:
        recipe.validate()
    assert "no monolingual SAP exemplars for it; supported: " + ", ".join(supported_languages("monolingual")) in str(
        info.value
    )


@pytest.mark.parametrize("code", ["DE", "de-DE", "deu", "ger", "de_AT"])
def test_passage_language_codes_are_normalised(tmp_path, code):
    [record] = _monolingual_records(tmp_path, f'{{"id": "p1", "text": "Berlin ist eine Stadt.", "lang": "{code}"}}')
    assert record["lang"] == "de"


def test_a_normalised_passage_language_gets_its_monolingual_row(tmp_path):
    [record] = _monolingual_records(tmp_path, '{"id": "p1", "text": "Berlin ist eine Stadt.", "lang": "de-DE"}')
    recipe = _recipe(tmp_path, languages=["de"], sap={"mode": "monolingual"})
    assert recipe.target_languages(record) == ["de"]


def test_a_bad_passage_language_names_file_row_and_field(tmp_path):
    with pytest.raises(InputError) as info:
        _monolingual_records(
            tmp_path,
            '{"id": "p1", "text": "Eins.", "lang": "de"}',
            "",
            '{"id": "p2", "text": "Zwei.", "lang": "xx-!!"}',
        )
    error = info.value
    assert (error.file, error.row, error.field) == (str(tmp_path / "mono.jsonl"), 3, "lang")
