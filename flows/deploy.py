"""Deploying and serving the recipe flows (the Prefect side of ``synth deploy`` and ``synth serve``).

Two ways to run the flows on a schedule or on demand:

* :func:`deploy` registers every deployment of ``prefect.yaml`` with a Prefect server; workers of a work pool
  (``prefect worker start --pool polysynth``) run them, on this machine or many (docs/scaling.md).
* :func:`serve` serves the recipe flows from one long-running process on this machine, no pool or worker.

Example::

    from pathlib import Path
    from flows.deploy import deploy, serve

    deploy(schedule="0 3 * * *", pool="polysynth", project_root=Path("."))  # needs PREFECT_API_URL
    serve(["sap", "entitycs"], schedule=None)                                # blocks; Ctrl-C stops it
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from synth.config_file import parse_config
from synth.errors import ConfigError, SynthError
from synth.paths import PROJECT_ROOT
from synth.recipes import recipe_names

DEPLOY_TIMEOUT_S = 600
SERVE_DEPLOYMENT_NAME = "serve"


def require_api() -> str:
    """The URL of the configured Prefect API, after checking that it answers; raises SynthError otherwise.

    Deployments must live on a server that workers can reach: without ``PREFECT_API_URL`` Prefect would
    register them in a throw-away ephemeral server, so that is refused rather than silently accepted.
    """
    from prefect import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise SynthError(
            "no Prefect API configured (PREFECT_API_URL is unset): start one with `prefect server start` and "
            "point at it with `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    if error is not None:
        raise SynthError(
            f"Prefect API at {url} is not reachable ({error}): start the server (`prefect server start`) "
            "or fix PREFECT_API_URL"
        )
    return url


def check_cron(schedule: str | None) -> None:
    """Refuse a malformed cron string before anything is deployed."""
    if schedule is None:
        return
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=schedule)
    except ValueError:
        raise SynthError(f"not a valid cron schedule: {schedule!r} (e.g. '0 3 * * *' for 03:00 UTC daily)") from None


def ensure_work_pool(pool: str) -> None:
    """Create ``pool`` as a ``process`` work pool unless it exists (of any type: a Kubernetes pool is kept)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                )
            )
        except ObjectAlreadyExists:  # created by someone else in the meantime: just as good
            pass


def read_prefect_file(path: Path) -> dict[str, Any]:
    """The parsed ``prefect.yaml``, with its recipe run configs validated (so a bad config fails here, named)."""
    if not path.is_file():
        raise ConfigError("prefect.yaml not found", file=str(path))
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", file=str(path)) from None
    deployments = spec.get("deployments") if isinstance(spec, dict) else None
    if not deployments:
        raise ConfigError("no deployments", file=str(path), field="deployments")
    for deployment in deployments:
        config = (deployment.get("parameters") or {}).get("config")
        if config is not None:
            parse_config(config, source=f"{path} (deployment {deployment.get('name')})")
    return spec


