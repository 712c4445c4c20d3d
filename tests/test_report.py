"""The run report renders for a real output and its numbers match the manifest."""

import json

from typer.testing import CliRunner

from synth.cli import app
from synth.config import load_config
from synth.paths import DATA_DIR
from synth.pipeline import run_recipe
from synth.report import report_data


def test_report_matches_manifest(tmp_path):
    config = load_config(DATA_DIR / "configs" / "entitycs.yaml", overrides={"input.limit": 60, "output.dir": str(tmp_path)})
    run_recipe(config)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    index = tmp_path / "report" / "index.html"
    assert index.exists()
    html = index.read_text()
    for name in ("entitycs-rows.png", "entitycs-reasons.png", "entitycs-lengths.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
        assert name in html
    totals = json.loads((tmp_path / "manifest.json").read_text())["recipes"]["entitycs"]["totals"]
    data = report_data(tmp_path)["recipes"]["entitycs"]
    assert data["kept"] == totals["kept"] and data["rejected"] == totals["rejected"]
    assert data["reasons"] == totals["reject_reasons"]
    for lang, kept in totals["kept"].items():
        assert f"<td>{lang}</td><td>{kept}</td>" in html


def test_report_refuses_a_directory_without_manifest(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json" in result.output and "Traceback" not in result.output
