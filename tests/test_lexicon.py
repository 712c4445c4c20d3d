"""Entity lexicons: the streaming, resumable Wikidata builder, the shipped CLDR lexicon and lookups."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import synth.recipes.entitycs.wikidata as wikidata_module
from synth.errors import ConfigError, InputError
from synth.recipes.entitycs.cldr import CLDR_LANGUAGES, build_cldr_lexicon
from synth.recipes.entitycs.lexicon import DEFAULT_LEXICON, LEXICON_SCHEMA, label_for, load_default_lexicon, load_lexicon
from synth.recipes.entitycs.wikidata import build_from_wikidata_dump
from synth.filters.lid import check_script
from synth.paths import DATA_DIR, PROJECT_ROOT
from synth.sources.wikipedia import DEFAULT_DUMP

FIXTURE = Path(__file__).parent / "fixtures" / "wikidata-sample.json.gz"


def test_wikidata_fixture_builds(tmp_path):
    out = tmp_path / "wd.parquet"
    stats = build_from_wikidata_dump(FIXTURE, out, {"de", "ja", "hi"})
    assert stats["entities"] == 23 and stats["no_enwiki"] == 1 and stats["not_item"] == 1
    assert stats["labels"] == 23 * 3 and stats["bad_lines"] == 0
    assert pq.read_schema(out).equals(LEXICON_SCHEMA)
    assert not (tmp_path / "wd.parquet.parts").exists()
    lexicon = load_lexicon(out)
    assert lexicon.available_languages == {"de", "ja", "hi"}
    japan = lexicon.lookup("Japan")
    assert japan.entity_id == "Q17"
    assert lexicon.labels(japan) == {
        "de": ("Japan", "wikidata"),
        "ja": ("日本", "wikidata"),
        "hi": ("जापान", "wikidata"),
    }
    # English label and Wikidata aliases resolve; the first letter is case-insensitive
    assert lexicon.lookup("United States of America").entity_id == "Q30"
    assert lexicon.lookup("honest Abe").entity_id == "Q91"
    assert lexicon.lookup("German").entity_id == "Q188"
    assert lexicon.lookup("Wikidata Sandbox") is None  # no English Wikipedia article
    assert lexicon.lookup("Atlantis") is None


def test_redirects_become_aliases(tmp_path):
    out = tmp_path / "wd.parquet"
    build_from_wikidata_dump(FIXTURE, out, {"de"}, redirects=DEFAULT_DUMP)
    lexicon = load_lexicon(out)
    assert lexicon.lookup("AndorrA").entity_id == "Q228"  # "AndorrA" redirects to "Andorra" in the enwiki dump
    assert lexicon.lookup("AlexanderTheGreat").entity_id == "Q8409"
    tsv = tmp_path / "redirects.tsv"
    tsv.write_text("Deutschland_(country)\tGermany\nLand of the rising sun\tJapan\n", encoding="utf-8")
    build_from_wikidata_dump(FIXTURE, out, {"de"}, redirects=tsv)
    lexicon = load_lexicon(out)
    assert lexicon.lookup("Land of the rising sun").entity_id == "Q17"
    assert lexicon.lookup("Deutschland (country)").entity_id == "Q183"


def _dump_with_bad_line(tmp_path: Path) -> Path:
    lines = gzip.decompress(FIXTURE.read_bytes()).decode("utf-8").splitlines()
    lines.insert(4, '{"type":"item","id":"Q1", broken')
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))
    return path


def test_bad_line_names_file_and_line(tmp_path):
    dump = _dump_with_bad_line(tmp_path)
    with pytest.raises(InputError, match=r"bad\.json\.gz, row 5: not a Wikidata entity line"):
        build_from_wikidata_dump(dump, tmp_path / "out.parquet", {"de"})
    stats = build_from_wikidata_dump(dump, tmp_path / "out2.parquet", {"de"}, skip_bad_lines=True)
    assert stats["bad_lines"] == 1 and stats["entities"] == 23


def test_build_resumes_after_a_crash(tmp_path, monkeypatch):
    clean = tmp_path / "clean.parquet"
    build_from_wikidata_dump(FIXTURE, clean, {"de", "ja"}, part_rows=4)

    out = tmp_path / "resumed.parquet"
    real_write = wikidata_module.write_lexicon
    calls = []

    def crash_on_third_part(rows, path):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies while writing part 3
        real_write(rows, path)

    monkeypatch.setattr(wikidata_module, "write_lexicon", crash_on_third_part)
    with pytest.raises(KeyboardInterrupt):
        build_from_wikidata_dump(FIXTURE, out, {"de", "ja"}, part_rows=4)
    checkpoint = json.loads((tmp_path / "resumed.parquet.parts" / "checkpoint.json").read_text())
    assert checkpoint["parts"] == ["part-00000.parquet", "part-00001.parquet"]
    assert not out.exists()

    monkeypatch.setattr(wikidata_module, "write_lexicon", real_write)
    stats = build_from_wikidata_dump(FIXTURE, out, {"de", "ja"}, part_rows=4)
    assert stats["resumed_from_line"] == checkpoint["lines_done"] > 0
    assert stats["entities"] == 23 and stats["parts"] == 6
    assert pq.read_table(out).equals(pq.read_table(clean))
    assert pq.ParquetFile(out).metadata.num_row_groups == 6


def test_checkpoint_of_another_build_is_refused(tmp_path):
    out = tmp_path / "wd.parquet"
    (tmp_path / "wd.parquet.parts").mkdir()
    (tmp_path / "wd.parquet.parts" / "checkpoint.json").write_text(json.dumps({"key": {"dump": "other"}}))
    with pytest.raises(InputError, match="another dump or language set"):
        build_from_wikidata_dump(FIXTURE, out, {"de"})


MEMORY_PROBE = """
import gzip, json, resource, sys
from synth.recipes.entitycs.wikidata import build_from_wikidata_dump
n, folder = int(sys.argv[1]), sys.argv[2]
dump = f"{folder}/dump-{n}.json.gz"
with gzip.open(dump, "wt", encoding="utf-8", compresslevel=1) as handle:
    handle.write("[\\n")
    for i in range(n):
        labels = {lang: {"language": lang, "value": f"{lang} name {i}"} for lang in ("en", "de", "fr", "hi", "ja")}
        entity = {"type": "item", "id": f"Q{i + 1}", "labels": labels,
                  "aliases": {"en": [{"language": "en", "value": f"alias {i}"}]},
                  "sitelinks": {"enwiki": {"site": "enwiki", "title": f"Entity {i}", "badges": []}}}
        handle.write(json.dumps(entity) + (",\\n" if i < n - 1 else "\\n"))
    handle.write("]\\n")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stats = build_from_wikidata_dump(dump, f"{folder}/out-{n}.parquet", {"de", "hi"}, part_rows=2000)
