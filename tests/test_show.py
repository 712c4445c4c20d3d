"""``synth show`` and ``synth status`` on outputs made by real runs, through the CLI.

EntityCS needs no model, so most tests read a real EntityCS output; the SAP and COD views need the tiny test model
(in-process vLLM), so those tests are ``slow`` and share one output of all three recipes. The tiny model writes
junk, so most SAP and COD rows are rejected: that is what the rejected view and the COD transcript are shown on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from synth.config_file import load_config
from synth.paths import DATA_DIR
from synth.pipeline import run_recipe

REPO = Path(__file__).resolve().parents[1]
WIDE = {"COLUMNS": "1000"}  # rows print on one line, so a row's text can be found whole
HOLDER = (
    "import sys, time; from pathlib import Path; from synth.store.lock import OutputLock; "
    "OutputLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
)
# A run in flight: the driver has taken the lock, planned 60 units (40 done by the fixture's run), written its run
# record and committed one batch of 10; then it waits, as a run waits on its next batch.
IN_FLIGHT = """
import sys, time
from synth.report.browse import record_run_start
from synth.config_file import load_config
from synth.paths import DATA_DIR
from synth.pipeline import RecipeRun, process_batch

overrides = {"input.limit": 60, "runner.batch_size": 10, "output.dir": sys.argv[1]}
config = load_config(DATA_DIR / "configs" / "entitycs.yaml", overrides=overrides)
run = RecipeRun(config).__enter__()
record_run_start(run.out, run.recipe, units_total=run.units_total, units_pending=run.units_pending)
run.record(process_batch(config, run.out, next(run.pending_batches())))
print("in flight", flush=True)
time.sleep(120)
"""


def _tiny_engine() -> dict:
    from tests.llm_fixtures import tiny_test_model_path

    return {"engine.model": str(tiny_test_model_path()), "engine.dtype": "float32", "engine.max_model_len": 2048}


@pytest.fixture(scope="module")
def entitycs_output(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("show") / "out"
    run_recipe(load_config(DATA_DIR / "configs" / "entitycs.yaml", overrides={"input.limit": 40, "output.dir": str(out)}))
    return out


@pytest.fixture(scope="module")
def three_recipes_output(entitycs_output, tmp_path_factory) -> Path:
    """The EntityCS output plus a SAP and a COD run into the same directory (one engine start for both)."""
    out = tmp_path_factory.mktemp("show-all") / "out"
    shutil.copytree(entitycs_output, out)
    tiny = {**_tiny_engine(), "input.limit": 2, "output.dir": str(out)}
    sap = {"languages": ["de", "zh"], "sap.summary_max_tokens": 8, "sap.query_max_tokens": 6}
    cod = {"languages": ["ru"], "cod.max_turns": 3, "cod.turn_max_tokens": 8, "cod.max_attempts": 1}
    run_recipe(load_config(DATA_DIR / "configs" / "sap.yaml", overrides={**tiny, **sap}))
    run_recipe(load_config(DATA_DIR / "configs" / "cod.yaml", overrides={**tiny, **cod}))
    return out


def _synth(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _shard_rows(out: Path, recipe: str, group: str) -> list[dict]:
    """The rows of one group (a language, or ``_rejected``) from the shards the manifest lists, in order."""
    shards = [s for s in _manifest(out)["recipes"][recipe]["shards"] if s["group"] == group]
    return [row for shard in shards for row in pq.read_table(out / shard["path"]).to_pylist()]


def _viewed_group(out: Path, recipe: str) -> tuple[str, str]:
    """(config, group) to look at for ``recipe``: its largest language if any row was kept, else its rejected rows."""
    kept = _manifest(out)["recipes"][recipe]["totals"]["kept"]
    if kept:
        lang = max(sorted(kept), key=kept.get)
        return f"{recipe}-{lang}", lang
    return f"{recipe}-rejected", "_rejected"


def _table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the table line whose first cell is ``first_cell``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{output}")


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)


def _started(proc: subprocess.Popen, ready: str) -> subprocess.Popen:
    line = proc.stdout.readline().strip()
    if line != ready:
        proc.kill()
        raise AssertionError(f"helper process did not start: {line!r}")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


@pytest.fixture
def held_output(entitycs_output, tmp_path):
    """A copy of the EntityCS output whose lock a live process holds (nothing else running)."""
    out = tmp_path / "out"
    shutil.copytree(entitycs_output, out)
    proc = _started(_python(HOLDER, str(out)), "locked")
    yield out, proc
    _stop(proc)


@pytest.fixture
def in_flight_output(entitycs_output, tmp_path):
    """A copy of the EntityCS output with a live EntityCS run in flight (see IN_FLIGHT)."""
    out = tmp_path / "out"
    shutil.copytree(entitycs_output, out)
    proc = _started(_python(IN_FLIGHT, str(out)), "in flight")
    yield out, proc
    _stop(proc)


# -- synth show ---------------------------------------------------------------------------------------------------


def test_show_without_config_lists_every_config_with_its_counts(entitycs_output):
    result = _synth("show", str(entitycs_output))
    assert result.exit_code == 0, result.output
    totals = _manifest(entitycs_output)["recipes"]["entitycs"]["totals"]
    listed = {
        lang: _table_row(result.output, f"entitycs-{lang}")[1:3]
        for lang in set(totals["kept"]) | set(totals["rejected"])
    }
    expected = {
        lang: [str(totals["kept"].get(lang, 0)), str(totals["rejected"].get(lang, 0))]
        for lang in set(totals["kept"]) | set(totals["rejected"])
    }
    assert listed == expected


def test_show_prints_entitycs_rows_with_their_code_switched_sentences(entitycs_output):
    config, group = _viewed_group(entitycs_output, "entitycs")
    result = _synth("show", str(entitycs_output), config, "-n", "3")
    assert result.exit_code == 0, result.output
    sentences = [row["cs_sentence"] for row in _shard_rows(entitycs_output, "entitycs", group)[:3]]
    assert [sentence in result.output for sentence in sentences] == [True] * len(sentences)


def test_show_rejected_prints_each_row_with_its_reason(entitycs_output):
    result = _synth("show", str(entitycs_output), "entitycs-rejected", "-n", "3")
    assert result.exit_code == 0, result.output
    rows = _shard_rows(entitycs_output, "entitycs", "_rejected")[:3]
    lines = result.output.splitlines()
    shown = [any(row["en_sentence"] in line and row["reject_reason"] in line for line in lines) for row in rows]
    assert shown == [True] * len(rows)


def test_show_reason_keeps_only_rows_with_that_reason(entitycs_output):
    rejected = _shard_rows(entitycs_output, "entitycs", "_rejected")
    reason = rejected[0]["reject_reason"]
    result = _synth("show", str(entitycs_output), "entitycs-rejected", "--reason", reason, "--json", "-n", "1000")
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.output.splitlines()]
    assert [(row["id"], row["reject_reason"]) for row in printed] == [
        (row["id"], reason) for row in rejected if row["reject_reason"] == reason
    ]


def test_show_json_prints_the_parquet_rows_with_every_column(entitycs_output):
    config, group = _viewed_group(entitycs_output, "entitycs")
    result = _synth("show", str(entitycs_output), config, "--json", "-n", "1000")
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.output.splitlines()]
    rows = _shard_rows(entitycs_output, "entitycs", group)
    assert [(row["id"], sorted(row)) for row in printed] == [(row["id"], sorted(row)) for row in rows]


def test_show_unknown_config_is_one_line_naming_the_configs(entitycs_output):
    result = _synth("show", str(entitycs_output), "entitycs-xx")
    config, _ = _viewed_group(entitycs_output, "entitycs")
    assert (result.exit_code, len(result.output.strip().splitlines()), "Traceback" in result.output) == (2, 1, False)
    assert config in result.output and "entitycs-rejected" in result.output


def test_show_unknown_reason_is_one_line_naming_the_reasons(entitycs_output):
    result = _synth("show", str(entitycs_output), "entitycs-rejected", "--reason", "no_such_reason")
    reason = _shard_rows(entitycs_output, "entitycs", "_rejected")[0]["reject_reason"]
    assert (result.exit_code, len(result.output.strip().splitlines()), reason in result.output) == (2, 1, True)


@pytest.mark.parametrize("command", ["show", "status"])
def test_a_directory_without_manifest_is_refused_naming_manifest_json(command, tmp_path):
    result = _synth(command, str(tmp_path / "nothing-here"))
    assert (result.exit_code, "manifest.json" in result.output, "Traceback" in result.output) == (2, True, False)


def test_user_text_is_printed_as_written_not_as_markup():
    from rich.console import Console

    from synth.report.browse import highlight_spans

    text = "[bold]not markup[/bold] in <de>Athen</de>"
    console = Console(record=True, width=200)
    console.print(highlight_spans(text, [(text.index("Athen"), text.index("Athen") + 5)]))
    assert console.export_text().strip() == text


@pytest.mark.slow
def test_show_prints_sap_queries_beside_their_passage(three_recipes_output):
    config, group = _viewed_group(three_recipes_output, "sap")
    result = _synth("show", str(three_recipes_output), config, "-n", "4")
    assert result.exit_code == 0, result.output
    rows = _shard_rows(three_recipes_output, "sap", group)[:4]
    lines = [line for line in result.output.splitlines() if "│" in line]
    shown = [
        any(row["passage_id"] in line and row["lang"] in line and row["query"] in line for line in lines) for row in rows
    ]
    assert shown == [True] * len(rows)


@pytest.mark.slow
def test_show_prints_cod_dialogues_as_transcripts(three_recipes_output):
    config, group = _viewed_group(three_recipes_output, "cod")
    result = _synth("show", str(three_recipes_output), config, "-n", "1")
    assert result.exit_code == 0, result.output
    turns = _shard_rows(three_recipes_output, "cod", group)[0]["turns"]
    expected = [f"{turn['speaker']}: {turn['utterance'] or '(not generated)'}" for turn in turns]
    printed = [line for line in result.output.splitlines() if line.startswith(("USER: ", "SYSTEM: "))]
    assert [line.split("  [")[0] for line in printed] == expected


# -- synth status -------------------------------------------------------------------------------------------------


def _status_counts(output: str, recipe: str) -> tuple[str, str, str, str]:
    cells = _table_row(output, recipe)
    return cells[1], cells[2], cells[3], cells[4]  # state, units done/total, kept, rejected


def _manifest_counts(out: Path, recipe: str) -> tuple[str, str, str, str]:
    state = _manifest(out)["recipes"][recipe]
    totals = state["totals"]
    units = f"{state['units_total'] - state['units_missing']}/{state['units_total']}"
    return "complete", units, str(sum(totals["kept"].values())), str(sum(totals["rejected"].values()))


def test_status_says_complete_with_the_manifest_counts(entitycs_output):
    result = _synth("status", str(entitycs_output))
    assert result.exit_code == 0, result.output
    assert _status_counts(result.output, "entitycs") == _manifest_counts(entitycs_output, "entitycs")


@pytest.mark.slow
def test_status_counts_every_recipe_of_an_output(three_recipes_output):
    result = _synth("status", str(three_recipes_output))
    assert result.exit_code == 0, result.output
    recipes = ("cod", "entitycs", "sap")
    assert [_status_counts(result.output, r) for r in recipes] == [_manifest_counts(three_recipes_output, r) for r in recipes]


def test_status_names_the_live_process_holding_the_lock(held_output):
    out, holder = held_output
    result = _synth("status", str(out))
    assert f"lock: held by a live run (pid {holder.pid}" in result.output


def test_status_says_the_lock_is_free_once_its_holder_exited(held_output):
    out, holder = held_output
    holder.kill()
    holder.wait()
    result = _synth("status", str(out))
    assert "lock: not held" in result.output


def test_status_shows_a_run_in_flight_with_its_progress(in_flight_output, entitycs_output):
    out, _ = in_flight_output
    done_before = _manifest(entitycs_output)["recipes"]["entitycs"]["units_total"]
    result = _synth("status", str(out))
    assert _status_counts(result.output, "entitycs")[:2] == ("running", f"{done_before + 10}/60")


def test_status_calls_a_killed_run_failed(in_flight_output, entitycs_output):
    out, run = in_flight_output
    run.kill()
    run.wait()
    done_before = _manifest(entitycs_output)["recipes"]["entitycs"]["units_total"]
    result = _synth("status", str(out))
    assert _status_counts(result.output, "entitycs")[:2] == ("failed", f"{done_before + 10}/60")
