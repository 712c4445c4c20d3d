"""Deployments: prefect.yaml against the run configs, the deploy/serve helpers, and a real server + worker.

The slow tests share one real ``prefect server`` (tests/prefect_server.py) and run the entitycs recipe
(no LLM) on a few sentences: deploy through ``flows.deploy.deploy``, run the deployment on a process
worker, then check the shards, the manifest and the run-summary artifact; check that an active cron
schedule makes the server schedule runs; deploy the project's prefect.yaml; and serve a recipe with
``flows.deploy.serve`` and trigger a run.

Run: pytest tests/test_deployments.py -m slow
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from flows.deploy import deploy, read_prefect_file, retarget, serve_deployments
from synth.config_file import parse_config
from synth.errors import SynthError
from synth.publish.hub import PushOptions
from tests.prefect_server import (  # noqa: F401  (prefect_api and prefect_server are fixtures)
    PrefectServer,
    background,
    background_log,
    create_pool,
    free_port,
    prefect_api,
    prefect_server,
    server_log,
    start_worker,
    worker_log,
)

ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = ROOT / "prefect.yaml"
RECIPES = ("sap", "entitycs", "cod")
RUN_TIMEOUT_S = 300
SCHEDULE_TIMEOUT_S = 90
TINY_LIMIT = 40  # sentences: 3 batches of 16


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in read_prefect_file(PREFECT_FILE)["deployments"]}


def _absolute_paths(config: dict[str, Any], base: Path) -> dict[str, Any]:
    """A config dump with every file path made absolute against ``base`` (the folder it is relative to)."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else str((base / value).resolve())

    dump = parse_config(config, source=str(base)).model_dump(mode="json")
    dump["input"]["path"] = absolute(dump["input"]["path"])
    dump["output"]["dir"] = absolute(dump["output"]["dir"])
    for section, key in (("entitycs", "lexicon"), ("cod", "schema_path")):
        if section in dump:
            dump[section][key] = absolute(dump[section][key])
    return dump


def _tiny_prefect_file(tmp_path: Path, name: str, out: Path, input_path: Path | None = None) -> Path:
    """prefect.yaml reduced to its entitycs deployment, renamed and on a few sentences (or all of
    ``input_path``) into ``out``."""
    spec = read_prefect_file(PREFECT_FILE)
    (entitycs,) = [d for d in spec["deployments"] if d["name"] == "entitycs"]
    config = dict(entitycs["parameters"]["config"])
    if input_path is None:
        config["input"] = dict(config["input"], limit=TINY_LIMIT)
    else:
        config["input"] = dict(config["input"], path=str(input_path), limit=None)
    config["output"] = dict(config["output"], dir=str(out))
    config["runner"] = dict(config["runner"], batch_size=16)
    deployment = dict(entitycs, name=name, parameters=dict(entitycs["parameters"], config=config))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(spec, deployments=[deployment]), sort_keys=False), encoding="utf-8")
    return path


def _markdown_table(markdown: str) -> dict[str, tuple[int, int]]:
    """``{language: (kept, rejected)}`` from the run-summary artifact's table."""
    rows = re.findall(r"^\| (\S+) \| (\d+) \| (\d+) \|$", markdown, flags=re.MULTILINE)
    return {lang: (int(kept), int(rejected)) for lang, kept, rejected in rows}


# -- prefect.yaml and the helpers, no server ---------------------------------------------------------


def test_prefect_yaml_has_one_deployment_per_recipe_and_publishing():
    spec = read_prefect_file(PREFECT_FILE)
    deployments = _deployments()
    assert set(deployments) == {*RECIPES, "publish"}
    (pull_step,) = spec["pull"]
    assert pull_step["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $PWD }}"
    for name, deployment in deployments.items():
        path, _, function = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), f"{name}: {path} missing"
        assert deployment["work_pool"]["name"] == "polysynth"
        assert "polysynth" in deployment["tags"]
        assert deployment["schedules"] and all(not s["active"] and s["cron"] for s in deployment["schedules"])
        if name in RECIPES:
            assert deployment["entrypoint"] == f"flows/recipe.py:{name}_flow"
            assert deployment["parameters"]["config"]["recipe"] == name
        else:
            assert deployment["entrypoint"] == "flows/publish.py:publish_flow"
            assert set(deployment["parameters"]) == {"out", "options"}
            PushOptions.model_validate(deployment["parameters"]["options"])  # what the flow validates it as


@pytest.mark.parametrize("recipe", RECIPES)
def test_prefect_yaml_configs_mirror_data_configs(recipe):
    """Same run config as data/configs/<recipe>.yaml; paths relative to the repo root instead of the file."""
    inline = _deployments()[recipe]["parameters"]["config"]
    config_file = ROOT / "data" / "configs" / f"{recipe}.yaml"
    from_file = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert _absolute_paths(inline, ROOT) == _absolute_paths(from_file, config_file.parent)
    # Readers open paths as given, relative to the run's working directory (the repo root, by the pull step).
    assert (ROOT / inline["input"]["path"]).is_file()


