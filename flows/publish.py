"""Publishing as Prefect flows: push a finished output directory to the Hugging Face Hub.

The token is never a flow parameter (Prefect stores parameters in its database): the worker's ``HF_TOKEN``
or stored ``hf auth login`` is used. The push is idempotent, so the task retries network failures, and
rerunning a failed flow run resumes where it stopped.

Usage::

    from flows.publish import publish_flow
    publish_flow(out="out/sap", repo_id="my-org/polysynth-sap", private=True)

    # or as a deployment (prefect.yaml): prefect deployment run polysynth-publish/publish \\
    #     --param out=out/sap --param repo_id=my-org/polysynth-sap
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runner import run_flow
from synth.config import RunConfig
from synth.publish.hub import HubError, PushResult, push


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network trouble and Hub 5xx/429 only: a bad token or an incomplete run fails at once."""
    try:
        state.result()
    except HubError as error:
        return error.transient
    except Exception:
        return False
    return False


@task(
    name="push-to-hub",
    task_run_name="push-{repo_id}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_retry_transient,
)
def push_task(
    out: str,
    repo_id: str,
    private: bool,
    revision: str | None,
    create_pr: bool,
    include_rejected: bool,
    allow_incomplete: bool,
    dry_run: bool,
) -> PushResult:
    """``synth.publish.hub.push`` as a task (the token comes from the environment, never from parameters)."""
    return push(
        Path(out),
        repo_id,
        private=private,
        revision=revision,
        create_pr=create_pr,
        dry_run=dry_run,
        include_rejected=include_rejected,
        allow_incomplete=allow_incomplete,
    )


def _publish(
    out: str,
    repo_id: str,
    *,
    private: bool,
    revision: str | None,
    create_pr: bool,
    include_rejected: bool,
    allow_incomplete: bool,
    dry_run: bool,
) -> dict[str, Any]:
    logger = get_run_logger()
    result = push_task(out, repo_id, private, revision, create_pr, include_rejected, allow_incomplete, dry_run)
    create_markdown_artifact(
        # Artifact keys allow lowercase letters, digits and dashes only.
        key="publish-" + re.sub(r"[^a-z0-9-]+", "-", repo_id.lower()).strip("-"),
        markdown=result.markdown(),
        description=f"polysynth push to {repo_id}",
    )
    for line in result.describe().splitlines():
        logger.info(line)
    return result.as_dict()


@flow(name="polysynth-publish", log_prints=False, validate_parameters=True)
def publish_flow(
    out: str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    include_rejected: bool = False,
    create_pr: bool = False,
    allow_incomplete: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Publish a finished polysynth output directory to a Hugging Face dataset repo.

    Uploads the shards (rejected rows only with ``include_rejected``), a dataset card for the pushed configs and
    the provenance manifest; skips what the Hub already has; attaches a markdown artifact of what was pushed.

    Args:
        out: The output directory (manifest.json, README.md, <recipe>/<lang>/ shards).
        repo_id: Target dataset repo, ORG/NAME; created if missing (private if ``private``).
        private: Create the repo private (an existing repo keeps its visibility).
        revision: Branch to push to (created from main if missing); default main.
        include_rejected: Also publish <recipe>-rejected configs.
        create_pr: Open a pull request instead of committing to the branch.
        allow_incomplete: Publish the finished recipes even if another recipe of the output is unfinished.
        dry_run: Write the card to OUT/.push/README.md and report the plan; no network.
    """
    return _publish(
        out,
        repo_id,
        private=private,
        revision=revision,
        create_pr=create_pr,
        include_rejected=include_rejected,
        allow_incomplete=allow_incomplete,
        dry_run=dry_run,
    )


@flow(name="polysynth-generate-and-publish", log_prints=False, validate_parameters=True)
def generate_and_publish_flow(
    config: RunConfig,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    include_rejected: bool = False,
    create_pr: bool = False,
) -> dict[str, Any]:
    """Run a recipe to completion, then publish its output directory (both steps resume when rerun).

    Args:
        config: A run config of any recipe (see data/configs/*.yaml).
        repo_id: Target dataset repo, ORG/NAME.
        private: Create the repo private.
        revision: Branch to push to; default main.
        include_rejected: Also publish <recipe>-rejected configs.
        create_pr: Open a pull request instead of committing to the branch.
    """
    # The recipe runs as its own flow (a subflow) with the task runner its config asks for.
    summary = run_flow(config)
    published = _publish(
        summary["out"],
        repo_id,
        private=private,
        revision=revision,
        create_pr=create_pr,
        include_rejected=include_rejected,
        allow_incomplete=False,
        dry_run=False,
    )
    return {"run": summary, "publish": published}