assert stats["entities"] == n, stats
print(json.dumps({"before_kb": before, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_memory_does_not_grow_with_dump_size(tmp_path):
    """Peak RSS of a 100k-entity build stays within a few MB of a 10k one (rows are flushed per part)."""

    def peak_growth_kb(n: int) -> int:
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(n), str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=PROJECT_ROOT,
        )
        numbers = json.loads(done.stdout.strip().splitlines()[-1])
        return numbers["peak_kb"] - numbers["before_kb"]

    small, large = peak_growth_kb(10_000), peak_growth_kb(100_000)
    # A build holding all rows would need ~100 MB more for 90k more entities.
    assert large - small < 16 * 1024, (small, large)


def test_shipped_cldr_lexicon():
    assert DEFAULT_LEXICON == DATA_DIR / "lexicon" / "cldr.parquet"
    assert (DATA_DIR / "lexicon" / "LICENSE.md").is_file()
    lexicon = load_default_lexicon()
    assert len(lexicon.available_languages) >= 20
    assert set(CLDR_LANGUAGES) == lexicon.available_languages
    kinds = {entity.entity_id.split(":")[1] for entity in lexicon}
    assert kinds == {"territory", "language", "currency", "city"}
    japan = lexicon.lookup("Japan")
    assert japan.entity_id == "cldr:territory:JP"
    assert lexicon.labels(japan)["ja"] == ("日本", "cldr")
    assert lexicon.lookup("Arabic language").entity_id == "cldr:language:ar"
    assert lexicon.lookup("Turkey").entity_id == "cldr:territory:TR"  # CLDR says "Türkiye"
    assert lexicon.lookup("US dollar").entity_id == "cldr:currency:USD"  # whole-name case-insensitive
    assert lexicon.lookup("Tokyo").entity_id == "cldr:city:Asia/Tokyo"
    assert lexicon.lookup("Singapore").entity_id == "cldr:territory:SG"  # the territory wins over the city
    assert lexicon.labels(lexicon.lookup("Myanmar"))["ja"] == ("ミャンマー", "cldr")
    sources = {source for entity in lexicon for _, source in lexicon.labels(entity).values()}
    assert sources == {"cldr"}


def test_script_languages_get_no_latin_fallback_cities():
    lexicon = load_default_lexicon()
    for entity in lexicon:
        if entity.entity_id.startswith("cldr:city:"):
            for lang in ("hi", "ja", "ru", "ar", "ko", "th"):
                label = lexicon.labels(entity).get(lang)
                assert label is None or check_script(label[0], lang), (entity, lang, label)
    assert lexicon.labels(lexicon.lookup("Berlin"))["de"] == ("Berlin", "cldr")  # root name, Latin-script German


def test_label_for():
    assert label_for("Germany", "ja") == "ドイツ"
    assert label_for("Japan", "pt-BR") == "Japão"
    assert label_for("Paris", "ru") == "Париж"
    assert label_for("Los Angeles", "hi") == "लॉस एंजिल्स"
    assert label_for("Atlantis", "de") is None
    assert label_for("Germany", "tlh") is None


def test_build_cldr_lexicon(tmp_path):
    out = tmp_path / "cldr.parquet"
    counts = build_cldr_lexicon(out, ["de", "hi"])
    assert counts["territory"] > 250 and counts["city"] > 400 and counts["currency"] > 100
    lexicon = load_lexicon(out)
    assert lexicon.available_languages == {"de", "hi"}
    assert lexicon.labels(lexicon.lookup("Germany"))["de"] == ("Deutschland", "cldr")
    with pytest.raises(ConfigError, match="no CLDR locale 'xx'"):
        build_cldr_lexicon(out, ["xx"])


def test_load_lexicon_errors(tmp_path):
    with pytest.raises(InputError, match="lexicon not found"):
        load_lexicon(tmp_path / "missing.parquet")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"entity_id": ["Q1"]}), other)
    with pytest.raises(InputError, match="missing column"):
        load_lexicon(other)


def test_languages_filter_keeps_the_list_of_all(tmp_path):
    lexicon = load_lexicon(None, languages=["de"])
    assert lexicon.labels(lexicon.lookup("Japan")) == {"de": ("Japan", "cldr")}
    assert "ja" in lexicon.available_languages
    assert lexicon.examples("de", 3) == lexicon.examples("de", 3) and len(lexicon.examples("de", 3)) == 3
