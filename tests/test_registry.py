"""The recipe registry: recipes declare themselves, everything else reads the registry.

A recipe package from outside polysynth (tests/recipe_package: ``upper``, registered under the ``polysynth.recipes``
entry-point group in its own pyproject.toml) is installed into a temporary folder and run through the CLI, the
Prefect flow and a served deployment, with nothing of it in synth/ or flows/.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from synth.config_file import load_config, parse_config
from synth.errors import ConfigError
from synth.recipes import recipe_class, recipe_names
from synth.recipes.base import Recipe
from tests.prefect_server import PrefectServer, background, background_log, prefect_api, prefect_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tests" / "recipe_package"
SENTENCES = ROOT / "data" / "samples" / "wiki_sentences.jsonl"
BUILT_IN = ("cod", "entitycs", "sap")
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process that sees the ``upper`` recipe package installed (pip --target)."""
    target, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("src") / "recipe_package"
    shutil.copytree(PACKAGE, source)  # setuptools builds inside the source folder: keep the repository clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(source)],
        check=True, timeout=INSTALL_TIMEOUT_S, capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]), HF_HUB_OFFLINE="1")
    env.pop("PREFECT_API_URL", None)
    return env


def _config(tmp_path: Path, out: Path, **upper: object) -> Path:
    path = tmp_path / "upper.yaml"
    config = {"recipe": "upper", "input": {"path": str(SENTENCES), "limit": 30}, "languages": ["en"],
              "output": {"dir": str(out)}, "runner": {"batch_size": 7}, "upper": upper}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _synth(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=ROOT)


def _python(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=ROOT)


# -- the shipped recipes ---------------------------------------------------------------------------------------------


def test_the_shipped_recipes_are_registered_through_entry_points():
    assert set(BUILT_IN) <= set(recipe_names())


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_recipe_declares_what_the_rest_reads(name: str):
    cls = recipe_class(name)
    assert issubclass(cls, Recipe) and cls.name == name
    config = load_config(ROOT / "data" / "configs" / f"{name}.yaml")
    assert type(config) is cls.config_model and config.recipe == name
    assert cls.card.title and cls.card.citation and cls.prompts().is_dir()
    assert cls.id_field and cls.view.length_columns and cls.dedup_columns