def test_retarget_sets_the_pool_and_activates_only_recipe_schedules():
    spec = read_prefect_file(PREFECT_FILE)
    derived = {d["name"]: d for d in retarget(spec, "gpu-pool", "15 2 * * *")["deployments"]}
    assert {d["work_pool"]["name"] for d in derived.values()} == {"gpu-pool"}
    for recipe in RECIPES:
        assert derived[recipe]["schedules"] == [{"cron": "15 2 * * *", "timezone": "UTC", "active": True}]
    assert derived["publish"]["schedules"] == _deployments()["publish"]["schedules"]
    unscheduled = {d["name"]: d for d in retarget(spec, "polysynth", None)["deployments"]}
    assert unscheduled == _deployments()
    assert _deployments()["sap"]["work_pool"]["name"] == "polysynth", "retarget must not modify its input"


def test_deploy_refuses_without_a_prefect_api(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(SynthError, match="PREFECT_API_URL is unset"):
            deploy(None, "polysynth", ROOT)


def test_deploy_names_an_unreachable_api():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: url}):
        with pytest.raises(SynthError, match=re.escape(url)):
            deploy(None, "polysynth", ROOT)


def test_deploy_refuses_a_bad_cron_before_contacting_the_api():
    with pytest.raises(SynthError, match="not a valid cron schedule"):
        deploy("every night", "polysynth", ROOT)


def test_serve_deployments_carry_the_run_configs_and_schedule():
    deployments = serve_deployments(["entitycs", "cod"], "0 3 * * *")
    assert [(d.flow_name, d.name) for d in deployments] == [("polysynth-entitycs", "serve"), ("polysynth-cod", "serve")]
    for deployment in deployments:
        config = deployment.parameters["config"]
        assert Path(config["input"]["path"]).is_absolute() and Path(config["output"]["dir"]).is_absolute()
        assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [("0 3 * * *", True)]
    assert serve_deployments(["sap"], None)[0].schedules == []
    with pytest.raises(SynthError, match="unknown recipe 'xyz'"):
        serve_deployments(["xyz"], None)


# -- against a real server ------------------------------------------------------------------------


@pytest.mark.slow
def test_deployment_runs_on_a_process_worker(prefect_api: PrefectServer, tmp_path: Path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.deployments import run_deployment

    pool, out = "polysynth-test", tmp_path / "out"
    create_pool(prefect_api, pool)  # as documented: prefect work-pool create NAME --type process
    names = deploy(None, pool, ROOT, prefect_file=_tiny_prefect_file(tmp_path, "entitycs-tiny", out))
    assert names == ["polysynth-entitycs/entitycs-tiny"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(names[0])
        assert client.read_work_pool(pool).type == "process"
    assert deployment.work_pool_name == pool and deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    ]
    assert [s.active for s in deployment.schedules] == [False]

    with start_worker(prefect_api, pool):
        flow_run = run_deployment(names[0], timeout=RUN_TIMEOUT_S, poll_interval=2)
    assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{worker_log(prefect_api, pool)}"

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    state = manifest["recipes"]["entitycs"]
    assert state["status"] == "complete" and state["shards"]
    rows = 0
    for shard in state["shards"]:
        assert (out / shard["path"]).is_file(), shard["path"]
        rows += pq.read_metadata(out / shard["path"]).num_rows
    totals = state["totals"]
    assert rows == sum(totals["kept"].values()) + sum(totals["rejected"].values()) > 0

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["entitycs-run-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]),
            )
        )
    assert len(artifacts) == 1 and artifacts[0].type == "markdown"
    langs = sorted(set(totals["kept"]) | set(totals["rejected"]))
    assert _markdown_table(artifacts[0].data) == {
        lang: (totals["kept"].get(lang, 0), totals["rejected"].get(lang, 0)) for lang in langs
    }


