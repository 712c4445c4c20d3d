"""The run report, for a real output: an EntityCS run (no model) and a SAP run on the tiny test model (its rows are
mostly rejected) into one directory. Its numbers match the manifest, and headless Chromium renders it: the sample
rows read from the shards are on the page and plotly drew every figure the page declares."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from synth.config_file import load_config
from synth.errors import OutputError
from synth.paths import DATA_DIR
from synth.pipeline import run_recipe
from synth.report.html import (
    KEPT_SAMPLES_PER_LANGUAGE,
    MIN_LINE_POINTS,
    REJECTED_SAMPLES_PER_REASON,
    report_data,
)

CHROMIUM_TIMEOUT_S = 120
# A sample's text is shown whole up to report.TEXT_CHARS and its source up to report.SOURCE_CHARS; a prefix this
# long is on the page either way.
PREFIX_CHARS = 80


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One output with two real runs, and its report written by ``synth report``."""
    from tests.llm_fixtures import tiny_test_model_path

    out = tmp_path_factory.mktemp("report") / "out"
    entitycs = {"input.limit": 60, "output.dir": str(out)}
    run_recipe(load_config(DATA_DIR / "configs" / "entitycs.yaml", overrides=entitycs))
    sap = {
        "output.dir": str(out),
        "engine.model": str(tiny_test_model_path()),
        "engine.dtype": "float32",
        "engine.max_model_len": 2048,
        "input.limit": 2,
        "sap.summary_max_tokens": 8,
        "sap.query_max_tokens": 6,
        "languages": ["de"],
    }
    run_recipe(load_config(DATA_DIR / "configs" / "sap.yaml", overrides=sap))
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    return out


class PageStructure(HTMLParser):
    """What a report page holds: the figure count it declares, plotly's plots and SVGs, and external resources.
    A parser, not a substring count, because the inline plotly.js source contains those class names too."""

    def __init__(self) -> None:
        super().__init__()
        self.declared_figures: int | None = None
        self.plots = 0
        self.svgs = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "body":
            self.declared_figures = int(attributes["data-figures"] or 0)
        self.plots += "js-plotly-plot" in classes
        self.svgs += "main-svg" in classes
        for name in ("src", "href"):
            value = attributes.get(name)
            if value and not value.startswith("#"):
                self.external.append(f"<{tag} {name}={value}>")


def _structure(page: str) -> PageStructure:
    parsed = PageStructure()
    parsed.feed(page)
    return parsed


def _shard_rows(out: Path, recipe: str, group: str) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    shard = next(s for s in manifest["recipes"][recipe]["shards"] if s["group"] == group)
    return pq.read_table(out / shard["path"]).to_pylist()


def _run(*command: str) -> str:
    """Run headless Chromium; its stdout, or a failure showing its stderr."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _on_page(text: str) -> str:
    """How a text's first characters appear in a DOM serialization (text nodes escape only &, < and >)."""
    return html.escape(text[:PREFIX_CHARS], quote=False)


def test_report_matches_manifest(output: Path) -> None:
    page = (output / "report" / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in (output / "report").iterdir()) == ["index.html"]
    structure = _structure(page)
    assert structure.external == [], "the page must open offline, from file://, with nothing beside it"
    assert structure.declared_figures and structure.declared_figures >= 4
    manifest = json.loads((output / "manifest.json").read_text())["recipes"]
    data = report_data(output)
    assert set(data) == set(manifest) == {"entitycs", "sap"}
    for recipe, report in data.items():
        totals = manifest[recipe]["totals"]
        assert report.kept == totals["kept"] and report.rejected == totals["rejected"]
        assert report.reasons == totals["reject_reasons"]
        for lang in set(totals["kept"]) | set(totals["rejected"]):
            row_counts = f"<td>{totals['kept'].get(lang, 0)}</td><td>{totals['rejected'].get(lang, 0)}</td>"
            assert f"<td>{lang}</td>{row_counts}" in page
        assert {lang: len(s) for lang, s in report.kept_samples.items()} == {
            lang: min(n, KEPT_SAMPLES_PER_LANGUAGE) for lang, n in totals["kept"].items()
        }
        assert {reason: len(s) for reason, s in report.rejected_samples.items()} == {
            reason: min(n, REJECTED_SAMPLES_PER_REASON) for reason, n in totals["reject_reasons"].items()
        }
        kept_rows = sum(totals["kept"].values())
        per_kept_row = f"{totals['usage']['completion_tokens'] / kept_rows:,.1f}" if kept_rows else "—"
        assert f"<b>{per_kept_row}</b> output tokens per kept row" in page
    # the SAP run committed one batch: its throughput is a number, not a one-point line
    assert 0 < len(data["sap"].batch_rates) < MIN_LINE_POINTS
    assert "too few for a line" in page and "sap-throughput" not in page


def test_report_renders_in_chromium(output: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    index = output / "report" / "index.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
    ]
    dom = _run(chromium, *flags, "--dump-dom", index.as_uri())
    structure = _structure(dom)
    assert structure.declared_figures and structure.plots == structure.declared_figures, "plotly drew every figure"
    assert structure.svgs >= structure.plots

    # rows straight from the shards: EntityCS kept rows of the first and last language (its samples start
    # collapsed), the first rejected one (no switched sentence: its English source is shown), SAP's rejected rows
    kept_languages = sorted(json.loads((output / "manifest.json").read_text())["recipes"]["entitycs"]["totals"]["kept"])
    first, last = kept_languages[0], kept_languages[-1]
    expected = [_shard_rows(output, "entitycs", lang)[0]["cs_sentence"] for lang in (first, last)]
    rejected = _shard_rows(output, "entitycs", "_rejected")[0]
    expected += [rejected["en_sentence"], rejected["reject_reason"]]
    for row in _shard_rows(output, "sap", "_rejected"):
        expected += [row["query"], row["passage"], row["reject_reason"]]
    for text in expected:
        assert _on_page(text) in dom, f"not on the rendered page: {text!r}"

    screenshot = tmp_path / "report.png"
    _run(chromium, *flags, "--window-size=1280,2400", f"--screenshot={screenshot}", index.as_uri())
    assert screenshot.stat().st_size > 20_000


def test_report_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json" in result.output and "Traceback" not in result.output
    with pytest.raises(OutputError, match="no manifest.json"):
        report_data(tmp_path)