def test_an_unknown_recipe_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="expected one of .*entitycs.*sap") as error:
        parse_config({"recipe": "nope", "input": {"path": "x"}, "languages": ["de"]}, source="c.yaml")
    assert error.value.file == "c.yaml" and error.value.field == "recipe"
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        recipe_class("nope")


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_no_recipe_name_is_written_in_code_outside_its_package():
    """Docstrings may use a recipe as an example; code may not branch on one (a string literal equal to a name)."""
    offenders = []
    for path in sorted([*(ROOT / "synth").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]):
        relative = path.relative_to(ROOT).as_posix()
        docstrings = {ast.get_docstring(node, clean=False) for node in ast.walk(ast.parse(path.read_text("utf-8")))
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
        for name in BUILT_IN:
            if relative.startswith(f"synth/recipes/{name}/"):
                continue
            if name in _string_constants(path) - docstrings:
                offenders.append(f"{relative}: {name!r}")
    assert offenders == []


# -- a recipe from another package -----------------------------------------------------------------------------------


def test_an_installed_recipe_is_listed(installed):
    listed = _synth(installed, "recipes")
    assert listed.returncode == 0, listed.stderr
    assert "upper" in listed.stdout and "Upper-cased sentences" in listed.stdout


def test_an_installed_recipe_runs_through_the_cli_flow_and_store(installed, tmp_path: Path):
    out = tmp_path / "out"
    config = _config(tmp_path, out, min_words=20)
    first = _synth(installed, "run", "upper", "--config", str(config))
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    state = manifest["recipes"]["upper"]
    assert state["status"] == "complete" and state["units_total"] == 30
    rows = [row for shard in state["shards"] for row in pq.read_table(out / shard["path"]).to_pylist()]
    source = [json.loads(line) for line in SENTENCES.read_text(encoding="utf-8").splitlines()[:30]]
    expected = {s["sentence_id"]: s["text"] for s in source}
    assert sorted(row["source_id"] for row in rows) == sorted(expected)
    for row in rows:
        short = len(expected[row["source_id"]].split()) < 20
        assert row.get("reject_reason") == ("too_short" if short else None)
        assert row["upper"] == (None if short else expected[row["source_id"]].upper())
        assert row["recipe"] == "upper" and row["prompt_version"] == "upper/style.v1" and row["model"] == "none"
    assert 0 < sum(state["totals"]["kept"].values()) < 30
    # The card section and the report come from the recipe's declarations.
    assert "Upper-cased sentences" in (out / "README.md").read_text(encoding="utf-8")
    shown = _synth(installed, "show", str(out), "upper-en", "-n", "2")
    assert shown.returncode == 0 and "UPPER" not in shown.stderr, shown.stderr

    # Its prompts folder is part of every row's identity: a run with the same config generates nothing.
    again = _synth(installed, "run", "upper", "--config", str(config))
    assert again.returncode == 0 and json.loads((out / "manifest.json").read_text())["recipes"]["upper"][
        "totals"]["units_generated"] == 0


def test_an_installed_recipe_names_its_own_id_field_in_input_errors(installed, tmp_path: Path):
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()[:3]
    bad = tmp_path / "dup.jsonl"
    bad.write_text("\n".join([*lines, lines[0]]) + "\n", encoding="utf-8")
    config = tmp_path / "dup.yaml"
    config.write_text(yaml.safe_dump({"recipe": "upper", "input": {"path": str(bad)}, "languages": ["en"],
                                      "output": {"dir": str(tmp_path / "out")}}), encoding="utf-8")
    result = _synth(installed, "run", "upper", "--config", str(config))
    assert result.returncode != 0
    assert f"{bad}, row 4, field 'sentence_id': duplicated id" in result.stderr


def test_an_installed_recipe_has_a_flow_for_deployment_entrypoints(installed, tmp_path: Path):
    code = (
        "from prefect.flows import load_flow_from_entrypoint\n"
        "from flows.deploy import serve_deployments\n"
        "from pathlib import Path\n"
        f"flow = load_flow_from_entrypoint('{ROOT / 'flows' / 'recipe.py'}:upper_flow')\n"
        "print(flow.name, sorted(flow.parameters.properties))\n"
        f"(deployment,) = serve_deployments(['upper'], None, Path({str(tmp_path)!r}))\n"
        "print(deployment.entrypoint, deployment.parameters['config']['recipe'])\n"
    )
    (tmp_path / "data" / "configs").mkdir(parents=True)
    _config(tmp_path, tmp_path / "out").rename(tmp_path / "data" / "configs" / "upper.yaml")
    result = _python(installed, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["polysynth-upper ['config', 'out']", "flows.recipe.upper_flow upper"]


@pytest.mark.slow
def test_an_installed_recipe_runs_as_a_served_deployment(installed, prefect_api: PrefectServer, tmp_path: Path):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    project, out = tmp_path / "project", tmp_path / "out"
    (project / "data" / "configs").mkdir(parents=True)
    _config(tmp_path, out).rename(project / "data" / "configs" / "upper.yaml")
    script = f"from pathlib import Path; from flows.deploy import serve; serve(['upper'], None, Path({str(project)!r}))"
    env = {"PYTHONPATH": installed["PYTHONPATH"], "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    with background(prefect_api, "serve-upper", [sys.executable, "-c", script], **env):
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("polysynth-upper/serve")
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, background_log(prefect_api, "serve-upper")
                    time.sleep(1)
        flow_run = run_deployment("polysynth-upper/serve", timeout=RUN_TIMEOUT_S, poll_interval=2)
    assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{background_log(prefect_api, 'serve-upper')}"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["recipes"]["upper"]["status"] == "complete" and manifest["recipes"]["upper"]["units_total"] == 30
