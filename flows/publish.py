"""Publishing as Prefect flows: push a finished output directory to the Hugging Face Hub.

The token is never a flow parameter (Prefect stores parameters in its database): the worker's ``HF_TOKEN``
or stored ``hf auth login`` is used. The push is idempotent, so the task retries network failures, and
rerunning a failed flow run resumes where it stopped.

Usage::

    from flows.publish import publish_flow
    from synth.publish.hub import PushOptions
    publish_flow(out="out/sap", options=PushOptions(repo_id="my-org/polysynth-sap", private=True))

    # or as a deployment (prefect.yaml): prefect deployment run polysynth-publish/publish \\
    #     --param out=out/sap --param options='{"repo_id": "my-org/polysynth-sap"}'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.recipe import run_flow
from flows.retry import retry_on
from synth.config import RunConfigBase
from synth.config_file import parse_config
from synth.publish.hub import HubError, PushOptions, PushResult, push


@task(
    name="push-to-hub",
    task_run_name="push-{options.repo_id}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    # network trouble and Hub 5xx/429 only: a bad token or an incomplete run fails at once
    retry_condition_fn=retry_on(HubError, when=lambda error: error.transient),
)
def push_task(out: str, options: PushOptions) -> PushResult:
    """``synth.publish.hub.push`` as a task (the token comes from the environment, never from parameters)."""
    return push(Path(out), options)


def _publish(out: str, options: PushOptions) -> dict[str, Any]:
    logger = get_run_logger()
    result = push_task(out, options)
    create_markdown_artifact(
        # Artifact keys allow lowercase letters, digits and dashes only.
        key="publish-" + re.sub(r"[^a-z0-9-]+", "-", options.repo_id.lower()).strip("-"),
        markdown=result.markdown(),
        description=f"polysynth push to {options.repo_id}",
    )
    for line in result.describe().splitlines():
        logger.info(line)
    return result.as_dict()


@flow(name="polysynth-publish", log_prints=False, validate_parameters=True)
def publish_flow(out: str, options: PushOptions) -> dict[str, Any]:
    """Publish a finished polysynth output directory to a Hugging Face dataset repo.

    Uploads the shards (rejected rows only with ``options.include_rejected``), a dataset card for the pushed configs
    and the provenance manifest; skips what the Hub already has; attaches a markdown artifact of what was pushed.

    Args:
        out: The output directory (manifest.json, README.md, <recipe>/<lang>/ shards).
        options: Where and what to push (:class:`synth.publish.hub.PushOptions`): ``repo_id`` (ORG/NAME, required),
            ``private``, ``revision``, ``create_pr``, ``include_rejected``, ``allow_incomplete``, ``dry_run``.
    """
    return _publish(out, options)


@flow(name="polysynth-generate-and-publish", log_prints=False, validate_parameters=True)
def generate_and_publish_flow(config: RunConfigBase | dict[str, Any], options: PushOptions) -> dict[str, Any]:
    """Run a recipe to completion, then publish its output directory (both steps resume when rerun).

    Args:
        config: A run config of any registered recipe (see data/configs/*.yaml), as a mapping or a loaded config;
            validated by its recipe's config model before anything runs.
        options: Where and what to push, as for :func:`publish_flow` (the output directory is the run's).
    """
    # The recipe runs as its own flow (a subflow) with the task runner its config asks for.
    # Prefect validates only the shared sections or a mapping: the recipe's own model checks the whole config.
    data = config.model_dump(mode="json") if isinstance(config, RunConfigBase) else config
    summary = run_flow(parse_config(data, source="parameter 'config'"))
    published = _publish(summary["out"], options)
    return {"run": summary, "publish": published}