def deployment_names(spec: dict[str, Any], project_root: Path, source: Path) -> list[str]:
    """``flow-name/deployment-name`` of every deployment in ``spec``, read from ``source`` (flow names come from
    the entrypoints, which are relative to ``project_root``)."""
    from prefect.flows import load_flow_from_entrypoint

    names = []
    for deployment in spec["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        if not (project_root / path).is_file():
            raise ConfigError(f"entrypoint file not found: {path}", file=str(source))
        flow = load_flow_from_entrypoint(f"{project_root / path}:{function}")
        names.append(f"{flow.name}/{deployment['name']}")
    return names


def retarget(spec: dict[str, Any], pool: str, schedule: str | None) -> dict[str, Any]:
    """A copy of ``spec`` whose deployments use ``pool`` and, for the recipes, the active cron ``schedule``.

    ``prefect deploy --all`` ignores ``--pool`` and ``--cron`` (they apply to a single deployment only), so
    the wrapper deploys this derived file instead. Publishing keeps its own (inactive) schedule: it must
    run after a generation run has finished, not at the same time.
    """
    deployments = []
    for deployment in spec["deployments"]:
        deployment = dict(deployment, work_pool=dict(deployment.get("work_pool") or {}, name=pool))
        if schedule is not None and "config" in (deployment.get("parameters") or {}):
            timezone = next((s["timezone"] for s in deployment.get("schedules") or [] if s.get("timezone")), "UTC")
            deployment["schedules"] = [{"cron": schedule, "timezone": timezone, "active": True}]
        deployments.append(deployment)
    return dict(spec, deployments=deployments)


def deploy(schedule: str | None, pool: str, project_root: Path, *, prefect_file: Path | None = None) -> list[str]:
    """Register every deployment of ``prefect.yaml`` on the Prefect API; returns their ``flow/deployment`` names.

    Runs ``prefect --no-prompt deploy --all`` in ``project_root`` after making sure ``pool`` exists (created
    as a ``process`` pool if missing). With ``schedule`` (a cron string, UTC unless prefect.yaml says
    otherwise), the recipe deployments get that schedule, active; without it they keep prefect.yaml's
    inactive schedules. Deploying again updates the deployments in place.

    Raises SynthError when no Prefect API is configured or reachable, or when ``prefect deploy`` fails.

    Example::

        deploy("0 3 * * *", "polysynth", Path("."))  # then: prefect worker start --pool polysynth
    """
    project_root = project_root.resolve()
    check_cron(schedule)
    api_url = require_api()
    source = prefect_file or project_root / "prefect.yaml"
    spec = read_prefect_file(source)
    names = deployment_names(spec, project_root, source)
    ensure_work_pool(pool)
    env = dict(
        os.environ,
        # The subprocess must talk to the API checked above, even when it was set by a profile or in-process.
        PREFECT_API_URL=api_url,
        # prefect.yaml's pull step records {{ $PWD }} as the working directory of every run.
        PWD=str(project_root),
        # Keeps the CLI's panels on one line each, so an error message is readable in SynthError.
        COLUMNS="200",
    )
    with tempfile.TemporaryDirectory(prefix="polysynth-deploy-") as tmp:
        derived = Path(tmp) / "prefect.yaml"
        derived.write_text(yaml.safe_dump(retarget(spec, pool, schedule), sort_keys=False), encoding="utf-8")
        command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(derived)]
        try:
            result = subprocess.run(
                command, cwd=project_root, env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise SynthError(f"prefect deploy did not finish within {DEPLOY_TIMEOUT_S} s (API {api_url})") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise SynthError(f"prefect deploy failed (exit {result.returncode}, API {api_url}):\n{output}")
    return names


def serve_deployments(recipes: Sequence[str], schedule: str | None, project_root: Path = PROJECT_ROOT) -> list[Any]:
    """The ``RunnerDeployment`` of each recipe for :func:`serve`, with its config from ``data/configs``.

    Deployment names are ``<flow>/serve``, so serving never overwrites the work-pool deployments of
    ``prefect.yaml`` on a shared server. Input and output paths are made absolute against the config file,
    so served runs do not depend on the serving process's directory.
    """
    from prefect.deployments.runner import EntrypointType

    from flows.recipe import recipe_flow
    from synth.config_file import load_config

    check_cron(schedule)
    known = recipe_names()
    unknown = [recipe for recipe in recipes if recipe not in known]
    if unknown:
        raise SynthError(f"unknown recipe {unknown[0]!r}; expected one of {', '.join(known)}")
    deployments = []
    for recipe in dict.fromkeys(recipes or known):
        config_file = project_root / "data" / "configs" / f"{recipe}.yaml"
        config = load_config(config_file, recipe=recipe)
        deployments.append(
            recipe_flow(recipe).to_deployment(
                name=SERVE_DEPLOYMENT_NAME,
                parameters={"config": config.model_dump(mode="json")},
                cron=schedule,
                tags=["polysynth", "recipe", recipe],
                # One run at a time per recipe: a second run into the same output directory finds it locked.
                concurrency_limit=1,
                # `flows` is an installed package: runs import it by module path, from any directory.
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def serve(recipes: Sequence[str], schedule: str | None, project_root: Path = PROJECT_ROOT) -> None:
    """Serve the recipe flows (all three when ``recipes`` is empty) from this process until interrupted.

    Each recipe becomes the deployment ``polysynth-<recipe>/serve``, on ``schedule`` (cron, UTC) if given;
    trigger one by hand with ``prefect deployment run polysynth-sap/serve``. Runs execute on this machine,
    one subprocess each. With ``PREFECT_API_URL`` unset, Prefect's local ephemeral server is used.

    Example::

        serve(["sap"], schedule="0 3 * * *")
    """
    from prefect import serve as prefect_serve

    prefect_serve(*serve_deployments(recipes, schedule, project_root))
