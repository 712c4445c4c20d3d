"""Bad input through the CLI: every error is one clear line, and earlier output in OUT is left as it was.

Each case of ``CASES`` is one file of ``tests/bad_inputs/`` (written by ``tests/bad_inputs/make_corpus.py``; the COD
files that test_sgd.py also uses are reused). It runs ``synth run <recipe>`` (or ``synth lexicon build``) in a
subprocess, as a user's shell would, into an output directory that already holds a finished run of another
recipe, and checks: exit code 2, stderr is exactly one ``error:`` line naming the file, row and field (no
traceback), and every file of the earlier output is byte-identical afterwards (nothing new either).

These failures are all found before generation starts (``synth run`` checks config, output directory and every
input record before it starts Prefect and the engine), so each case takes about a second. Inputs that are merely
unusual (one row, fewer rows than a batch, a 1 MB passage) must complete; they run the real flow in-process
through typer's CliRunner with an OpenAI-compatible fake engine and are marked ``slow``, as is disk-full (the
only failure here that happens inside a running flow).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synth.paths import DATA_DIR
from tests.bad_inputs.cli_harness import (
    CONFIGS,
    CORPUS,
    cli_env,
    disk_full,
    earlier_entitycs_output,
    earlier_sap_output,
    error_line,
    fingerprint,
    read_only_dir,
    sap_config_text,
    shard_rows,
    synth_cli,
    temp_files,
)
from tests.llm_fixtures import FakeOpenAIServer

LANGUAGES = {"sap": ["de"], "entitycs": ["de"], "cod": ["sw"]}


@dataclass(frozen=True)
class Case:
    """One bad input. ``input``: a corpus file read through a config written for the case (``extra`` YAML added);
    ``config``: a corpus config file used as it is. ``expect``: fragments of the error line; ``{corpus}`` is the
    corpus folder and ``{config}`` the config file the case ran with."""

    id: str
    recipe: str
    expect: tuple[str, ...]
    input: str | None = None
    config: str | None = None
    extra: str = ""


def _file(name: str, *rest: str) -> tuple[str, ...]:
    """The error names the corpus file ``name`` first, then ``rest``."""
    return ("error: {corpus}/" + name, *rest)


CASES = [
    # --- SAP passages (JSONL / Parquet / dump) -------------------------------------------------------------------
    Case("sap-empty-file", "sap", _file("sap/empty.jsonl", "no input records"), input="sap/empty.jsonl"),
    Case("sap-only-blank-lines", "sap", _file("sap/blank_lines.jsonl", "no input records"), input="sap/blank_lines.jsonl"),
    Case("sap-wrong-format-csv", "sap", _file("sap/wrong_format.csv", "unsupported input format"), input="sap/wrong_format.csv"),
    Case("sap-csv-in-jsonl", "sap", _file("sap/csv_in_jsonl.jsonl", "row 1:", "not valid JSON"), input="sap/csv_in_jsonl.jsonl"),
    Case("sap-missing-column", "sap", _file("sap/missing_text.jsonl", "row 2,", "field 'text'", "missing required field"), input="sap/missing_text.jsonl"),
    Case("sap-wrong-type-id", "sap", _file("sap/wrong_type_id.jsonl", "row 1,", "field 'id'", "expected str, got int"), input="sap/wrong_type_id.jsonl"),
    Case("sap-wrong-type-text", "sap", _file("sap/wrong_type_text.jsonl", "row 3,", "field 'text'", "expected str, got list"), input="sap/wrong_type_text.jsonl"),
    Case("sap-not-utf8", "sap", _file("sap/not_utf8.jsonl", "row 2:", "not UTF-8"), input="sap/not_utf8.jsonl"),
    Case("sap-null-text", "sap", _file("sap/null_text.jsonl", "row 2,", "field 'text'", "null"), input="sap/null_text.jsonl"),
    Case("sap-duplicated-ids", "sap", _file("sap/duplicated_ids.jsonl", "row 3,", "field 'id'", "duplicated id 'p1'"), input="sap/duplicated_ids.jsonl"),
    Case("sap-array-not-object", "sap", _file("sap/array_line.jsonl", "row 1:", "expected an object, got list"), input="sap/array_line.jsonl"),
    Case("sap-truncated-line", "sap", _file("sap/truncated.jsonl", "row 3:", "not valid JSON"), input="sap/truncated.jsonl"),
    Case("sap-parquet-missing-column", "sap", _file("sap/missing_column.parquet", "field 'text'", "missing required column"), input="sap/missing_column.parquet"),
    Case("sap-parquet-wrong-type", "sap", _file("sap/wrong_type.parquet", "row 1,", "field 'text'", "expected str, got int"), input="sap/wrong_type.parquet"),
    Case("sap-not-parquet", "sap", _file("sap/not_parquet.parquet", "not a readable Parquet file"), input="sap/not_parquet.parquet"),
    Case("sap-dump-not-bz2", "sap", _file("sap/not_bz2.xml.bz2", "cannot read dump"), input="sap/not_bz2.xml.bz2"),
    Case("sap-unknown-language", "sap", ("error: {config},", "field 'languages'", "no cross-lingual SAP exemplars for xx"), config="sap/unknown_language.yaml"),
    Case("sap-config-unknown-key", "sap", ("error: {config},", "field 'sap.summary_tokens'", "unknown key"), config="sap/unknown_keys.yaml"),
    # --- EntityCS linked sentences, lexicon ----------------------------------------------------------------------
    Case("entitycs-empty-file", "entitycs", _file("entitycs/empty.jsonl", "no input records"), input="entitycs/empty.jsonl"),
    Case("entitycs-missing-entities", "entitycs", _file("entitycs/missing_entities.jsonl", "row 1,", "field 'entities'", "missing"), input="entitycs/missing_entities.jsonl"),
    Case("entitycs-entities-not-list", "entitycs", _file("entitycs/entities_not_list.jsonl", "row 2,", "field 'entities'", "expected list, got str"), input="entitycs/entities_not_list.jsonl"),
    Case("entitycs-span-not-mention", "entitycs", _file("entitycs/mention_span_mismatch.jsonl", "row 3,", "field 'entities[0].start'", "is not the mention 'Germany'"), input="entitycs/mention_span_mismatch.jsonl"),
    Case("entitycs-span-outside-text", "entitycs", _file("entitycs/span_outside_text.jsonl", "row 1,", "field 'entities[0].start'", "text[80:85]"), input="entitycs/span_outside_text.jsonl"),
    Case("entitycs-entity-without-title", "entitycs", _file("entitycs/entity_missing_title.jsonl", "row 1,", "field 'entities[0].title'", "missing"), input="entitycs/entity_missing_title.jsonl"),
    Case("entitycs-not-utf8", "entitycs", _file("entitycs/not_utf8.jsonl", "row 2:", "can't decode byte 0xe9"), input="entitycs/not_utf8.jsonl"),
    Case("entitycs-null-text", "entitycs", _file("entitycs/null_text.jsonl", "row 2,", "field 'text'"), input="entitycs/null_text.jsonl"),
    Case("entitycs-duplicated-ids", "entitycs", _file("entitycs/duplicated_ids.jsonl", "row 3,", "field 'sentence_id'", "duplicated id 's2'"), input="entitycs/duplicated_ids.jsonl"),
    Case("entitycs-wrong-format", "entitycs", ("error: {config},", "field 'input.path'", "EntityCS reads linked sentences"), input="entitycs/wrong_format.tsv"),
    Case("entitycs-corrupt-dump", "entitycs", _file("entitycs/corrupt_dump.xml.bz2", "cannot read dump"), input="entitycs/corrupt_dump.xml.bz2"),
    Case("entitycs-unknown-language", "entitycs", ("error: {config},", "field 'languages'", "the lexicon has no labels in xx"), config="entitycs/unknown_language.yaml"),
    Case("entitycs-lexicon-not-parquet", "entitycs", _file("entitycs/lexicon_not_parquet.parquet", "not a readable Parquet file"),
         input="entitycs/single_row.jsonl", extra="entitycs:\n  lexicon: {corpus}/entitycs/lexicon_not_parquet.parquet\n"),
    Case("entitycs-lexicon-missing-column", "entitycs", ("{corpus}/entitycs/lexicon_missing_column.parquet,", "field 'entity_id'", "not a lexicon"),
         input="entitycs/single_row.jsonl", extra="entitycs:\n  lexicon: {corpus}/entitycs/lexicon_missing_column.parquet\n"),
    # --- COD: SGD dialogues and schemas (row = index of the dialogue in the file's list) -------------------------
    Case("cod-empty-file", "cod", _file("cod/empty.json", "not valid JSON"), input="cod/empty.json"),
    Case("cod-empty-list", "cod", _file("cod/empty_list.json", "no input records"), input="cod/empty_list.json"),
    Case("cod-wrong-format-multiwoz", "cod", _file("cod/multiwoz.json", "MultiWOZ 2.0/2.1"), input="cod/multiwoz.json"),
    Case("cod-not-a-list", "cod", _file("cod/not_a_list.json", "expected a JSON list of SGD dialogues"), input="cod/not_a_list.json"),
    Case("cod-not-utf8", "cod", _file("cod/not_utf8.json", "not UTF-8"), input="cod/not_utf8.json"),
    Case("cod-missing-turns", "cod", _file("cod/missing_turns.json", "row 1,", "field 'turns'", "bad_00002"), input="cod/missing_turns.json"),
    Case("cod-span-outside-utterance", "cod", _file("cod/span_outside.json", "row 1,", "field 'turns[0].frames[0].slots[0]'", "outside the utterance"), input="cod/span_outside.json"),
    Case("cod-unknown-service", "cod", _file("cod/unknown_service.json", "row 1,", "field 'turns[1].frames[0].service'", "unknown service 'Weather_9'"), input="cod/unknown_service.json"),
    Case("cod-unknown-act", "cod", _file("cod/unknown_act.json", "row 1,", "field 'turns[1].frames[0].actions[0].act'", "unknown act 'SUGGEST'"), input="cod/unknown_act.json"),
    Case("cod-unknown-slot", "cod", _file("cod/unknown_slot.json", "row 1,", "field 'turns[1].frames[0].actions[0].slot'", "temperature_celsius"), input="cod/unknown_slot.json"),
    Case("cod-unknown-span-slot", "cod", _file("cod/unknown_span_slot.json", "row 1,", "field 'turns[0].frames[0].slots[0].slot'", "'town'"), input="cod/unknown_span_slot.json"),
    Case("cod-duplicated-ids", "cod", _file("cod/duplicated_ids.json", "row 2,", "field 'dialogue_id'", "appears twice"), input="cod/duplicated_ids.json"),
    Case("cod-schema-without-used-slot", "cod", _file("cod/single_dialogue.json", "row 0,", "field 'turns[0].frames[0].actions[1].slot'", "slot 'city' is not in service 'Weather_1'"),
         input="cod/single_dialogue.json", extra="cod:\n  schema_path: {corpus}/cod/schema_without_city.json\n"),
    Case("cod-schema-not-json", "cod", _file("cod/schema_not_json.json", "not valid JSON"),
         input="cod/single_dialogue.json", extra="cod:\n  schema_path: {corpus}/cod/schema_not_json.json\n"),
    Case("cod-unknown-language", "cod", ("error: {config},", "field 'languages'", "no CLDR locale for 'xx'"), config="cod/unknown_language.yaml"),
    # --- config files of any recipe ------------------------------------------------------------------------------
    Case("config-not-yaml", "sap", ("error: {config}:", "not valid YAML"), config="config/not_yaml.yaml"),
    Case("config-not-utf8", "sap", ("error: {config}:", "not valid YAML", "can't decode byte 0xe9"), config="config/not_utf8.yaml"),
    Case("config-not-a-mapping", "sap", ("error: {config}:", "expected a mapping of config keys"), config="config/not_mapping.yaml"),
    Case("config-wrong-type", "sap", ("error: {config},", "field 'runner.batch_size'", "valid integer"), config="config/wrong_type.yaml"),
    Case("config-unknown-key", "sap", ("error: {config},", "field 'sampling.temprature'", "unknown key"), config="config/unknown_section.yaml"),
    Case("config-missing-input", "sap", ("error: {config},", "field 'input.path'", "input file not found"), config="config/missing_input.yaml"),
    Case("config-recipe-mismatch", "sap", ("error: {config},", "field 'recipe'", "config is for recipe 'cod', not 'sap'"), config="config/recipe_mismatch.yaml"),
    Case("config-bad-language-code", "sap", ("error: {config},", "field 'languages'", "not ISO 639 language codes: klingon"), config="config/bad_language_code.yaml"),
    Case("config-openai-without-urls", "sap", ("error: {config},", "field 'engine'", "needs at least one entry in 'base_urls'"), config="config/openai_without_urls.yaml"),
]

LEXICON_CASES = [
    ("lexicon-dump-line-not-json", "not_json_line.json", ("row 3:", "not a Wikidata entity line", "Unterminated string")),
    ("lexicon-dump-line-not-entity", "not_an_entity.json", ("row 3:", "not an entity object with an 'id'")),
    ("lexicon-dump-truncated-gzip", "truncated.json.gz", ("cannot read dump",)),
]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> dict[str, Path]:
    """Finished outputs a failed run must leave alone: EntityCS (for SAP/COD cases) and SAP (for EntityCS cases,
    which would otherwise hit "another config" before their own error)."""
    root = tmp_path_factory.mktemp("earlier")
    server = FakeOpenAIServer()
    try:
        outputs = {"entitycs": earlier_entitycs_output(root / "entitycs"), "sap": earlier_sap_output(root / "sap", server.url)}
    finally:
        server.close()
    return outputs


def _out_with_earlier_output(earlier: dict[str, Path], recipe: str, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(earlier["sap" if recipe == "entitycs" else "entitycs"], out)
    return out


def _case_config(case: Case, tmp_path: Path) -> Path:
    if case.config is not None:
        return CORPUS / case.config
    path = tmp_path / f"{case.id}.yaml"
    text = (
        f"recipe: {case.recipe}\ninput:\n  path: {CORPUS / case.input}\nlanguages: {json.dumps(LANGUAGES[case.recipe])}\n"
        + case.extra.format(corpus=CORPUS)
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_the_corpus_has_at_least_30_files_across_the_recipes():
    files = [p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".py", ".md")]
    assert len(files) >= 30
    for case in CASES:
        assert (CORPUS / (case.input or case.config)).is_file(), case.id
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_with_one_line_and_leaves_output_intact(case: Case, earlier, tmp_path):
    out = _out_with_earlier_output(earlier, case.recipe, tmp_path)
    before = fingerprint(out)
    config = _case_config(case, tmp_path)
    proc = synth_cli("run", case.recipe, "--config", str(config), "--out", str(out), timeout=120)
    line = error_line(proc)
    for fragment in case.expect:
        assert fragment.format(corpus=CORPUS, config=config) in line, f"{fragment!r} not in {line!r}"
    assert fingerprint(out) == before, "a failed run changed the earlier output"


@pytest.mark.parametrize("case_id,name,expect", LEXICON_CASES, ids=[case[0] for case in LEXICON_CASES])
def test_bad_wikidata_dump_fails_with_one_line_and_keeps_the_earlier_lexicon(case_id, name, expect, tmp_path):
    out = tmp_path / "lexicon.parquet"
    shutil.copy(DATA_DIR / "lexicon" / "cldr.parquet", out)
    before = fingerprint(tmp_path)
    proc = synth_cli("lexicon", "build", str(CORPUS / "lexicon" / name), "--out", str(out), timeout=120)
    line = error_line(proc)
    assert f"{CORPUS / 'lexicon' / name}" in line
    for fragment in expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    after = fingerprint(tmp_path)
    assert after["lexicon.parquet"] == before["lexicon.parquet"]
    # what is left is the resumable build state beside it, never a half-written lexicon
    assert set(after) - set(before) <= {f"lexicon.parquet.parts/{n}" for n in ("checkpoint.json",)}


def test_skip_bad_lines_counts_them_instead(tmp_path):
    proc = synth_cli("lexicon", "build", str(CORPUS / "lexicon" / "not_json_line.json"), "--out", str(tmp_path / "l.parquet"), "--skip-bad-lines")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["bad_lines"] == 1 and stats["entities"] == 2
    assert pq.read_table(tmp_path / "l.parquet").num_rows == 2


# --- the output directory -------------------------------------------------------------------------------------------


def _entitycs(*extra: str) -> list[str]:
    return ["run", "entitycs", "--config", str(CONFIGS / "entitycs.yaml"), "--limit", "20", *extra]


def test_output_path_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    line = error_line(synth_cli(*_entitycs("--out", str(blocker / "out"))))
    assert f"{blocker / 'out'}:" in line and "cannot create the output directory" in line and "not a directory" in line
    assert blocker.read_text() == "not a directory\n"


def test_output_path_is_a_regular_file(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a directory\n")
    line = error_line(synth_cli(*_entitycs("--out", str(blocker))))
    assert f"{blocker}:" in line and "not a directory" in line
    assert blocker.read_text() == "not a directory\n"


def test_read_only_output_directory(earlier, tmp_path):
    out = _out_with_earlier_output(earlier, "sap", tmp_path)
    before = fingerprint(out)
    with read_only_dir(out):
        line = error_line(synth_cli(*_entitycs("--out", str(out))))
    assert f"{out}:" in line and "output is not writable" in line
    assert fingerprint(out) == before


def test_output_of_another_config_publishes_that_config(earlier, tmp_path):
    """Another config into a finished output is not refused: it publishes its own rows, never mixed with the
    earlier config's (which stay in the ledger, so going back costs nothing)."""
    out = tmp_path / "out"
    shutil.copytree(earlier["entitycs"], out)
    proc = synth_cli(*_entitycs("--out", str(out), "--languages", "de,fr"))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    groups = {row["_group"] for row in shard_rows(out, "entitycs")}
    assert groups and groups <= {"de", "fr", "_rejected"}