@pytest.mark.slow
def test_a_deployment_whose_input_grew_generates_only_the_new_records(prefect_api: PrefectServer, tmp_path: Path):
    """A scheduled deployment reruns on an input that grew: only the new records are generated, and the output
    is the direct run's on the grown input."""
    from prefect.deployments import run_deployment

    from synth.config_file import load_config
    from synth.pipeline import run_recipe

    lines = (ROOT / "data" / "samples" / "wiki_sentences.jsonl").read_text(encoding="utf-8").splitlines()
    source, out = tmp_path / "sentences.jsonl", tmp_path / "out"
    source.write_text("\n".join(lines[:23]) + "\n", encoding="utf-8")
    pool = "polysynth-grow"
    create_pool(prefect_api, pool)
    (name,) = deploy(None, pool, ROOT, prefect_file=_tiny_prefect_file(tmp_path, "entitycs-grow", out, source))
    totals = []
    with start_worker(prefect_api, pool):
        for grown_to in (23, 61):
            source.write_text("\n".join(lines[:grown_to]) + "\n", encoding="utf-8")
            flow_run = run_deployment(name, timeout=RUN_TIMEOUT_S, poll_interval=2)
            assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{worker_log(prefect_api, pool)}"
            totals.append(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["recipes"]["entitycs"]["totals"])
    assert [(t["units_generated"], t["units_total"]) for t in totals] == [(23, 23), (38, 61)]

    def published(folder: Path) -> list:
        state = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["recipes"]["entitycs"]
        rows = []
        for shard in state["shards"]:
            table = pq.read_table(folder / shard["path"], columns=["id", "cs_sentence"])
            rows += list(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))
        return sorted(rows)

    config = _deployments()["entitycs"]["parameters"]["config"]
    direct = tmp_path / "direct"
    config_path = tmp_path / "direct.yaml"
    config_path.write_text(yaml.safe_dump(dict(config, input={"path": str(source)}, output={"dir": str(direct)})))
    run_recipe(load_config(config_path))
    assert published(out) == published(direct)


@pytest.mark.slow
def test_active_cron_schedule_makes_scheduled_runs(prefect_api: PrefectServer, tmp_path: Path):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    # A pool without a worker (deploy creates it): the scheduled runs must stay scheduled, not run.
    prefect_file = _tiny_prefect_file(tmp_path, "entitycs-cron", tmp_path / "out")
    (name,) = deploy("* * * * *", "polysynth-cron", ROOT, prefect_file=prefect_file)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [("* * * * *", True)]
        scheduled: list[Any] = []
        deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
        while not scheduled and time.monotonic() < deadline:
            time.sleep(2)
            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
            )
        # No scheduled runs left behind for the rest of the session.
        client.delete_deployment(deployment.id)
    scheduler_errors = [line for line in server_log(prefect_api).splitlines() if "Error:" in line][-3:]
    assert scheduled, f"no scheduled run within {SCHEDULE_TIMEOUT_S} s; server errors: {scheduler_errors}"
    assert all(run.expected_start_time.second == 0 for run in scheduled)


@pytest.mark.slow
def test_project_prefect_yaml_deploys_and_schedules(prefect_api: PrefectServer):
    from prefect import get_client

    names = deploy(None, "polysynth", ROOT)
    assert [name.split("/")[1] for name in names] == ["sap", "entitycs", "cod", "publish"]
    assert deploy("0 3 * * *", "polysynth", ROOT) == names
    with get_client(sync_client=True) as client:
        deployments = {name: client.read_deployment_by_name(name) for name in names}
        for deployment in deployments.values():
            client.delete_deployment(deployment.id)
    for name, deployment in deployments.items():
        expected = [("0 6 * * 1", False)] if name.endswith("/publish") else [("0 3 * * *", True)]
        assert [(s.schedule.cron, s.active) for s in deployment.schedules] == expected, name
        assert deployment.work_pool_name == "polysynth"
    assert deployments[names[0]].parameters["config"]["input"]["path"] == "data/samples/wiki_passages.jsonl"


@pytest.mark.slow
def test_served_recipe_runs_when_triggered(prefect_api: PrefectServer, tmp_path: Path):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    # serve() reads data/configs/<recipe>.yaml under the project root it is given: a tiny one here.
    project, out = tmp_path / "project", tmp_path / "out"
    (project / "data" / "configs").mkdir(parents=True)
    config = yaml.safe_load((ROOT / "data" / "configs" / "entitycs.yaml").read_text(encoding="utf-8"))
    config.update(input={"path": str(ROOT / "data" / "samples" / "wiki_sentences.jsonl"), "limit": 20})
    config["output"] = {"dir": str(out)}
    (project / "data" / "configs" / "entitycs.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    script = f"from pathlib import Path; from flows.deploy import serve; serve(['entitycs'], None, Path({str(project)!r}))"
    with background(prefect_api, "serve", [sys.executable, "-c", script], PREFECT_RUNNER_POLL_FREQUENCY="2"):
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("polysynth-entitycs/serve")
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, background_log(prefect_api, "serve")
                    time.sleep(1)
        flow_run = run_deployment("polysynth-entitycs/serve", timeout=RUN_TIMEOUT_S, poll_interval=2)
    assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{background_log(prefect_api, 'serve')}"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["recipes"]["entitycs"]["status"] == "complete"