def test_relative_output_dir_is_relative_to_the_config_file(tmp_path):
    from synth.config_file import load_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.yaml").write_text(
        f"recipe: entitycs\ninput:\n  path: {CORPUS / 'entitycs' / 'single_row.jsonl'}\nlanguages: [de]\noutput:\n  dir: ../out/entitycs\n"
    )
    assert load_config(folder / "run.yaml").output.dir == str(tmp_path / "out" / "entitycs")


@pytest.mark.slow
def test_disk_full_during_the_run(earlier, tmp_path):
    """RLIMIT_FSIZE of 4 KiB in the CLI process: the first write past it (the manifest of the earlier run, then
    the batches' segments) fails with EFBIG. Full disks during a segment commit and during finalize are in
    tests/test_store.py.

    Prefect's database lives in memory for this run, or the server (a child, under the same limit) would fail first.
    """
    out = tmp_path / "out"
    shutil.copytree(earlier["entitycs"], out)
    before = fingerprint(out)
    env = cli_env(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///:memory:",
    )
    # the same config as the earlier run with a larger limit: a legitimate run that extends the output
    args = ["run", "entitycs", "--config", str(CONFIGS / "entitycs.yaml"), "--limit", "120", "--out", str(out)]
    proc = synth_cli(*args, env=env, preexec_fn=disk_full(4096), timeout=300)
    line = error_line(proc, prefect_logs=True)
    assert "disk full (or file size limit reached) while writing" in line and str(out) in line
    assert fingerprint(out) == before
    assert not temp_files(out) and not (out / ".lock").read_text(), "a temp file or a held lock record was left"


# --- merely unusual input: the run completes --------------------------------------------------------------------------


@pytest.fixture
def ephemeral_prefect(monkeypatch):
    """Prefect's in-process ephemeral server, whatever an earlier test pointed PREFECT_API_URL at.

    Prefect is imported here, not first inside CliRunner: its log handlers would keep CliRunner's stderr,
    which is closed once the command returns.
    """
    import prefect.main  # noqa: F401  (sets up Prefect's logging on the real stderr)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture
def fake_engine():
    server = FakeOpenAIServer()
    yield server
    server.close()


def _run_in_process(recipe: str, config: Path, out: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["run", recipe, "--config", str(config), "--out", str(out)])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def _unchanged_except(recipe: str, before: dict[str, str], after: dict[str, str]) -> None:
    """Files of the earlier run (another recipe) are untouched; the card and manifest may be rewritten."""
    for path, digest in before.items():
        if path not in ("README.md", "manifest.json"):
            assert after.get(path) == digest, f"{path} changed"


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.slow
def test_sap_single_row_and_a_1mb_passage_in_less_than_a_batch(earlier, fake_engine, ephemeral_prefect, tmp_path):
    big = tmp_path / "with_1mb_passage.jsonl"
    words = (f"word{i % 997}" for i in range(200_000))
    passage = {"id": "huge", "title": "Huge", "text": " ".join(words)[: 2**20]}
    big.write_text((CORPUS / "sap" / "smaller_than_batch.jsonl").read_text() + json.dumps(passage) + "\n")
    assert big.stat().st_size > 2**20
    cases = {"single": CORPUS / "sap" / "single_row.jsonl", "small-batch+1mb": big}
    for name, input_path in cases.items():
        out = _out_with_earlier_output(earlier, "sap", tmp_path / name)
        before = fingerprint(out)
        config = tmp_path / f"{name}.yaml"
        config.write_text(sap_config_text(input_path, fake_engine.url, batch_size=16))
        _run_in_process("sap", config, out)
        rows = shard_rows(out, "sap")
        passages = [json.loads(line)["id"] for line in input_path.read_text().splitlines() if line.strip()]
        assert sorted((r["source_id"], r["lang"]) for r in rows) == sorted((p, lang) for p in passages for lang in ("de", "zh"))
        assert len({r["id"] for r in rows}) == len(rows)
        state = _manifest(out)["recipes"]["sap"]
        assert state["status"] == "complete" and state["units_total"] == len(passages)
        _unchanged_except("sap", before, fingerprint(out))
        assert _manifest(out)["recipes"]["entitycs"] == json.loads((earlier["entitycs"] / "manifest.json").read_text())["recipes"]["entitycs"]
    huge = [r for r in rows if r["source_id"] == "huge"]
    assert [r["reject_reason"] for r in huge] == ["passage_too_long"] * 2 and all(r["_group"] == "_rejected" for r in huge)
    assert all(len(json.dumps(seen.body)) < 2**19 for seen in fake_engine.posts()), "the 1 MB passage reached the engine"


@pytest.mark.slow
def test_entitycs_and_cod_single_record(earlier, fake_engine, ephemeral_prefect, tmp_path):
    for recipe, input_name, languages, extra in (
        ("entitycs", "entitycs/single_row.jsonl", ["de", "fr", "ja"], ""),
        ("cod", "cod/single_dialogue.json", ["sw"],
         f"engine:\n  backend: openai\n  base_urls: [{fake_engine.url}]\n  model: fake-model\n  max_retries: 1\n"),
    ):
        out = _out_with_earlier_output(earlier, recipe, tmp_path / recipe)
        before = fingerprint(out)
        config = tmp_path / f"{recipe}.yaml"
        config.write_text(f"recipe: {recipe}\ninput:\n  path: {CORPUS / input_name}\nlanguages: {json.dumps(languages)}\n{extra}")
        _run_in_process(recipe, config, out)
        rows = shard_rows(out, recipe)
        assert rows and {r["source_id"] for r in rows} == ({"s1"} if recipe == "entitycs" else {"bad_00001"})
        if recipe == "entitycs":
            assert sorted(r["lang"] for r in rows) == languages  # Paris and France have labels in all three
        else:
            assert [r["lang"] for r in rows] == ["sw"] and rows[0]["turns_total"] == 2
        assert _manifest(out)["recipes"][recipe]["status"] == "complete"
        _unchanged_except(recipe, before, fingerprint(out))
